/**
 * GPIO through the kernel's character device, driven with the libgpiod command-line tools, for
 * kernels whose sysfs GPIO interface is gone. A chip is found by its label (`gpiodetect`); a
 * level is set with `gpioset` (request the line as an output with its value, then exit: the
 * level is set at request time, so no glitch) and read back without turning the output into an
 * input. Each call is a short process, synchronous: a safe-exit path cannot wait.
 *
 * - libgpiod v2: `gpioset --toggle 0` sets, `gpioget --as-is` reads back.
 * - libgpiod v1 (Bookworm's `gpiod` package): `gpioset --mode=exit` sets; v1's gpioget always
 *   requests the line as an input, which would release a driven reset line, so the level is read
 *   back with the Raspberry Pi's `pinctrl get N`, which reads the pin's registers without
 *   requesting the line. Only for the Pi's GPIO chips (pinctrl-bcm2835/2711, the RP1), whose
 *   offsets are pinctrl's GPIO numbers; any other chip is refused with that reason.
 *
 * The line keeps its level after the tool exits on drivers that leave a released output as it
 * was, as the Raspberry Pi's do: the board reads every write back, so a driver that does not is
 * caught at the first step, not trusted (with pinctrl, a line found no longer an output is
 * reported as such).
 */
import { spawnSync } from "node:child_process";
import { type Level, type Line as LineSpec, parseGpiodetect } from "@smw/wiring";
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
  /** The Raspberry Pi's pinctrl: reads a line back under libgpiod v1. */
  pinctrl?: string;
  timeoutMs?: number;
}

/** The Raspberry Pi's GPIO chips: on them a line's offset is its GPIO number for `pinctrl`. */
export const PINCTRL_CHIP_LABELS: readonly string[] = [
  "pinctrl-bcm2835",
  "pinctrl-bcm2711",
  "pinctrl-rp1",
];

export class GpiodLines implements LineBackend {
  readonly name = "gpiod";
  private readonly tools: { gpioset: string; gpioget: string; gpiodetect: string; pinctrl: string };
  private readonly timeoutMs: number;
  private chips: GpiodChip[] | undefined;
  /** The tools' major version, once asked. */
  private major: number | undefined;

  constructor(options: GpiodLinesOptions = {}) {
    this.tools = {
      gpioset: options.gpioset ?? "gpioset",
      gpioget: options.gpioget ?? "gpioget",
      gpiodetect: options.gpiodetect ?? "gpiodetect",
      pinctrl: options.pinctrl ?? "pinctrl",
    };
    this.timeoutMs = options.timeoutMs ?? 5_000;
  }

  /** The chips `gpiodetect` lists: `gpiochip0 [pinctrl-bcm2711] (58 lines)`. */
  listChips(): GpiodChip[] {
    if (this.chips !== undefined) return this.chips;
    const chips = parseGpiodetect(this.run(this.tools.gpiodetect, [], "list the GPIO chips"));
    this.chips = chips;
    return chips;
  }

