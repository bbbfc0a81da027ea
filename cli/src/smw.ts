/**
 * The `smw` program: the subcommands of every part under one name. Runs
 * in-process for tests (runSmw returns the exit status) and from bin/smw.js.
 */
import { readFileSync } from "node:fs";
import {
  type CliContext,
  type CliIo,
  type CommandFactory,
  type ExitCode,
  UsageError,
  wiringCommands,
} from "@smw/wiring/cli";
import { Command, CommanderError } from "commander";

const VERSION = (
  JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
    version: string;
  }
).version;

/**
 * Each part's subcommands, loaded only when asked for: a host boots `smw host run` and a
 * board starts `smw board run`, and neither should wait for the other parts' code.
 */
const PARTS: ReadonlyArray<{ names: readonly string[]; load(): Promise<CommandFactory[]> }> = [
  { names: ["plan", "wiring"], load: async () => wiringCommands },
  {
    names: ["keys", "image", "board", "status"],
    load: async () => (await import("@smw/wormhole-board/cli")).wormholeBoardCommands,
  },
  {
    names: ["kv", "host", "history"],
    load: async () => (await import("@smw/host-agent/cli")).hostAgentCommands,
  },
  {
    names: ["rig", "drill"],
    load: async () => (await import("@smw/test-rig/cli")).testRigCommands,
  },
];

export async function runSmw(argv: readonly string[], io: CliIo): Promise<ExitCode> {
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
  const wanted = PARTS.filter((p) => first !== undefined && p.names.includes(first));
  for (const part of wanted.length > 0 ? wanted : PARTS)
    for (const factory of await part.load()) program.addCommand(factory(context));
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
