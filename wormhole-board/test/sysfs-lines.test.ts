import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";

const here = path.dirname(fileURLToPath(import.meta.url));
const scenario = path.join(here, "fake-sysfs", "scenario.mjs");

/** Why the fake-sysfs scenario cannot run here, or undefined when it can. */
function unavailable(): string | undefined {
  if (process.getuid?.() !== 0)
    return "not root: a private mount namespace with a tmpfs over /sys/class needs root";
  const probe = spawnSync("unshare", ["-m", "--propagation", "private", "true"], {
    encoding: "utf8",
  });
  if (probe.status !== 0)
    return `unshare -m failed: ${probe.error?.message ?? probe.stderr.trim()}`;
  if (!existsSync(path.join(here, "..", "dist", "index.js")))
    return "wormhole-board is not built (npm run build)";
  return undefined;
}

const reason = unavailable();
if (reason !== undefined) process.stdout.write(`sysfs GPIO tests skipped: ${reason}\n`);

type Files = { direction: string; value: string; active_low: string } | null;
interface ScenarioResult {
  numbers: Record<string, number>;
  outOfRange: string;
  unknownChip: string;
  readBack: string;
  lockRefused: { status: number; stdout: string };
  lockFreed: { status: number; stdout: string };
  log: string[];
  steps: Record<string, Record<string, Files>>;
  "throw:exit": number;
  "throw:log": string[];
  "wait:exit": number | string;
  "exit:exit": number;
  linesList: { status: number; stdout: string; stderr: string };
  linesSet: { status: number; stdout: string };
  linesSetToEnd: { status: number; stdout: string };
  linesRefused: { status: number; stderr: string };
  linesGet: { status: number; stdout: string; stderr: string };
}

describe.skipIf(reason !== undefined)("the sysfs backend against a fake sysfs tree", () => {
  let result: ScenarioResult;
  beforeAll(() => {
    const run = spawnSync(
      "unshare",
      ["-m", "--propagation", "private", process.execPath, scenario],
      {
        encoding: "utf8",
        timeout: 80_000,
      },
    );
    if (run.status !== 0) throw new Error(`scenario failed (${run.status}): ${run.stderr}`);
    result = JSON.parse(run.stdout.trim().split("\n").pop() as string);
    // Several smw commands, each a node start: beside the rig that is seconds each.
  }, 90_000);

  it("finds chips by label and adds their base (Pi kernels number from 512 up)", () => {
    expect(result.numbers).toEqual({
      reset: 512 + 17,
      power: 512 + 27,
      "write-protect": 512 + 22,
      alarm: 571 + 24,
    });
    expect(result.outOfRange).toContain("has lines 0-57; offset 58 is out of range");
    expect(result.unknownChip).toContain('no GPIO chip labelled "no-such-chip"');
    expect(result.unknownChip).toContain("pinctrl-rp1 (gpiochip571)");
  });

  it("exports only the lines it claims that were not exported, and unexports only those", () => {
    expect(result.log).toEqual([
      "export 529",
      "export 534",
      "export 595",
      "unexport 529",
      "unexport 534",
      "unexport 595",
    ]);
    expect(result.steps.released?.["539"]).not.toBeNull();
  });

  it("claims glitch-free: active_low first, then the starting level as the direction", () => {
    const claimed = result.steps.claimed as Record<string, Files>;
    // reset: active-low, starts inactive = physically high.
    expect(claimed["529"]).toEqual({ direction: "high", value: "0", active_low: "1" });
    // write-protect: active-high, starts active (protected) = high.
    expect(claimed["534"]?.direction).toBe("high");
    expect(claimed["534"]?.active_low).toBe("0");
    // alarm on the RP1: starts inactive = low.
    expect(claimed["595"]?.direction).toBe("low");
    // Never "out" followed by a value.
    for (const files of Object.values(claimed)) expect(files?.direction).not.toBe("out");
  });

  it("writes logical levels to value and reads them back", () => {
    expect(result.steps.writeProtectLowered?.["534"]?.value).toBe("0");
    expect(result.readBack).toBe("inactive");
  });

  it("drives every line to its safe level on release", () => {
    const released = result.steps.releasedValues as Record<string, Files>;
    for (const n of ["529", "534", "539", "595"]) expect(released[n]?.value).toBe("1");
  });

  it("drives every line safe on a normal exit", () => {
    expect(result["exit:exit"]).toBe(0);
    for (const n of ["529", "534", "595"]) expect(result.steps["exit:after"]?.[n]?.value).toBe("1");
  });

  it("drives every line safe on an uncaught error and on SIGTERM, leaving them exported so the level holds", () => {
    expect(result.steps["throw:running"]?.["534"]?.value).toBe("0");
    expect(result["throw:exit"]).toBe(70);
    for (const n of ["529", "534", "595"])
      expect(result.steps["throw:after"]?.[n]?.value).toBe("1");
    expect(result["throw:log"]).toEqual(["export 529", "export 534", "export 595"]);
    expect(result["wait:exit"]).toBe(143);
    for (const n of ["529", "534", "595"]) expect(result.steps["wait:after"]?.[n]?.value).toBe("1");
  });

  it("lets one process own the lines", () => {
    expect(result.lockRefused.status).toBe(2);
    expect(result.lockRefused.stdout).toMatch(/refused: the lines are owned by process \d+/);
    expect(result.lockFreed.status).toBe(0);
  });

  it("smw lines finds each line, drives one, reads it back and releases it safe", () => {
    expect(result.linesList.status).toBe(0);
    expect(result.linesList.stdout).toMatch(
      /reset +pinctrl-bcm2711\/17 +active-low +safe active \(low\) +gpiochip512, sysfs gpio529/,
    );
    // write-protect: active-high, safe active (protected); set inactive while held, then safe.
    expect(result.steps["lines-set:holding"]?.["534"]?.value).toBe("0");
    expect(result.linesSet.stdout).toMatch(
      /write-protect line \(pinctrl-bcm2711\/22\): set inactive \(low\), reads back inactive; holding 2m/,
    );
    // Ctrl-C ended the hold: released at its safe level all the same.
    expect(result.linesSet.status).toBe(130);
    expect(result.steps["lines-set:after"]?.["534"]?.value).toBe("1");
    // Held to its end: released, and said so.
    expect(result.linesSetToEnd.stdout).toMatch(
      /set inactive \(low\), reads back inactive; holding 10ms\n.*released at its safe level \(active, high\)/s,
    );
    expect(result.linesSetToEnd.status).toBe(0);
    expect(result.steps["lines-set-to-end:after"]?.["534"]?.value).toBe("1");
    // One process owns a board's lines: while the set held them, another command was refused.
    expect(result.linesRefused.status).toBe(2);
    expect(result.linesRefused.stderr).toMatch(/the lines are owned by process \d+/);
    expect(result.linesGet.stdout).toMatch(
      /reset line \(pinctrl-bcm2711\/17, active-low\): at its safe level reads active \(low\)/,
    );
    expect(result.linesGet.status).toBe(0);
  });
});