  claim(spec: LineSpec, levels: ClaimLevels): ClaimedLine {
    const major = this.checkVersion();
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
    if (major === 1 && !PINCTRL_CHIP_LABELS.includes(chip.label))
      throw new LineError(
        `${describeLineSpec(spec)}: with libgpiod v1's tools a driven line is read back with the Raspberry Pi's pinctrl, which numbers only the Pi's own GPIO chips (${PINCTRL_CHIP_LABELS.join(", ")}), not ${chip.name} [${chip.label}]; install libgpiod v2's tools, or use gpio: sysfs`,
      );
    // Levels are logical: with --active-low the tools map active to the low level themselves.
    const polarity = spec.activeLow ? ["--active-low"] : [];
    const set = (level: Level) => {
      if (major === 1) {
        this.run(
          this.tools.gpioset,
          [...polarity, "--mode=exit", chip.name, `${spec.offset}=${level === "active" ? 1 : 0}`],
          `set ${describeLineSpec(spec)} ${level}`,
        );
        return;
      }
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
      if (major === 1) return this.readWithPinctrl(spec);
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

  /**
   * For `smw doctor`: which tools will drive and read back lines on chips labelled `chipLabels`,
   * or what is missing. Runs each tool once (pinctrl reads GPIO 0: it needs the gpio group).
   */
  checkTools(chipLabels: readonly string[]): { ok: boolean; detail: string } {
    try {
      const major = this.checkVersion();
      if (major >= 2)
        return {
          ok: true,
          detail: `libgpiod v${major} tools: gpioset --toggle 0, gpioget --as-is`,
        };
      const foreign = chipLabels.filter((l) => !PINCTRL_CHIP_LABELS.includes(l));
      if (foreign.length > 0)
        return {
          ok: false,
          detail: `libgpiod v1 tools read a driven line back with pinctrl, which does not number ${foreign.join(", ")}; install libgpiod v2's tools, or use gpio: sysfs`,
        };
      this.run(
        this.tools.pinctrl,
        ["get", "0"],
        "read GPIO 0 with pinctrl",
        "is not installed (Raspberry Pi OS: apt install raspi-utils)",
      );
      return { ok: true, detail: "libgpiod v1 tools: gpioset --mode=exit, read back with pinctrl" };
    } catch (error) {
      return { ok: false, detail: (error as Error).message };
    }
  }

  /** The tools' major version: 1 or newer (v1 reads back with pinctrl, see above). */
  private checkVersion(): number {
    if (this.major !== undefined) return this.major;
    const out = this.run(this.tools.gpioset, ["--version"], "ask gpioset its version");
    const major = Number(/v(\d+)\./.exec(out)?.[1]);
    if (!(major >= 1))
      throw new LineError(
        `the libgpiod tools here are ${out.split("\n")[0]?.trim() || "of an unknown version"}: expected libgpiod v1 or v2 ("gpioset (libgpiod) v2.1")`,
      );
    this.major = major;
    return major;
  }

  /**
   * A line's logical level from `pinctrl get N`, which prints
   * `17: op dh pd | hi // GPIO17 = output`: the function (op: output), the driven level, the
   * pull, then the level on the pin. A line that is no longer an output is not being driven.
   */
  private readWithPinctrl(spec: LineSpec): Level {
    const out = this.run(
      this.tools.pinctrl,
      ["get", String(spec.offset)],
      `read ${describeLineSpec(spec)}`,
      "is not installed (Raspberry Pi OS: apt install raspi-utils)",
    );
    const line = out.split("\n").find((l) => l.trim().startsWith(`${spec.offset}:`));
    const match = /^\s*\d+:\s+(\S+)\s.*\|\s*(hi|lo)\b/.exec(line ?? "");
    if (match === null)
      throw new LineError(
        `pinctrl said "${out.trim().split("\n")[0] ?? ""}" for ${describeLineSpec(spec)}: expected "${spec.offset}: op dh pn | hi // ..."`,
      );
    if (match[1] !== "op")
      throw new LineError(
        `${describeLineSpec(spec)} is no longer an output (pinctrl: ${line?.trim()}): this GPIO driver does not keep a line's level once gpioset exits; use gpio: sysfs`,
      );
    const high = match[2] === "hi";
    return high !== spec.activeLow ? "active" : "inactive";
  }

  private run(
    tool: string,
    args: string[],
    what: string,
    notInstalled = "is not installed (apt install gpiod)",
  ): string {
    const result = spawnSync(tool, args, { encoding: "utf8", timeout: this.timeoutMs });
    if (result.error !== undefined)
      throw new LineError(
        `cannot ${what}: ${tool} ${(result.error as NodeJS.ErrnoException).code === "ENOENT" ? notInstalled : result.error.message}`,
      );
    if (result.status !== 0)
      throw new LineError(
        `cannot ${what}: ${tool} ${args.join(" ")} exited ${result.status ?? result.signal}: ${result.stderr.trim()}`,
      );
    return result.stdout;
  }
}
