/** `smw wiring check` and `smw wiring diagram`. */
import { writeFileSync } from "node:fs";
import { Command } from "commander";
import { renderWiringDiagram } from "../diagram/wiring-diagram.js";
import type { FileCheckScope } from "../testbed/file-checks.js";
import { loadTestbedFile } from "../testbed/load.js";
import { formatProblem, type Problem } from "../testbed/problem.js";
import { summarizeTestbed } from "../testbed/summary.js";
import type { Testbed } from "../testbed/testbed.js";
import { type CliContext, UsageError } from "./context.js";

export function wiringCommand(context: CliContext): Command {
  const wiring = new Command("wiring").description(
    "describe a testbed: validate it, draw its wiring",
  );

  wiring
    .command("check")
    .description("validate a testbed file and print a summary, or every problem found (exit 2)")
    .argument("<file>", "testbed file (YAML)")
    .option("--board <id>", "also check that this board's keys, images and devices are present")
    .option("--all-files", "also check every board's keys, images and devices")
    .option("--json", "print the result as JSON")
    .action((file: string, options: { board?: string; allFiles?: boolean; json?: boolean }) => {
      if (options.board !== undefined && options.allFiles) {
        throw new UsageError("give --board ID or --all-files, not both");
      }
      const files: FileCheckScope =
        options.board !== undefined
          ? { kind: "board", board: options.board }
          : options.allFiles
            ? { kind: "all" }
            : { kind: "none" };
      const result = loadTestbedFile(file, { files });
      if (!result.ok) {
        reportProblems(context, result.problems, options.json === true);
        return;
      }
      if (options.json) {
        context.io.out(
          `${JSON.stringify({ valid: true, testbed: testbedJson(result.testbed), files }, null, 2)}\n`,
        );
      } else {
        context.io.out(summarizeTestbed(result.testbed, file, files));
      }
      context.setExitCode(0);
    });

  wiring
    .command("diagram")
    .description("draw the testbed's wiring as a printable SVG")
    .argument("<file>", "testbed file (YAML)")
    .requiredOption("-o, --output <svg>", "where to write the SVG")
    .action((file: string, options: { output: string }) => {
      const testbed = loadOrReport(context, file);
      if (testbed === undefined) return;
      const svg = renderWiringDiagram(testbed);
      try {
        writeFileSync(options.output, svg);
      } catch (error) {
        throw new UsageError(`cannot write ${options.output}: ${(error as Error).message}`);
      }
      context.io.out(
        `${options.output}: wiring of "${testbed.name}", ${testbed.boards.length} boards and ${testbed.hosts.length} hosts\n`,
      );
      context.setExitCode(0);
    });

  return wiring;
}

/** Loads a testbed for a command; on problems prints them all, sets exit 2 and returns undefined. */
export function loadOrReport(context: CliContext, file: string): Testbed | undefined {
  const result = loadTestbedFile(file);
  if (result.ok) return result.testbed;
  reportProblems(context, result.problems, false);
  return undefined;
}

function reportProblems(context: CliContext, problems: Problem[], json: boolean): void {
  if (json) {
    context.io.out(`${JSON.stringify({ valid: false, problems }, null, 2)}\n`);
  } else {
    for (const problem of problems) context.io.err(`${formatProblem(problem)}\n`);
    context.io.err(`${problems.length} problem${problems.length === 1 ? "" : "s"} found\n`);
  }
  context.setExitCode(2);
}

function testbedJson(testbed: Testbed): unknown {
  return {
    ...testbed,
    tExhaust:
      testbed.tExhaust.kind === "table"
        ? { kind: "table", byCountMs: Object.fromEntries(testbed.tExhaust.byCountMs) }
        : testbed.tExhaust,
  };
}
