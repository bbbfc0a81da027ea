/** `smw drill failsafe --scenario NAME` and `smw drill all`: the fail-safe drills on the rig. */
import { type CliContext, UsageError } from "@smw/wiring/cli";
import { Command } from "commander";
import { DRILL_NAMES, type DrillResult, runDrill } from "../scenarios/drills.js";
import { type LiveFlags, liveOptions, withLive } from "./live-options.js";
import { DEFAULT_TESTBED, netnsOption, onTheRig, positiveInt } from "./rig-options.js";

/** The clients' history of a drill in one word: what a drill runner checks first. */
function historyWord(history: DrillResult["history"]): string {
  if (history === null) return "-";
  if (history.linearizable === true) return "linearizable";
  return history.linearizable === false ? "NOT linearizable" : "undecided";
}

/** The drills' table, then where each drill's folder is (its events, timings, timeline, history). */
export function renderResults(results: readonly DrillResult[]): string {
  const rows = results.map((r) => [
    r.name,
    r.passed ? "PASS" : "FAIL",
    r.timeToSafeMs === null ? "-" : `${r.timeToSafeMs} ms`,
    String(r.alerts.length),
    historyWord(r.history),
    r.detail,
  ]);
  const header = ["drill", "result", "time to safe", "alerts", "history", "detail"];
  const widths = header.map((h, i) =>
    Math.max(h.length, ...rows.map((r) => (r[i] as string).length)),
  );
  const line = (cells: readonly string[]) =>
    cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] as number))).join("  ");
  const folders = results.map((r) => `${r.name}: ${r.folder}`);
  return `${[line(header), ...rows.map(line), "", "folders:", ...folders.map((f) => `  ${f}`)].join("\n")}\n`;
}

async function runAll(
  names: readonly string[],
  flags: {
    testbed: string;
    json?: boolean;
    out?: string;
    periods: string;
    netns?: boolean;
    runs?: string;
  } & LiveFlags,
  context: CliContext,
): Promise<void> {
  const periods = positiveInt(flags.periods, "--periods");
  await withLive(flags, context, async (live) => {
    const results: DrillResult[] = [];
    for (const name of names) {
      const result = await onTheRig(() =>
        runDrill(name, {
          testbedFile: flags.testbed,
          cleanPeriods: periods,
          ...(flags.runs === undefined ? {} : { runsDir: flags.runs }),
          ...(flags.netns ? { netns: true } : {}),
          ...(flags.out === undefined ? {} : { outDir: flags.out }),
          ...(live === undefined ? {} : { live }),
          say: (line) => {
            if (!flags.json) context.io.out(`${line}\n`);
          },
        }),
      );
      results.push(result);
    }
    if (flags.json) context.io.out(`${JSON.stringify(results, null, 2)}\n`);
    else context.io.out(`\n${renderResults(results)}`);
    context.setExitCode(results.every((r) => r.passed) ? 0 : 1);
  });
}

export function drillCommand(context: CliContext): Command {
  const drill = new Command("drill").description(
    "fail-safe drills on the rig: inject a fault, check every board goes fail-safe, hosts held, alerts sent",
  );
  const common = (c: Command) =>
    liveOptions(netnsOption(c), false)
      .option("--testbed <file>", "a simulated testbed file", DEFAULT_TESTBED)
      .option("--periods <n>", "periods of the clean run", "1")
      .option(
        "--out <dir>",
        "where each drill's folder goes: events.jsonl, timings.csv, timeline.svg (default: drills/ in the run folder)",
      )
      .option(
        "--json",
        "print the results as JSON: name, passed, timeToSafeMs, reasons, alerts, ...",
      );
  common(
    drill
      .command("failsafe")
      .description(`one drill: ${DRILL_NAMES.join(", ")}`)
      .requiredOption("--scenario <name>", "which drill"),
  ).action(
    async (flags: {
      scenario: string;
      testbed: string;
      json?: boolean;
      out?: string;
      periods: string;
    }) => {
      if (!DRILL_NAMES.includes(flags.scenario))
        throw new UsageError(
          `--scenario ${flags.scenario}: no such drill (drills: ${DRILL_NAMES.join(", ")})`,
        );
      await runAll([flags.scenario], flags, context);
    },
  );
  common(
    drill.command("all").description("every drill, one after the other, then the clean run"),
  ).action(async (flags: { testbed: string; json?: boolean; out?: string; periods: string }) => {
    await runAll(DRILL_NAMES, flags, context);
  });
  return drill;
}
