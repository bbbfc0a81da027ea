/**
 * On the board itself: does each line's GPIO chip exist, found by its label, with the line's
 * offset in range? Read from the kernel's sysfs GPIO folder for a board that drives its lines
 * through it (`gpio: sysfs`); a board on the character device (`gpio: gpiod`) is checked by
 * `smw doctor` through the libgpiod tools. A wrong label (a Pi 4's pinctrl-bcm2711 on a Pi 5,
 * whose header is pinctrl-rp1) is named here, before the daemon touches a line.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import type { Finding } from "./cross-checks.js";
import type { Testbed } from "./testbed.js";

export const SYSFS_GPIO_DIR = "/sys/class/gpio";

interface Chip {
  name: string;
  label: string;
  ngpio: number;
}

export function checkBoardChips(
  testbed: Testbed,
  boardId: string,
  sysfsRoot: string = SYSFS_GPIO_DIR,
): Finding[] {
  const b = testbed.boards.findIndex((board) => board.id === boardId);
  const board = testbed.boards[b];
  if (testbed.simulated || board === undefined || board.gpio !== "sysfs") return [];
  let chips: Chip[];
  try {
    chips = readdirSync(sysfsRoot)
      .filter((entry) => /^gpiochip\d+$/.test(entry))
      .flatMap((name) => {
        try {
          const read = (file: string) =>
            readFileSync(path.join(sysfsRoot, name, file), "utf8").trim();
          return [{ name, label: read("label"), ngpio: Number(read("ngpio")) }];
        } catch {
          return [];
        }
      });
  } catch (error) {
    return [
      {
        path: ["boards", b, "gpio"],
        message: `cannot read ${sysfsRoot} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}): this kernel has no sysfs GPIO; set gpio: gpiod to use the character device`,
      },
    ];
  }
  const findings: Finding[] = [];
  board.lines.forEach((line, i) => {
    const chip = chips.find((c) => c.label === line.chip);
    if (chip === undefined)
      findings.push({
        path: ["boards", b, "lines", i, "chip"],
        message: `no GPIO chip labelled ${line.chip} on this board (it has: ${chips.map((c) => c.label).join(", ") || "none"}; a Pi 4's header is pinctrl-bcm2711, a Pi 5's pinctrl-rp1)`,
      });
    else if (line.offset >= chip.ngpio)
      findings.push({
        path: ["boards", b, "lines", i, "offset"],
        message: `${chip.name} (${chip.label}) has lines 0-${chip.ngpio - 1}; offset ${line.offset} is out of range`,
      });
  });
  return findings;
}
