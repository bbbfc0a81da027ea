/**
 * Finding a GPIO chip in sysfs by its label. Raspberry Pi kernels since 6.6
 * number lines from a base of 512 or more, so a bare BCM number no longer
 * names a line: the sysfs number is the chip's base plus the line's offset.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { LineError } from "./line.js";

export const SYSFS_GPIO_ROOT = "/sys/class/gpio";

export interface SysfsChip {
  /** e.g. gpiochip512 */
  name: string;
  label: string;
  base: number;
  ngpio: number;
}

export function listChips(root: string = SYSFS_GPIO_ROOT): SysfsChip[] {
  let entries: string[];
  try {
    entries = readdirSync(root);
  } catch (error) {
    throw new LineError(
      `cannot read ${root} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}): this kernel has no sysfs GPIO; use a simulated testbed or enable CONFIG_GPIO_SYSFS`,
    );
  }
  const chips: SysfsChip[] = [];
  for (const name of entries.filter((entry) => /^gpiochip\d+$/.test(entry)).sort()) {
    const read = (file: string) => readFileSync(path.join(root, name, file), "utf8").trim();
    try {
      chips.push({
        name,
        label: read("label"),
        base: Number(read("base")),
        ngpio: Number(read("ngpio")),
      });
    } catch {
      // A chip whose attributes cannot be read cannot be addressed; skip it.
    }
  }
  return chips;
}

/** The sysfs number of line `offset` on the chip labelled `label`. */
export function sysfsNumber(label: string, offset: number, root: string = SYSFS_GPIO_ROOT): number {
  const chips = listChips(root);
  const matches = chips.filter((chip) => chip.label === label);
  if (matches.length === 0) {
    const known = chips.map((chip) => `${chip.label} (${chip.name})`).join(", ");
    throw new LineError(
      `no GPIO chip labelled "${label}" in ${root}; chips here: ${known === "" ? "none" : known}`,
    );
  }
  if (matches.length > 1) {
    throw new LineError(
      `${matches.length} GPIO chips are labelled "${label}" (${matches.map((c) => c.name).join(", ")}); a label must name one chip`,
    );
  }
  const chip = matches[0] as SysfsChip;
  if (!Number.isInteger(offset) || offset < 0 || offset >= chip.ngpio) {
    throw new LineError(
      `chip "${label}" (${chip.name}) has lines 0-${chip.ngpio - 1}; offset ${offset} is out of range`,
    );
  }
  return chip.base + offset;
}
