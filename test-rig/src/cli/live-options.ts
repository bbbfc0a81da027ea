/**
 * `--live [port]` and `--live-faults`, as the rig's commands share them: the live page is served
 * from the start of the command (its address printed first), follows each run, shows the report
 * once the command's work is done, and stays up as that report until Ctrl-C.
 */
import { type CliContext, UsageError, untilInterrupted } from "@smw/wiring/cli";
import type { Command } from "commander";
import { LiveServer } from "../live/live-server.js";

export interface LiveFlags {
  live?: boolean | string;
  liveFaults?: boolean;
  /** The command prints JSON: what the page says goes to stderr, so stdout stays JSON. */
  json?: boolean;
}

function sayFor(flags: LiveFlags, context: CliContext): (text: string) => void {
  return flags.json === true ? context.io.err : context.io.out;
}

/** Adds `--live [port]`, and `--live-faults` where the command's runs can take faults. */
export function liveOptions(command: Command, faults: boolean): Command {
  command.option(
    "--live [port]",
    "serve a live page of the run on 127.0.0.1 (default port: any free one); after the run it stays up as the report until Ctrl-C",
  );
  if (faults) command.option("--live-faults", "let the live page inject faults (with --live)");
  return command;
}

/** The live page's server, started and its address printed; undefined without --live. */
export async function openLive(
  flags: LiveFlags,
  context: CliContext,
): Promise<LiveServer | undefined> {
  if (flags.liveFaults === true && flags.live === undefined)
    throw new UsageError("--live-faults needs --live");
  if (flags.live === undefined) return undefined;
  const port = flags.live === true ? 0 : Number(flags.live);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new UsageError(`--live ${String(flags.live)}: expected a port from 0 to 65535`);
  const server = new LiveServer({ port, faults: flags.liveFaults === true });
  let address: string;
  try {
    address = await server.start();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new UsageError(
      `--live ${port}: ${code === "EADDRINUSE" ? "the port is in use" : (error as Error).message}`,
    );
  }
  sayFor(
    flags,
    context,
  )(`live view: ${address}${flags.liveFaults === true ? " (faults from the page allowed)" : ""}\n`);
  return server;
}

/** After the command's work: the page stays up as the report until Ctrl-C (or SIGTERM). */
export async function keepLiveUntilStopped(
  server: LiveServer | undefined,
  flags: LiveFlags,
  context: CliContext,
): Promise<void> {
  if (server === undefined) return;
  sayFor(flags, context)("live view: the page stays up as the report; Ctrl-C to close it\n");
  await untilInterrupted();
  await server.stop();
}

/**
 * Runs a command's work with the live page when asked for: served first, kept up as the report
 * after the work, closed at once if the work fails.
 */
export async function withLive(
  flags: LiveFlags,
  context: CliContext,
  work: (live: LiveServer | undefined) => Promise<void>,
): Promise<void> {
  const live = await openLive(flags, context);
  try {
    await work(live);
  } catch (error) {
    await live?.stop();
    throw error;
  }
  await keepLiveUntilStopped(live, flags, context);
}

/** A rig run's `live` option: followed on the page, taking its faults when they are allowed. */
export function liveRunOption(
  live: LiveServer | undefined,
  flags: LiveFlags,
): { live?: { server: LiveServer; faults: boolean } } {
  return live === undefined ? {} : { live: { server: live, faults: flags.liveFaults === true } };
}
