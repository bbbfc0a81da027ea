/**
 * The host's programs alone (`smw host run`, `smw host replica`), the entry bundled into one
 * file by the build: a payload host boots the agent and the agent its replica, and each start
 * then loads one file instead of a few hundred modules (bin/smw.js picks it for `smw host`).
 */
import { hostCommand } from "@smw/host-agent/cli";
import type { CliIo, ExitCode } from "@smw/wiring/cli";
import { runProgram } from "./run-program.js";

export function runSmw(argv: readonly string[], io: CliIo): Promise<ExitCode> {
  return runProgram(argv, io, [{ names: ["host"], load: async () => [hostCommand] }]);
}
