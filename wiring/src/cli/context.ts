/**
 * What every `smw` subcommand gets: where to write and how to report its exit
 * status. Subcommands never call process.exit, so tests run them in-process.
 */
import type { Command } from "commander";

export interface CliIo {
  out(text: string): void;
  err(text: string): void;
  /** Whether standard output is a terminal (progress bars, colour). */
  isTty: boolean;
  /** The program's own entry script, for a command that starts the program again (the host agent its replica). */
  selfPath?: string;
  /**
   * The replica process bin/smw.js started for `smw host run` before loading anything else, so
   * that its code loads while the agent's does; the agent adopts it for its first replica.
   */
  earlyReplica?: import("node:child_process").ChildProcess;
  /**
   * How the program's code was loaded, where that bears on start-up time: the host bundle with
   * V8's code cache used, or without it and why ("code cache absent" and the like).
   */
  loadedFrom?: string;
}

export interface CliContext {
  io: CliIo;
  /** The exit status the program ends with; the worst reported wins. */
  setExitCode(code: ExitCode): void;
}

/**
 * 0 success/feasible/clean, 1 a negative verdict, 2 bad input or unusable, 3 the service gave no
 * answer in time (`smw kv` operations: told apart from a cas that did not swap).
 */
export type ExitCode = 0 | 1 | 2 | 3;

/** Bad input from the user: printed as one message, exit status 2, no stack trace. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** A part's contribution to the `smw` program. */
export type CommandFactory = (context: CliContext) => Command;
