/** What a board process of the rig and the rig say to each other over the IPC channel. */
import type { Level, LineRole } from "@smw/wiring";

export type BoardToRig =
  | { type: "line"; role: LineRole; level: Level }
  | { type: "ready" }
  | { type: "error"; message: string };

export type RigToBoard =
  /** From now on the board's clock reads `offsetMs` off true time. */
  | { type: "skew"; offsetMs: number }
  /** The line ignores writes and reads as `level` (undefined: repaired). */
  | { type: "stick"; role: LineRole; level: Level | undefined }
  /** From now on each control frame the board sends is lost with probability `fraction`. */
  | { type: "lose-frames"; fraction: number };

export function isRigToBoard(m: unknown): m is RigToBoard {
  if (typeof m !== "object" || m === null) return false;
  const t = (m as { type?: unknown }).type;
  return t === "skew" || t === "stick" || t === "lose-frames";
}

export function isBoardToRig(m: unknown): m is BoardToRig {
  if (typeof m !== "object" || m === null) return false;
  const t = (m as { type?: unknown }).type;
  return t === "line" || t === "ready" || t === "error";
}
