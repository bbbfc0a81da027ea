/**
 * `smw wiring probe`: walks every line of a board with a person at the bench. Each line is driven
 * active, then inactive, each time read back and then asked about ("h1 should now be held in
 * reset: did it? [y/n/s/q]"), and released at its safe level before the next. The answers go to
 * a commissioning record next to the testbed: who, when, and each line's verdict.
 */
import { accessSync, constants, writeFileSync } from "node:fs";
import { userInfo } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import type { Level, Line } from "@smw/wiring";
import { type CliContext, UsageError } from "@smw/wiring/cli";
import { Command } from "commander";
import { BoardLines } from "../lines/board-lines.js";
import { describeLineSpec, LineError, physicalHigh } from "../lines/line.js";
import { lineBackendFor } from "../lines/line-backend-for.js";
import { lineLockPath } from "../lines/line-lock.js";
import { activeEffect } from "../lines/probe-questions.js";
import { loadBoard } from "./load-board.js";

type Answer = "yes" | "no" | "skipped";

export interface LineVerdict {
  role: string;
  chip: string;
  offset: number;
  activeLow: boolean;
  /** Each level driven: read back as set (absent: not driven), and what the person saw. */
  active: { readBack?: boolean; seen: Answer };
  inactive: { readBack?: boolean; seen: Answer };
  verdict: "pass" | "fail" | "skipped";
}

export interface CommissioningRecord {
  testbed: string;
  board: string;
  host: string;
  by: string;
  startedAt: string;
  finishedAt: string;
  complete: boolean;
  lines: LineVerdict[];
}

/** Reads one answer a line at a time from stdin: y, n, s (skip) or q (quit). */
function answers(): { ask(question: string): Promise<"y" | "n" | "s" | "q">; close(): void } {
  const rl = createInterface({ input: process.stdin, terminal: false });
  const queue: string[] = [];
  let waiting: ((line: string | undefined) => void) | undefined;
  let ended = false;
  rl.on("line", (line) => {
    if (waiting !== undefined) {
      const resolve = waiting;
      waiting = undefined;
      resolve(line);
    } else queue.push(line);
  });
  rl.on("close", () => {
    ended = true;
    waiting?.(undefined);
  });
  const next = () =>
    new Promise<string | undefined>((resolve) => {
      const queued = queue.shift();
      if (queued !== undefined) resolve(queued);
      else if (ended) resolve(undefined);
      else waiting = resolve;
    });
  return {
    async ask(question) {
      for (;;) {
        process.stdout.write(`${question} [y/n/s/q] `);
        const line = await next();
        // No more input: stop here, as a person who walked away would want.
        if (line === undefined) return "q";
        // Piped answers: show them, so the transcript reads as a session at the bench.
        if (!process.stdin.isTTY) process.stdout.write(`${line.trim()}\n`);
        const answer = line.trim().toLowerCase()[0];
        if (answer === "y" || answer === "n" || answer === "s" || answer === "q") return answer;
        process.stdout.write("answer y (yes), n (no), s (skip this line) or q (quit)\n");
      }
    },
    close: () => rl.close(),
  };
}

const physical = (level: Level, line: Line) =>
  physicalHigh(level, line.activeLow) ? "high" : "low";

function verdictOf(
  active: LineVerdict["active"],
  inactive: LineVerdict["inactive"],
): LineVerdict["verdict"] {
  if (active.seen === "skipped" || inactive.seen === "skipped") return "skipped";
  return active.readBack === true &&
    inactive.readBack === true &&
    active.seen === "yes" &&
    inactive.seen === "yes"
    ? "pass"
    : "fail";
}

