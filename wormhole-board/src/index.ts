/**
 * @smw/wormhole-board: the local SMW, the trusted part next to each payload
 * host. Today: its lines (GPIO) and its media (manifests, verify, restore).
 */
export * from "./lines/board-lines.js";
export * from "./lines/line.js";
export * from "./lines/line-lock.js";
export * from "./lines/simulated-lines.js";
export * from "./lines/sysfs-chips.js";
export * from "./lines/sysfs-lines.js";
export * from "./media/chunk-digest.js";
export * from "./media/image-file.js";
export * from "./media/keys.js";
export * from "./media/manifest.js";
export * from "./media/media-error.js";
export * from "./media/restore.js";
export * from "./media/seal.js";
export * from "./media/verify.js";
