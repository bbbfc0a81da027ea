/**
 * On the board itself: does each line's GPIO chip exist, found by its label, with the line's
 * offset in range? Read from the kernel's sysfs GPIO folder for a board that drives its lines
 * through it (`gpio: sysfs`), and from `gpiodetect` (the libgpiod tools) for a board on the
 * character device (`gpio: gpiod`), whose chips' labels only an ioctl tells. A wrong label (a
 * Pi 4's pinctrl-bcm2711 on a Pi 5, whose header is pinctrl-rp1) is named here, before the
 * daemon touches a line.
 */
import { spawnSync } from "node:child_process";
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

export interface GpiodetectChip {
  /** e.g. gpiochip0 */
  name: string;
  label: string;
  lines: number;
}

/** `gpiodetect`'s listing (v1 and v2 print the same): `gpiochip0 [pinctrl-bcm2711] (58 lines)`. */
export function parseGpiodetect(text: string): GpiodetectChip[] {
  const chips: GpiodetectChip[] = [];
  for (const line of text.split("\n")) {
    const match = /^(\S+) \[(.*)\] \((\d+) lines\)$/.exec(line.trim());
    if (match !== null)
      chips.push({ name: match[1] as string, label: match[2] as string, lines: Number(match[3]) });
  }
  return chips;
}

export interface ChipSources {
  /** Stands for /sys/class/gpio. */
  sysfsRoot?: string;
  /** The gpiodetect to run, when not the one on PATH. */
  gpiodetect?: string;
}

export function checkBoardChips(
  testbed: Testbed,
  boardId: string,
  sources: ChipSources = {},
): Finding[] {
  const b = testbed.boards.findIndex((board) => board.id === boardId);
  const board = testbed.boards[b];
  if (testbed.simulated || board === undefined) return [];
  if (board.gpio === "gpiod") {
    const tool = sources.gpiodetect ?? "gpiodetect";
    const run = spawnSync(tool, [], { encoding: "utf8", timeout: 10_000 });
    if (run.error !== undefined || run.status !== 0)
      return [
        {
          path: ["boards", b, "gpio"],
          message: `cannot list the GPIO chips with ${tool} (${run.error?.message ?? run.stderr.trim()}): install the libgpiod tools (apt install gpiod)`,
        },
      ];
    const listed = parseGpiodetect(run.stdout).map((c) => ({ ...c, ngpio: c.lines }));
    return lineFindings(board, b, listed);
  }
  const sysfsRoot = sources.sysfsRoot ?? SYSFS_GPIO_DIR;
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
  return lineFindings(board, b, chips);
}

function lineFindings(
  board: Testbed["boards"][number],
  b: number,
  chips: readonly Chip[],
): Finding[] {
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
