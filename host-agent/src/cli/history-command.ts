/**
 * `smw history check FILE`: is a client history of the key-value service linearizable? The
 * history is what the clients saw (history.jsonl, as every rig run writes it; the format is in
 * history/history-file.ts); the check needs nothing else.
 */
import { readFileSync, statSync } from "node:fs";
import { DurationError, parseDurationMs } from "@smw/wiring";
import { type CliContext, UsageError } from "@smw/wiring/cli";
import { Command } from "commander";
import {
  HistoryFormatError,
  type HistoryOperation,
  parseHistory,
} from "../history/history-file.js";
import { checkLinearizable } from "../history/linearizability.js";

/** A history file larger than this is refused rather than read into memory. */
const MAX_HISTORY_BYTES = 1 << 30;

export function historyCommand(context: CliContext): Command {
  const history = new Command("history").description(
    "client histories of the key-value service (history.jsonl)",
  );
  history
    .command("check")
    .description(
      "is the history linearizable? per key a register with put, get, del and cas; info operations may or may not have taken effect. Exit 0 yes, 1 no, 2 bad input or undecided in time",
    )
    .argument("<file>", "a history.jsonl")
    .option("--time-limit <duration>", "give up (exit 2) after this long", "60s")
    .option("--json", "the verdict as JSON")
    .action((file: string, flags: { timeLimit: string; json?: boolean }) => {
      let timeLimitMs: number;
      try {
        timeLimitMs = parseDurationMs(flags.timeLimit);
      } catch (error) {
        if (error instanceof DurationError)
          throw new UsageError(`--time-limit ${flags.timeLimit}: ${error.message}`);
        throw error;
      }
      let text: string;
      try {
        const size = statSync(file).size;
        if (size > MAX_HISTORY_BYTES)
          throw new UsageError(`${file}: ${size} bytes, at most ${MAX_HISTORY_BYTES}`);
        text = readFileSync(file, "utf8");
      } catch (error) {
        if (error instanceof UsageError) throw error;
        throw new UsageError(
          `${file}: cannot read it (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
        );
      }
      let parsed: ReturnType<typeof parseHistory>;
      try {
        parsed = parseHistory(text, file);
      } catch (error) {
        if (error instanceof HistoryFormatError) throw new UsageError(error.message);
        throw error;
      }
      const { operations, scans } = parsed;
      const verdict = checkLinearizable(operations, { timeLimitMs });
      const counts = {
        operations: operations.length,
        keys: verdict.keys,
        ok: operations.filter((o) => o.outcome === "ok").length,
        fail: operations.filter((o) => o.outcome === "fail").length,
        info: operations.filter((o) => o.outcome === "info").length,
        scansNotChecked: scans,
      };
      const start = Math.min(...operations.map((o) => o.invokeTime));
      if (flags.json) {
        context.io.out(
          `${JSON.stringify(
            {
              file,
              linearizable: verdict.linearizable ?? null,
              ...counts,
              checkMs: Math.round(verdict.checkMs),
              ...(verdict.linearizable === false
                ? {
                    key: verdict.key,
                    cannotBeOrdered: verdict.operations.map((o) => ({
                      process: o.process,
                      f: o.f,
                      key: o.key,
                      value: o.f === "get" ? o.output : o.input,
                      ...(o.previous === undefined ? {} : { previous: o.previous }),
                      type: o.outcome,
                      invokeTime: o.invokeTime,
                      completeTime: Number.isFinite(o.completeTime) ? o.completeTime : null,
                      lines: [o.invokeLine, o.completeLine],
                    })),
                  }
                : {}),
              ...(verdict.linearizable === undefined ? { reason: verdict.reason } : {}),
            },
            null,
            2,
          )}\n`,
        );
      } else {
        const what = `${plural(counts.operations, "operation")} on ${plural(counts.keys, "key")} (${counts.ok} ok, ${counts.fail} fail, ${counts.info} info${scans === 0 ? "" : `; ${plural(scans, "scan")} not checked`})`;
        const ms = `${Math.round(verdict.checkMs)} ms`;
        if (verdict.linearizable === true)
          context.io.out(`${file}: ${what}: linearizable (checked in ${ms})\n`);
        else if (verdict.linearizable === undefined)
          context.io.err(`smw history check: ${file}: ${what}: undecided: ${verdict.reason}\n`);
        else {
          context.io.out(
            `${file}: ${what}: NOT linearizable (checked in ${ms})\nkey ${verdict.key}: ${verdict.operations.length === 1 ? "this operation" : `these ${verdict.operations.length} operations`} cannot be ordered (no order of them respects real time and a register's behaviour):\n`,
          );
          for (const o of verdict.operations) context.io.out(`  ${describe(o, start)}\n`);
        }
      }
      context.setExitCode(
        verdict.linearizable === true ? 0 : verdict.linearizable === false ? 1 : 2,
      );
    });
  return history;
}

const plural = (count: number, noun: string) => `${count} ${noun}${count === 1 ? "" : "s"}`;

function describe(o: HistoryOperation, startNs: number): string {
  const at = (ns: number) => `${((ns - startNs) / 1e9).toFixed(6)} s`;
  const args =
    o.f === "get"
      ? ""
      : o.f === "cas"
        ? ` ${JSON.stringify((o.input as unknown[])[0])} -> ${JSON.stringify((o.input as unknown[])[1])}`
        : o.f === "put"
          ? ` ${JSON.stringify(o.input)}`
          : "";
  const result =
    o.outcome === "info"
      ? "outcome unknown (info)"
      : o.outcome === "fail"
        ? `fail at ${at(o.completeTime)}`
        : `ok${o.f === "get" ? ` ${JSON.stringify(o.output)}` : ""}${o.previous === undefined ? "" : ` (replaced ${JSON.stringify(o.previous)})`} at ${at(o.completeTime)}`;
  return `process ${o.process}: ${o.f} ${o.key}${args}, invoked at ${at(o.invokeTime)}, ${result} (line ${o.invokeLine}${o.completeLine === 0 ? "" : `, ${o.completeLine}`})`;
}