export function probeCommand(context: CliContext): Command {
  return new Command("probe")
    .description(
      "walk every line of a board with a person at the bench: drive it, read it back, ask what they saw; writes a commissioning record",
    )
    .requiredOption("--testbed <file>", "testbed file")
    .requiredOption("--board <id>", "which board")
    .option("--by <name>", "who is commissioning (default: the login name)")
    .option(
      "--record <file>",
      "where to write the record (default: commissioning-BOARD.json beside the testbed)",
    )
    .action(async (options: { testbed: string; board: string; by?: string; record?: string }) => {
      const { testbed, board } = loadBoard(options.testbed, options.board);
      const recordPath =
        options.record ??
        path.join(path.dirname(path.resolve(options.testbed)), `commissioning-${board.id}.json`);
      const by = options.by ?? process.env.SUDO_USER ?? userInfo().username;
      // Where the record goes is checked before any line moves.
      try {
        accessSync(path.dirname(recordPath), constants.W_OK);
      } catch (error) {
        throw new UsageError(
          `cannot write the commissioning record ${recordPath}: ${(error as Error).message}`,
        );
      }
      let lines: BoardLines;
      try {
        lines = BoardLines.claim(board, lineBackendFor(testbed, board), {
          levels: "safe",
          ...(testbed.simulated ? {} : { lockPath: lineLockPath(testbed.name, board.id) }),
        });
      } catch (error) {
        if (error instanceof LineError) throw new UsageError(error.message);
        throw error;
      }
      lines.installSafeExit();
      const record: CommissioningRecord = {
        testbed: path.resolve(options.testbed),
        board: board.id,
        host: board.guards,
        by,
        startedAt: new Date().toISOString(),
        finishedAt: "",
        complete: false,
        lines: [],
      };
      const input = answers();
      let walkError: unknown;
      try {
        context.io.out(
          `commissioning board ${board.id} (guards ${board.guards}): ${board.lines.length} lines, each driven active then inactive, then left at its safe level\n`,
        );
        let quit = false;
        for (const line of board.lines) {
          // Nobody is watching once the walk is quit: the lines not yet walked are not driven.
          const results: Partial<Record<Level, { readBack?: boolean; seen: Answer }>> = {};
          for (const level of ["active", "inactive"] as const) {
            if (quit) {
              results[level] = { seen: "skipped" };
              continue;
            }
            let readBack = true;
            try {
              lines.set(line.role, level);
            } catch (error) {
              readBack = false;
              context.io.out(`  ${(error as Error).message}: check the wiring\n`);
            }
            const effect = activeEffect(line.role, board.guards);
            const question = `${describeLineSpec(line)} ${level} (${physical(level, line)}): ${level === "active" ? effect : `no longer: ${effect}`}. Is that so?`;
            const answer = await input.ask(question);
            if (answer === "q") quit = true;
            results[level] = {
              readBack,
              seen: answer === "y" ? "yes" : answer === "n" ? "no" : "skipped",
            };
          }
          lines.set(line.role, line.safe);
          const active = results.active as LineVerdict["active"];
          const inactive = results.inactive as LineVerdict["inactive"];
          const verdict = verdictOf(active, inactive);
          record.lines.push({
            role: line.role,
            chip: line.chip,
            offset: line.offset,
            activeLow: line.activeLow,
            active,
            inactive,
            verdict,
          });
          context.io.out(
            `  ${line.role}: ${verdict.toUpperCase()}, back at its safe level (${line.safe})\n`,
          );
        }
        record.complete = !quit;
      } catch (error) {
        walkError = error;
      }
      input.close();
      // Whatever happened, the lines go safe and what was seen so far is kept.
      const errors = lines.releaseAll();
      record.finishedAt = new Date().toISOString();
      writeFileSync(recordPath, `${JSON.stringify(record, null, 2)}\n`);
      if (errors.length > 0)
        throw new LineError(
          `lines not released at their safe levels: ${errors.map((e) => e.message).join("; ")}`,
        );
      if (walkError !== undefined) throw walkError;
      const failed = record.lines.filter((l) => l.verdict === "fail").map((l) => l.role);
      const skipped = record.lines.filter((l) => l.verdict === "skipped").map((l) => l.role);
      context.io.out(
        `${failed.length === 0 && skipped.length === 0 ? "every line passed" : `${failed.length === 0 ? "" : `failed: ${failed.join(", ")}`}${failed.length > 0 && skipped.length > 0 ? "; " : ""}${skipped.length === 0 ? "" : `skipped: ${skipped.join(", ")}`}`}; record written to ${recordPath}\n`,
      );
      context.setExitCode(failed.length === 0 && skipped.length === 0 ? 0 : 1);
    });
}
