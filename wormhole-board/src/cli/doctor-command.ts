import { type CliContext, reportChecks } from "@smw/wiring/cli";
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
      reportChecks(context, `board ${board.id}`, checks, options.json === true);
    });
}
