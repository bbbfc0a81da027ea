/**
 * Running `smw`'s command line: the parts asked for loaded, commander set up to report to the
 * given output, bad usage and internal errors turned into exit statuses.
 */
import { readFileSync } from "node:fs";
import {
  type CliContext,
  type CliIo,
  type CommandFactory,
  type ExitCode,
  UsageError,
} from "@smw/wiring/cli";
import { Command, CommanderError } from "commander";

const VERSION = (
  JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
    version: string;
  }
).version;

/** One part's subcommands and the names that load them. */
export interface ProgramPart {
  names: readonly string[];
  load(): Promise<CommandFactory[]>;
  /** Subcommands this part adds under another part's command (e.g. `wiring probe`). */
  extend?(): Promise<Array<{ under: string; factory: CommandFactory }>>;
}

export async function runProgram(
  argv: readonly string[],
  io: CliIo,
  parts: readonly ProgramPart[],
): Promise<ExitCode> {
  let exitCode: ExitCode = 0;
  const context: CliContext = {
    io,
    setExitCode(code) {
      exitCode = Math.max(exitCode, code) as ExitCode;
    },
  };
  const program = new Command("smw")
    .description(
      "State Machine Proactive Recovery Wormhole: timely, fail-safe rejuvenation of a BFT replicated service",
    )
    .version(VERSION, "-V, --version");
  const first = argv[0];
  const wanted = parts.filter((p) => first !== undefined && p.names.includes(first));
  const loaded = wanted.length > 0 ? wanted : parts;
  for (const part of loaded)
    for (const factory of await part.load()) program.addCommand(factory(context));
  for (const part of loaded)
    for (const { under, factory } of (await part.extend?.()) ?? [])
      program.commands.find((c) => c.name() === under)?.addCommand(factory(context));
  configure(program, io);

  try {
    await program.parseAsync([...argv], { from: "user" });
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version are successes; everything else commander rejects is bad usage.
      if (error.code === "commander.helpDisplayed" || error.code === "commander.version") return 0;
      return 2;
    }
    if (error instanceof UsageError) {
      io.err(`smw: ${error.message}\n`);
      return 2;
    }
    io.err(`smw: internal error: ${(error as Error).message}\n`);
    if (process.env.SMW_DEBUG) io.err(`${(error as Error).stack}\n`);
    else io.err("(set SMW_DEBUG=1 to see where)\n");
    return 2;
  }
  return exitCode;
}

function commandPath(command: Command): string {
  const names: string[] = [];
  for (let c: Command | null = command; c !== null; c = c.parent) names.unshift(c.name());
  return names.join(" ");
}

/** Commander's settings are per command; give every subcommand the same. */
function configure(command: Command, io: CliIo): void {
  command.exitOverride();
  command.showHelpAfterError(`(see: ${commandPath(command)} --help)`);
  command.configureOutput({
    writeOut: (text) => io.out(text),
    writeErr: (text) => io.err(text),
  });
  for (const sub of command.commands) configure(sub, io);
}
