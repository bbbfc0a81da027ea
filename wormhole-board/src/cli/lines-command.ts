/**
 * `smw lines list|get|set|pulse`: commissioning a board's wiring one line at a time. Each command
 * takes the board's line lock (refused while the daemon runs), claims the one line at its safe
 * level, drives it, reads it back, and releases it at its safe level, whatever happens (Ctrl-C
 * included).
 */
import { existsSync, readFileSync } from "node:fs";
import {
  type Board,
  formatDurationMs,
  type Level,
  LINE_ROLES,
  type Line,
  type LineRole,
  parseDurationMs,
  type Testbed,
} from "@smw/wiring";
import { type CliContext, UsageError } from "@smw/wiring/cli";
import { Command } from "commander";
import { BoardLines } from "../lines/board-lines.js";
import { GpiodLines } from "../lines/gpiod-lines.js";
import { describeLineSpec, LineError, physicalHigh } from "../lines/line.js";
import { lineBackendFor } from "../lines/line-backend-for.js";
import { lineLockPath } from "../lines/line-lock.js";
import { listChips } from "../lines/sysfs-chips.js";
import { loadBoard } from "./load-board.js";

interface Target {
  testbed: Testbed;
  board: Board;
}

const targetOf = (file: string, boardId: string): Target => loadBoard(file, boardId);

function lineOf(target: Target, file: string, role: string): Line {
  const line = target.board.lines.find((l) => l.role === role);
  if (line === undefined)
    throw new UsageError(
      `${file}: board ${target.board.id} has no ${role} line (its lines: ${target.board.lines.map((l) => l.role).join(", ")})`,
    );
  return line;
}

function levelOf(text: string, line: Line): Level {
  if (text === "active" || text === "inactive") return text;
  if (text === "safe") return line.safe;
  throw new UsageError(`level "${text}": expected active, inactive or safe`);
}

const physical = (level: Level, line: Line) =>
  physicalHigh(level, line.activeLow) ? "high" : "low";

/** Claims the one line at its safe level, runs `use`, and releases it at its safe level. */
async function withLine<T>(
  target: Target,
  line: Line,
  use: (lines: BoardLines) => Promise<T>,
): Promise<T> {
  let lines: BoardLines;
  try {
    lines = BoardLines.claim(target.board, lineBackendFor(target.testbed, target.board), {
      levels: "safe",
      roles: [line.role],
      ...(target.testbed.simulated
        ? {}
        : { lockPath: lineLockPath(target.testbed.name, target.board.id) }),
    });
  } catch (error) {
    if (error instanceof LineError) throw new UsageError(error.message);
    throw error;
  }
  lines.installSafeExit();
  let outcome: { ok: true; value: T } | { ok: false; error: unknown };
  try {
    outcome = { ok: true, value: await use(lines) };
  } catch (error) {
    outcome = { ok: false, error };
  }
  // A line that could not be made safe is the first thing to say, whatever else went wrong.
  const errors = lines.releaseAll();
  if (errors.length > 0)
    throw new LineError(
      `${describeLineSpec(line)} could not be released at its safe level: ${errors.map((e) => e.message).join("; ")}`,
    );
  if (!outcome.ok) throw outcome.error;
  return outcome.value;
}

