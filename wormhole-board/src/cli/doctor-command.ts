import type { CliContext } from "@smw/wiring/cli";
import { Command } from "commander";
import { boardChecks, hostEnvironment } from "../doctor/board-checks.js";
import { loadBoard } from "./load-board.js";

export function doctorCommand(context: CliContext): Command {
  return new Command("doctor")
    .description(
      "check that this machine can run a board of the testbed: Node, native bindings, tools, keys and their modes, images, devices, GPIO chips and lines, state folder, privileges, clock",
    )
    .requiredOption("--testbed <file>", "testbed file")
    .requiredOption("--board <id>", "which board this machine is")
    .option("--json", "one JSON object per check")
    .option(
      "--watchdog <device>",
      "the kernel watchdog the daemon will feed (as smw board run --watchdog): present and writable",
    )
    .action((options: { testbed: string; board: string; json?: boolean; watchdog?: string }) => {
      const { testbed, board } = loadBoard(options.testbed, options.board);
      const checks = boardChecks(
        testbed,
        board,
        hostEnvironment(),
        options.watchdog === undefined ? {} : { watchdogDevice: options.watchdog },
      );
      if (options.json === true)
        for (const check of checks) context.io.out(`${JSON.stringify(check)}\n`);
      else {
        for (const check of checks)
          context.io.out(
            `${check.verdict.toUpperCase().padEnd(4)}  ${check.name.padEnd(8)} ${check.detail}\n`,
          );
        const failed = checks.filter((c) => c.verdict === "fail").length;
        const warned = checks.filter((c) => c.verdict === "warn").length;
        context.io.out(
          failed === 0
            ? `board ${board.id}: ready${warned === 0 ? "" : ` (${warned} warning${warned === 1 ? "" : "s"})`}\n`
            : `board ${board.id}: ${failed} check${failed === 1 ? "" : "s"} failed\n`,
        );
      }
      context.setExitCode(checks.some((c) => c.verdict === "fail") ? 1 : 0);
    });
}
