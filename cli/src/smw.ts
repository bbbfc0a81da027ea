/**
 * The `smw` program: the subcommands of every part under one name. Runs
 * in-process for tests (runSmw returns the exit status) and from bin/smw.js.
 */
import { type CliIo, type ExitCode, wiringCommands } from "@smw/wiring/cli";
import { type ProgramPart, runProgram } from "./run-program.js";

/**
 * Each part's subcommands, loaded only when asked for: a host boots `smw host run` and a
 * board starts `smw board run`, and neither should wait for the other parts' code.
 */
const PARTS: readonly ProgramPart[] = [
  { names: ["plan", "wiring"], load: async () => wiringCommands },
  {
    // `wiring probe` drives a board's lines: it belongs to this part, under `wiring`.
    names: ["keys", "image", "board", "deploy", "lines", "doctor", "console", "wiring"],
    load: async () => (await import("@smw/wormhole-board/cli")).wormholeBoardCommands,
    extend: async () => [
      { under: "wiring", factory: (await import("@smw/wormhole-board/cli")).probeCommand },
    ],
  },
  {
    // The boards' statuses, and with --serve the rig's live page drawing them.
    names: ["status"],
    load: async () => {
      const { statusCommand } = await import("@smw/wormhole-board/cli");
      const { serveStatusPage } = await import("@smw/test-rig/cli");
      return [(context) => statusCommand(context, { servePage: serveStatusPage })];
    },
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

export function runSmw(argv: readonly string[], io: CliIo): Promise<ExitCode> {
  return runProgram(argv, io, PARTS);
}
