/**
 * GPIO through the kernel's sysfs interface, with onoff. Each output is
 * claimed glitch-free: its starting level is written as the direction
 * ("high"/"low", a raw level), never "out" followed by a value. Only lines
 * this process exported are unexported, and only when asked: an exported
 * line keeps its level after the process ends, which is what holds a host
 * in reset when the board agent dies.
 */
import { closeSync, existsSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import type { Level, Line as LineSpec } from "@smw/wiring";
import { ONOFF_MODULE, requireNative } from "@smw/wiring/cli";
import type { Gpio } from "onoff";
import {
  type ClaimedLine,
  type ClaimLevels,
  describeLineSpec,
  type LineBackend,
  LineError,
  physicalHigh,
  startLevel,
} from "./line.js";
import { SYSFS_GPIO_ROOT, sysfsNumber } from "./sysfs-chips.js";

export interface SysfsLinesOptions {
  /** How long to wait for udev to make a freshly exported line writable. */
  exportTimeoutMs?: number;
}

export class SysfsLines implements LineBackend {
  readonly name = "sysfs";
  private readonly root = SYSFS_GPIO_ROOT;
  private readonly exportTimeoutMs: number;

  constructor(options: SysfsLinesOptions = {}) {
    this.exportTimeoutMs = options.exportTimeoutMs ?? 2_000;
  }

  claim(spec: LineSpec, levels: ClaimLevels): ClaimedLine {
    // Before anything is exported: a binding that cannot load leaves the line as it was.
    let onoff: typeof import("onoff");
    try {
      onoff = requireNative<typeof import("onoff")>(createRequire(import.meta.url), ONOFF_MODULE);
    } catch (error) {
      throw new LineError(`cannot claim ${describeLineSpec(spec)}: ${(error as Error).message}`);
    }
    const number = sysfsNumber(spec.chip, spec.offset, this.root);
    const lineDir = path.join(this.root, `gpio${number}`);
    const exportedHere = !existsSync(lineDir);
    if (exportedHere) {
      writeFileSync(path.join(this.root, "export"), `${number}\n`);
      this.waitWritable(lineDir, spec);
    }
    const level = startLevel(spec, levels);
    const direction = physicalHigh(level, spec.activeLow) ? "high" : "low";
    let gpio: Gpio;
    try {
      // onoff writes active_low first, then the direction with the level in it.
      gpio = new onoff.Gpio(number, direction, "none", {
        activeLow: spec.activeLow,
        reconfigureDirection: true,
      });
    } catch (error) {
      throw new LineError(
        `cannot claim ${describeLineSpec(spec)} as gpio${number}: ${(error as Error).message}`,
      );
    }
    // onoff ignores configuration errors on lines it did not export; check.
    const activeLow = readFileSync(path.join(lineDir, "active_low"), "utf8").trim();
    const actualDirection = readFileSync(path.join(lineDir, "direction"), "utf8").trim();
    if (
      activeLow !== (spec.activeLow ? "1" : "0") ||
      !["out", direction].includes(actualDirection)
    ) {
      throw new LineError(
        `${describeLineSpec(spec)} (gpio${number}) did not take its configuration: active_low=${activeLow}, direction=${actualDirection}`,
      );
    }
    return new SysfsLine(spec, gpio, number, exportedHere, this.root);
  }

  private waitWritable(lineDir: string, spec: LineSpec): void {
    const deadline = performance.now() + this.exportTimeoutMs;
    const sleeper = new Int32Array(new SharedArrayBuffer(4));
    for (;;) {
      try {
        for (const file of ["value", "direction", "active_low"])
          closeSync(openSync(path.join(lineDir, file), "r+"));
        return;
      } catch (error) {
        if (performance.now() > deadline) {
          throw new LineError(
            `${describeLineSpec(spec)}: ${lineDir} did not become writable within ${this.exportTimeoutMs} ms after export (${(error as NodeJS.ErrnoException).code})`,
          );
        }
        Atomics.wait(sleeper, 0, 0, 1);
      }
    }
  }
}

class SysfsLine implements ClaimedLine {
  private released = false;

  constructor(
    readonly spec: LineSpec,
    private readonly gpio: Gpio,
    readonly number: number,
    readonly exportedHere: boolean,
    private readonly root: string,
  ) {}

  set(level: Level): void {
    if (this.released) throw new LineError(`${describeLineSpec(this.spec)} was released`);
    // active_low is set, so the value file takes the logical level.
    this.gpio.writeSync(level === "active" ? 1 : 0);
  }

  get(): Level {
    return this.gpio.readSync() === 1 ? "active" : "inactive";
  }

  release(options: { unexport?: boolean } = {}): void {
    if (this.released) return;
    this.gpio.writeSync(this.spec.safe === "active" ? 1 : 0);
    this.released = true;
    this.gpio.unwatchAll();
    if (options.unexport && this.exportedHere) {
      writeFileSync(path.join(this.root, "unexport"), `${this.number}\n`);
    }
  }
}
