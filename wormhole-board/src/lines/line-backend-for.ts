/** Which backend drives a board's lines: simulated in a simulated testbed, else what the board names. */
import type { Board, Testbed } from "@smw/wiring";
import { GpiodLines } from "./gpiod-lines.js";
import type { LineBackend } from "./line.js";
import { SimulatedLines } from "./simulated-lines.js";
import { SysfsLines } from "./sysfs-lines.js";

export function lineBackendFor(testbed: Testbed, board: Board): LineBackend {
  if (testbed.simulated) return new SimulatedLines();
  return board.gpio === "gpiod" ? new GpiodLines() : new SysfsLines();
}