/** Drives `level` and reads it back; a line that does not follow is reported, not thrown. */
function drive(lines: BoardLines, line: Line, level: Level): string {
  try {
    lines.set(line.role, level);
    return `set ${level} (${physical(level, line)}), reads back ${level}`;
  } catch (error) {
    return `set ${level} (${physical(level, line)}) but ${(error as Error).message.replace(`${describeLineSpec(line)} was set ${level} but `, "")}: check the wiring`;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function durationOption(text: string, flag: string): number {
  try {
    return parseDurationMs(text);
  } catch (error) {
    throw new UsageError(`${flag} ${text}: ${(error as Error).message}`);
  }
}

export function linesCommand(context: CliContext): Command {
  const command = new Command("lines").description(
    "commission a board's GPIO lines one at a time: each is claimed, driven, read back and released at its safe level",
  );
  const common = (c: Command) =>
    c
      .requiredOption("--testbed <file>", "testbed file")
      .requiredOption("--board <id>", "which board");

  common(command.command("list"))
    .description("the board's lines as the testbed declares them, and where they are found")
    .option("--json", "one JSON object per line")
    .action((options: { testbed: string; board: string; json?: boolean }) => {
      const target = targetOf(options.testbed, options.board);
      const lock = lineLockPath(target.testbed.name, target.board.id);
      const owner =
        !target.testbed.simulated && existsSync(lock)
          ? readFileSync(lock, "utf8").trim()
          : undefined;
      // The chips as the board's backend sees them: a line's sysfs number, or its gpiochip.
      const gpiod = target.board.gpio === "gpiod";
      let chips:
        | Array<{ name: string; label: string; lines: number; where(offset: number): string }>
        | undefined;
      let chipsProblem: string | undefined;
      if (!target.testbed.simulated) {
        try {
          chips = gpiod
            ? new GpiodLines()
                .listChips()
                .map((c) => ({ ...c, where: (offset: number) => `${c.name} line ${offset}` }))
            : listChips().map((c) => ({
                name: c.name,
                label: c.label,
                lines: c.ngpio,
                where: (offset: number) => `${c.name}, sysfs gpio${c.base + offset}`,
              }));
        } catch (error) {
          chipsProblem = (error as Error).message;
        }
      }
      const rows = target.board.lines.map((line) => {
        const chip = chips?.find((c) => c.label === line.chip);
        const found = target.testbed.simulated
          ? "simulated"
          : chip === undefined
            ? `no chip labelled ${line.chip}${chips === undefined ? "" : ` (chips: ${chips.map((c) => c.label).join(", ") || "none"})`}`
            : line.offset >= chip.lines
              ? `${chip.name} has ${chip.lines} lines, no offset ${line.offset}`
              : chip.where(line.offset);
        return {
          role: line.role,
          chip: line.chip,
          offset: line.offset,
          activeLow: line.activeLow,
          safe: line.safe,
          safePhysical: physical(line.safe, line),
          initial: line.initial,
          found,
        };
      });
      if (options.json === true) {
        for (const row of rows) context.io.out(`${JSON.stringify(row)}\n`);
      } else {
        context.io.out(
          `board ${target.board.id} (guards ${target.board.guards}), ${target.testbed.simulated ? "simulated lines" : gpiod ? "GPIO character device (libgpiod tools)" : "sysfs GPIO"}${owner === undefined ? "" : `; owned now by process ${owner} (the daemon: stop it to commission)`}\n`,
        );
        if (chipsProblem !== undefined) context.io.out(`${chipsProblem}\n`);
        for (const r of rows)
          context.io.out(
            `  ${r.role.padEnd(14)} ${`${r.chip}/${r.offset}`.padEnd(22)} ${r.activeLow ? "active-low " : "active-high"}  safe ${r.safe} (${r.safePhysical})  ${r.found}\n`,
          );
      }
      context.setExitCode(0);
    });

  common(command.command("get"))
    .description("claim the line at its safe level, read it back, release it")
    .argument("<role>", `the line's role (${LINE_ROLES.join(", ")})`)
    .action(async (role: string, options: { testbed: string; board: string }) => {
      const target = targetOf(options.testbed, options.board);
      const line = lineOf(target, options.testbed, role);
      const level = await withLine(target, line, async (lines) => lines.get(role as LineRole));
      context.io.out(
        `${describeLineSpec(line)}: at its safe level reads ${level} (${physical(level, line)})${level === line.safe ? "" : `, not ${line.safe}: check the wiring`}; released at its safe level\n`,
      );
      context.setExitCode(level === line.safe ? 0 : 1);
    });

  common(command.command("set"))
    .description("drive the line, read it back, hold it, release it at its safe level")
    .argument("<role>", `the line's role (${LINE_ROLES.join(", ")})`)
    .argument("<level>", "active, inactive or safe")
    .option(
      "--hold <duration>",
      "how long to hold it before releasing it (Ctrl-C ends it early)",
      "5s",
    )
    .action(
      async (
        role: string,
        levelText: string,
        options: { testbed: string; board: string; hold: string },
      ) => {
        const target = targetOf(options.testbed, options.board);
        const line = lineOf(target, options.testbed, role);
        const level = levelOf(levelText, line);
        const holdMs = durationOption(options.hold, "--hold");
        let followed = true;
        await withLine(target, line, async (lines) => {
          const said = drive(lines, line, level);
          followed = !said.includes("check the wiring");
          context.io.out(
            `${describeLineSpec(line)}: ${said}; holding ${formatDurationMs(holdMs)}\n`,
          );
          await sleep(holdMs);
        });
        context.io.out(`released at its safe level (${line.safe}, ${physical(line.safe, line)})\n`);
        context.setExitCode(followed ? 0 : 1);
      },
    );

  common(command.command("pulse"))
    .description(
      "drive the line to the opposite of its safe level for a moment, then release it at its safe level",
    )
    .argument("<role>", `the line's role (${LINE_ROLES.join(", ")})`)
    .option("--for <duration>", "how long the pulse lasts", "500ms")
    .action(async (role: string, options: { testbed: string; board: string; for: string }) => {
      const target = targetOf(options.testbed, options.board);
      const line = lineOf(target, options.testbed, role);
      const pulseMs = durationOption(options.for, "--for");
      const level: Level = line.safe === "active" ? "inactive" : "active";
      let followed = true;
      await withLine(target, line, async (lines) => {
        const said = drive(lines, line, level);
        followed = !said.includes("check the wiring");
        await sleep(pulseMs);
        lines.set(line.role, line.safe);
        context.io.out(
          `${describeLineSpec(line)}: ${said} for ${formatDurationMs(pulseMs)}, then back to ${line.safe} (${physical(line.safe, line)})\n`,
        );
      });
      context.setExitCode(followed ? 0 : 1);
    });
  return command;
}
