/** `smw rig fault NAME ...`: one fault into a running rig, through its fault socket. */
import path from "node:path";
import { formatProblem, loadTestbedFile } from "@smw/wiring";
import { type CliContext, UsageError } from "@smw/wiring/cli";
import type { Command } from "commander";
import { FAULT_NAMES, FAULTS, parseFaultRequest } from "../rig/fault-requests.js";
import { sendFault } from "../rig/fault-socket.js";
import { FAULT_SOCKET } from "../rig/rig.js";
import { rigRunDir } from "../rig/run-folder.js";
import { DEFAULT_TESTBED, runsOption } from "./rig-options.js";

interface FaultFlags {
  testbed: string;
  runs?: string;
  host?: string;
  board?: string;
  peer?: string;
  ms?: string;
  behaviours?: string;
  image?: string;
  now?: boolean;
}

export function addFaultCommand(rig: Command, context: CliContext): void {
  runsOption(rig.command("fault"))
    .description("inject one fault into the rig running on the testbed (smw rig up, demo, measure)")
    .argument("<fault>", `one of: ${FAULT_NAMES.join(", ")}`)
    .option("--testbed <file>", "the testbed of the running rig", DEFAULT_TESTBED)
    .option("--host <id>", "the host to hit")
    .option("--board <id>", "the board to hit")
    .option("--peer <id>", "cut-link: the board at the other end")
    .option("--ms <n>", "slow-transfer: the stall; skew-clock: the jump (may be negative)")
    .option("--behaviours <list>", "byzantine: comma-separated behaviours")
    .option("--image <which>", "tamper-golden, tamper-manifest: os or sm")
    .option("--now", "corrupt-state: at once, not while the host is down")
    .addHelpText(
      "after",
      `\nFaults:\n${FAULT_NAMES.map((f) => `  ${f.padEnd(18)} ${FAULTS[f]}`).join("\n")}\n`,
    )
    .action(async (fault: string, flags: FaultFlags) => {
      const loaded = loadTestbedFile(flags.testbed);
      if (!loaded.ok) throw new UsageError(loaded.problems.map(formatProblem).join("\n"));
      const request = requestFromFlags(fault, flags);
      // Checked here too, so a mistake is told before anything is sent.
      const parsed = parseFaultRequest(request, loaded.testbed);
      if ("error" in parsed) throw new UsageError(parsed.error);
      const socket = path.join(rigRunDir(loaded.testbed.name, flags.runs), FAULT_SOCKET);
      let answer: Awaited<ReturnType<typeof sendFault>>;
      try {
        answer = await sendFault(socket, request);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === "ENOENT" || code === "ECONNREFUSED")
          throw new UsageError(
            `no rig is running on ${flags.testbed} (no one answers at ${socket}): start one with smw rig up --testbed ${flags.testbed}`,
          );
        throw new UsageError(`${socket}: ${(error as Error).message}`);
      }
      if (answer.ok) context.io.out(`${answer.detail}\n`);
      else {
        context.io.err(`smw rig fault: ${answer.error}\n`);
        context.setExitCode(1);
      }
    });
}

function requestFromFlags(fault: string, flags: FaultFlags): Record<string, unknown> {
  const request: Record<string, unknown> = { fault };
  if (flags.host !== undefined) request.host = flags.host;
  if (flags.board !== undefined) request.board = flags.board;
  if (flags.peer !== undefined) request.peer = flags.peer;
  if (flags.image !== undefined) request.image = flags.image;
  if (flags.now) request.now = true;
  if (flags.behaviours !== undefined)
    request.behaviours = flags.behaviours
      .split(",")
      .map((b) => b.trim())
      .filter((b) => b !== "");
  if (flags.ms !== undefined) {
    const ms = Number(flags.ms);
    if (!Number.isSafeInteger(ms))
      throw new UsageError(`--ms ${flags.ms}: expected a whole number of milliseconds`);
    request[fault === "skew-clock" ? "offsetMs" : "stallMs"] = ms;
  }
  return request;
}
