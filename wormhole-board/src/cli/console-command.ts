/**
 * `smw console HOST --testbed F`: the console of a host as its board kept it (what the host
 * wrote on its serial line that was not protocol: firmware, kernel, a panic), followed live.
 * Run on the board guarding HOST. The board escapes every control character as it writes, so
 * what a hostile host printed cannot drive the operator's terminal.
 */
import { closeSync, existsSync, openSync, readSync, statSync } from "node:fs";
import { formatProblem, loadTestbedFile } from "@smw/wiring";
import { type CliContext, UsageError } from "@smw/wiring/cli";
import { Command } from "commander";
import { consoleLogPath } from "../link/console-log.js";

const POLL_MS = 200;

/** The last `count` lines of `text`. */
function lastLines(text: string, count: number): string {
  if (count <= 0) return "";
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  const kept = lines.slice(-count);
  return kept.length === 0 ? "" : `${kept.join("\n")}\n`;
}

function readFrom(file: string, offset: number, sizeBytes: number): Buffer {
  const fd = openSync(file, "r");
  try {
    const buffer = Buffer.alloc(sizeBytes - offset);
    let done = 0;
    while (done < buffer.length) {
      const n = readSync(fd, buffer, done, buffer.length - done, offset + done);
      if (n === 0) break;
      done += n;
    }
    return buffer.subarray(0, done);
  } finally {
    closeSync(fd);
  }
}

export function consoleCommand(context: CliContext): Command {
  return new Command("console")
    .description(
      "show a host's console as its board kept it (text that is not protocol), and follow it (run on the host's board)",
    )
    .argument("<host>", "the host's id")
    .requiredOption("--testbed <file>", "testbed file")
    .option("-n, --lines <count>", "how many of the latest lines to show first", "20")
    .option("--no-follow", "print and exit instead of following")
    .action(
      async (hostId: string, options: { testbed: string; lines: string; follow: boolean }) => {
        const loaded = loadTestbedFile(options.testbed);
        if (!loaded.ok) throw new UsageError(loaded.problems.map(formatProblem).join("\n"));
        const board = loaded.testbed.boards.find((b) => b.guards === hostId);
        if (board === undefined)
          throw new UsageError(
            `${options.testbed}: no board guards a host "${hostId}" (hosts: ${loaded.testbed.boards.map((b) => b.guards).join(", ")})`,
          );
        const count = Number(options.lines);
        if (!Number.isInteger(count) || count < 0)
          throw new UsageError(`--lines ${options.lines}: expected a whole number`);
        const file = consoleLogPath(board.stateDir);
        let inode: number | undefined;
        let offset = 0;
        if (existsSync(file)) {
          const stats = statSync(file);
          inode = stats.ino;
          offset = stats.size;
          context.io.out(lastLines(readFrom(file, 0, stats.size).toString("utf8"), count));
        } else if (!options.follow) {
          throw new UsageError(
            `${file}: no console kept yet for ${hostId} (board ${board.id} writes it while it runs)`,
          );
        }
        if (!options.follow) {
          context.setExitCode(0);
          return;
        }
        // Follow by polling: the log is rotated by renaming, so a new inode (or a shorter file)
        // starts again from its beginning.
        await new Promise<void>((resolve) => {
          const timer = setInterval(() => {
            if (!existsSync(file)) return;
            const stats = statSync(file);
            if (stats.ino !== inode || stats.size < offset) {
              inode = stats.ino;
              offset = 0;
            }
            if (stats.size > offset) {
              context.io.out(readFrom(file, offset, stats.size).toString("utf8"));
              offset = stats.size;
            }
          }, POLL_MS);
          const stop = () => {
            clearInterval(timer);
            resolve();
          };
          process.once("SIGINT", stop);
          process.once("SIGTERM", stop);
        });
        context.setExitCode(0);
      },
    );
}
