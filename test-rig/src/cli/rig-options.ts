/** What the rig's commands share: the default testbed, the --netns, --runs and load flags, whole-number flags, the setup error. */
import { UsageError } from "@smw/wiring/cli";
import type { Command } from "commander";
import { DEFAULT_LOAD, type LoadShape, MAX_LOAD_CLIENTS } from "../load/client-load.js";
import type { RunSummary } from "../report/run-report.js";
import { RigSetupError } from "../rig/rig-setup.js";

export const DEFAULT_TESTBED = "wiring/examples/rig-6.yaml";

export function runsOption(command: Command): Command {
  return command.option(
    "--runs <dir>",
    "the folder of run folders: the rig runs in <dir>/<testbed name> (default: $SMW_RUNS, else ./runs)",
  );
}

export function netnsOption(command: Command): Command {
  return runsOption(command).option(
    "--netns",
    "one network namespace per host (root; the hosts need addresses of their own)",
  );
}

export function positiveInt(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1)
    throw new UsageError(`${flag} ${text}: expected a whole number of at least 1`);
  return n;
}

export function percentage(text: string, flag: string): number {
  const n = Number(text.replace(/%$/, ""));
  if (text.trim() === "" || !Number.isFinite(n) || n < 0)
    throw new UsageError(`${flag} ${text}: expected a percentage of 0 or more, e.g. 25`);
  return n;
}

/** `--clients N --pause-ms P`: how hard the client load presses (the rig makes keys for 16 clients). */
export function loadOptions(command: Command, defaults: LoadShape = DEFAULT_LOAD): Command {
  return command
    .option(
      "--clients <n>",
      `closed-loop clients of the load, 1 to ${MAX_LOAD_CLIENTS}`,
      String(defaults.clients),
    )
    .option(
      "--pause-ms <ms>",
      "each client's pause between its operations (0: none)",
      String(defaults.pauseMs),
    );
}

export function loadShape(flags: { clients: string; pauseMs: string }): LoadShape {
  const clients = Number(flags.clients);
  if (!Number.isInteger(clients) || clients < 1 || clients > MAX_LOAD_CLIENTS)
    throw new UsageError(
      `--clients ${flags.clients}: expected a whole number from 1 to ${MAX_LOAD_CLIENTS} (the rig makes keys for ${MAX_LOAD_CLIENTS} clients)`,
    );
  const pauseMs = Number(flags.pauseMs);
  if (flags.pauseMs.trim() === "" || !Number.isInteger(pauseMs) || pauseMs < 0 || pauseMs > 60_000)
    throw new UsageError(
      `--pause-ms ${flags.pauseMs}: expected a whole number of milliseconds from 0 to 60000`,
    );
  return { clients, pauseMs };
}

/** Runs a rig; a testbed this machine cannot realise is bad input (exit 2), said as such. */
export async function onTheRig<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    if (error instanceof RigSetupError)
      throw new UsageError(`the rig cannot run here:\n${error.message}`);
    throw error;
  }
}

/** Exit 0 when every promise held, 1 otherwise. */
export function promisesExitCode(summary: RunSummary): 0 | 1 {
  return summary.promises.every((p) => p.held) ? 0 : 1;
}
