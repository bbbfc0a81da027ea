/**
 * Where a rig runs: a folder of its own per testbed, `<runs>/<testbed name>`, outside the
 * source tree. `<runs>` is `--runs DIR`, else the SMW_RUNS environment variable, else
 * `runs` in the current folder. The rig copies the testbed file there as `testbed.yaml`
 * (with any figures it derived, such as budgets measured on this machine) and runs every
 * board and host from that copy, so a simulated testbed's relative paths (keys, disks,
 * PTYs, state) resolve inside the run folder, and the copy is the exact testbed that ran.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { type RejuvenationOverrides, withRejuvenationOverrides } from "@smw/wiring";

/** The testbed's copy in its run folder. */
export const RUN_TESTBED = "testbed.yaml";

export function runsDir(flag?: string): string {
  return path.resolve(flag ?? process.env.SMW_RUNS ?? "runs");
}

/** The run folder of a testbed (by its name). */
export function rigRunDir(testbedName: string, runs?: string): string {
  return path.join(runsDir(runs), testbedName);
}

/** Writes the testbed that runs into its run folder; returns its path. */
export function writeRunTestbed(
  templateFile: string,
  runDir: string,
  overrides: RejuvenationOverrides = {},
  note: readonly string[] = [],
): string {
  const text = readFileSync(templateFile, "utf8");
  const header = [
    `Copied by the rig from ${path.resolve(templateFile)}; relative paths are inside this folder.`,
    ...note,
  ];
  mkdirSync(runDir, { recursive: true });
  const file = path.join(runDir, RUN_TESTBED);
  writeFileSync(file, withRejuvenationOverrides(text, overrides, header));
  return file;
}
