/**
 * GPIO through the kernel's character device, driven with the libgpiod v2 command-line tools,
 * for kernels whose sysfs GPIO interface is gone. A chip is found by its label (`gpiodetect`); a
 * level is set with `gpioset -t0` (request the line as an output with its value, then exit, the
 * level set at request time, so no glitch) and read back with `gpioget --as-is` (read without
 * requesting a direction, so a driven output is not turned into an input). Each call is a short
 * process, synchronous: a safe-exit path cannot wait.
 *
 * The line keeps its level after the tool exits on drivers that leave a released output as it
 * was, as the Raspberry Pi's do (pinctrl-bcm2835/2711, the RP1): the board reads every write
 * back, so a driver that does not is caught at the first step, not trusted. libgpiod v1's tools
 * (Bookworm's package) cannot read a driven output without making it an input: they are refused
 * with that reason; Bookworm's kernels still have the sysfs backend.
 */
import { spawnSync } from "node:child_process";
import type { Level, Line as LineSpec } from "@smw/wiring";
import {
  type ClaimedLine,
  type ClaimLevels,
  describeLineSpec,
  type LineBackend,
  LineError,
  startLevel,
} from "./line.js";

export interface GpiodChip {
  /** e.g. gpiochip0 */
  name: string;
  label: string;
  lines: number;
}

export interface GpiodLinesOptions {
  /** The tools, when not on PATH under their own names. */
  gpioset?: string;
  gpioget?: string;
  gpiodetect?: string;
  timeoutMs?: number;
}

export class GpiodLines implements LineBackend {
  readonly name = "gpiod";
  private readonly tools: { gpioset: string; gpioget: string; gpiodetect: string };
  private readonly timeoutMs: number;
  private chips: GpiodChip[] | undefined;
  private checkedVersion = false;

  constructor(options: GpiodLinesOptions = {}) {
    this.tools = {
      gpioset: options.gpioset ?? "gpioset",
      gpioget: options.gpioget ?? "gpioget",
      gpiodetect: options.gpiodetect ?? "gpiodetect",
    };
    this.timeoutMs = options.timeoutMs ?? 5_000;
  }

  /** The chips `gpiodetect` lists: `gpiochip0 [pinctrl-bcm2711] (58 lines)`. */
  listChips(): GpiodChip[] {
    if (this.chips !== undefined) return this.chips;
    const out = this.run(this.tools.gpiodetect, [], "list the GPIO chips");
    const chips: GpiodChip[] = [];
    for (const line of out.split("\n")) {
      const match = /^(\S+) \[(.*)\] \((\d+) lines\)$/.exec(line.trim());
      if (match !== null)
        chips.push({
          name: match[1] as string,
          label: match[2] as string,
          lines: Number(match[3]),
        });
    }
    this.chips = chips;
    return chips;
  }

  claim(spec: LineSpec, levels: ClaimLevels): ClaimedLine {
    this.checkVersion();
    const chip = this.listChips().find((c) => c.label === spec.chip);
    if (chip === undefined)
      throw new LineError(
        `${describeLineSpec(spec)}: no GPIO chip labelled ${spec.chip} (gpiodetect lists: ${
          this.listChips()
            .map((c) => `${c.name} [${c.label}]`)
            .join(", ") || "none"
        })`,
      );
    if (spec.offset >= chip.lines)
      throw new LineError(
        `${describeLineSpec(spec)}: ${chip.name} [${chip.label}] has ${chip.lines} lines, no offset ${spec.offset}`,
      );
    // Levels are logical: with --active-low the tools map active to the low level themselves.
    const polarity = spec.activeLow ? ["--active-low"] : [];
    const set = (level: Level) => {
      this.run(
        this.tools.gpioset,
        [
          "--chip",
          chip.name,
          "--consumer",
          `smw-${spec.role}`,
          ...polarity,
          "--toggle",
          "0",
          `${spec.offset}=${level === "active" ? 1 : 0}`,
        ],
        `set ${describeLineSpec(spec)} ${level}`,
      );
    };
    const get = (): Level => {
      const out = this.run(
        this.tools.gpioget,
        ["--chip", chip.name, "--as-is", "--numeric", ...polarity, String(spec.offset)],
        `read ${describeLineSpec(spec)}`,
      ).trim();
      if (out !== "0" && out !== "1")
        throw new LineError(`gpioget said "${out}" for ${describeLineSpec(spec)}: expected 0 or 1`);
      return out === "1" ? "active" : "inactive";
    };
    set(startLevel(spec, levels));
    let released = false;
    return {
      spec,
      set(level) {
        if (released) throw new LineError(`${describeLineSpec(spec)} was released`);
        set(level);
      },
      get,
      release() {
        if (released) return;
        released = true;
        set(spec.safe);
      },
    };
  }

  /** v2 or newer: v1's gpioget cannot read a driven output back without making it an input. */
  private checkVersion(): void {
    if (this.checkedVersion) return;
    const out = this.run(this.tools.gpioset, ["--version"], "ask gpioset its version");
    const major = Number(/v(\d+)\./.exec(out)?.[1]);
    if (!(major >= 2))
      throw new LineError(
        `the libgpiod tools here are ${out.split("\n")[0]?.trim() || "of an unknown version"}: the gpiod backend needs v2 (v1's gpioget cannot read a driven output back without turning it into an input); install libgpiod v2's tools, or use gpio: sysfs`,
      );
    this.checkedVersion = true;
  }

  private run(tool: string, args: string[], what: string): string {
    const result = spawnSync(tool, args, { encoding: "utf8", timeout: this.timeoutMs });
    if (result.error !== undefined)
      throw new LineError(
        `cannot ${what}: ${tool} ${(result.error as NodeJS.ErrnoException).code === "ENOENT" ? "is not installed (apt install gpiod, v2 or newer)" : result.error.message}`,
      );
    if (result.status !== 0)
      throw new LineError(
        `cannot ${what}: ${tool} ${args.join(" ")} exited ${result.status ?? result.signal}: ${result.stderr.trim()}`,
      );
    return result.stdout;
  }
}
