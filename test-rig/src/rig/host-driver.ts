/**
 * What the rig needs of a simulated payload host, whatever runs it: its
 * board's reset and power lines, a reboot from what is on its disk, and a stop.
 * Processes are the driver here; a virtual machine would be another.
 */
import type { Level, LineRole } from "@smw/wiring";

export interface HostDriver {
  readonly id: string;
  /** Held in reset or powered off. */
  readonly held: boolean;
  /** A line of its board changed level (reset and power act; the rest are not wired to it). */
  onLine(role: LineRole, level: Level): void;
  /** Restarts from its disk, outside its board's control (an intruder's reboot). */
  rebootFromDisk(): void;
  stop(): void;
}
