/**
 * The host's programs alone (`smw host run`, `smw host replica`) and the service's (`smw kv`:
 * a replica or the baseline served, a client's operations, a load), the entry bundled into one
 * file by the build: a payload host boots the agent and the agent its replica, a script calls
 * `smw kv get` again and again, and each start then loads one file instead of a few hundred
 * modules (bin/smw.js picks it for `smw host` and `smw kv`).
 */
import { hostCommand, kvCommand } from "@smw/host-agent/cli";
import type { CliIo, ExitCode } from "@smw/wiring/cli";
import { runProgram } from "./run-program.js";

export function runSmw(argv: readonly string[], io: CliIo): Promise<ExitCode> {
  return runProgram(argv, io, [
    { names: ["host"], load: async () => [hostCommand] },
    { names: ["kv"], load: async () => [kvCommand] },
  ]);
}
