/**
 * @smw/wormhole-board: the local SMW, the trusted part next to each payload
 * host: its lines (GPIO), its media (manifests, verify, restore), and the
 * cores without I/O of the distributed wormhole with their simulation.
 */
export * from "./board/board-clock.js";
export * from "./board/board-daemon.js";
export * from "./board/board-state-files.js";
export * from "./board/deadline-timer.js";
export * from "./board/event-loop-priority.js";
export * from "./board/watchdog.js";
export * from "./coordinator/board-core.js";
export * from "./coordinator/group-schedule.js";
export * from "./coordinator/join-core.js";
export * from "./failsafe/failsafe-core.js";
export * from "./lines/board-lines.js";
export * from "./lines/gpiod-lines.js";
export * from "./lines/line.js";
export * from "./lines/line-backend-for.js";
export * from "./lines/line-lock.js";
export * from "./lines/simulated-lines.js";
export * from "./lines/sysfs-chips.js";
export * from "./lines/sysfs-lines.js";
export * from "./link/clock-monitor.js";
export * from "./link/console-log.js";
export * from "./link/control-link.js";
export * from "./link/host-link-port.js";
export * from "./link/link-keys.js";
export * from "./link/peer-monitor.js";
export * from "./link/reopening-serial-port.js";
export * from "./link/transports.js";
export * from "./media/chunk-digest.js";
export * from "./media/image-file.js";
export * from "./media/keys.js";
export * from "./media/manifest.js";
export * from "./media/media-error.js";
export * from "./media/media-workers.js";
export * from "./media/restore.js";
export * from "./media/seal.js";
export * from "./media/verify.js";
export * from "./recovery/recovery-core.js";
export * from "./recovery/step-runner.js";
export * from "./sim/cluster-sim.js";
export * from "./sim/free-ports.js";
export * from "./sim/local-testbed.js";
export * from "./sim/prng.js";
export * from "./sim/simulated-host.js";
export * from "./sim/socat.js";
export * from "./timely/timely-core.js";
