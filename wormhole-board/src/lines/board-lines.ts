/**
 * All the lines of one board, owned by one process. Claiming applies each
 * line's starting level; every write is read back; and every exit path (normal
 * exit, SIGINT/SIGTERM, an uncaught error) drives every line to its safe level.
 */
import type { Board, Level, LineRole } from "@smw/wiring";
import {
  type ClaimedLine,
  type ClaimLevels,
  describeLineSpec,
  type LineBackend,
  LineError,
} from "./line.js";
import { acquireLineLock, type LineLock } from "./line-lock.js";

export interface BoardLinesOptions {
  /** Start at the declared initial levels (default) or at the safe levels. */
  levels?: ClaimLevels;
  /** Claim only these roles (default: every line of the board). */
  roles?: readonly LineRole[];
  /** Lock file that makes this process the lines' only owner. */
  lockPath?: string;
}

export class LineReadBackError extends LineError {
  override name = "LineReadBackError";
}

export class BoardLines {
  private readonly lines = new Map<LineRole, ClaimedLine>();
  private released = false;
  private uninstall: (() => void) | undefined;

  private constructor(
    readonly boardId: string,
    private readonly lock: LineLock | undefined,
  ) {}

  static claim(board: Board, backend: LineBackend, options: BoardLinesOptions = {}): BoardLines {
    const lock = options.lockPath === undefined ? undefined : acquireLineLock(options.lockPath);
    const owner = new BoardLines(board.id, lock);
    try {
      for (const spec of board.lines) {
        if (options.roles !== undefined && !options.roles.includes(spec.role)) continue;
        owner.lines.set(spec.role, backend.claim(spec, options.levels ?? "initial"));
      }
    } catch (error) {
      owner.releaseAll();
      throw error;
    }
    return owner;
  }

  has(role: LineRole): boolean {
    return this.lines.has(role);
  }

  roles(): LineRole[] {
    return [...this.lines.keys()];
  }

  /** Drives a line and reads it back; a line that does not follow is an error. */
  set(role: LineRole, level: Level): void {
    const line = this.line(role);
    line.set(level);
    const actual = line.get();
    if (actual !== level) {
      throw new LineReadBackError(
        `${describeLineSpec(line.spec)} was set ${level} but reads back ${actual}`,
      );
    }
  }

  get(role: LineRole): Level {
    return this.line(role).get();
  }

  /** Every line to its safe level; idempotent; never throws (it runs on the way out). */
  releaseAll(options: { unexport?: boolean } = {}): Error[] {
    const errors: Error[] = [];
    if (this.released) return errors;
    this.released = true;
    for (const line of this.lines.values()) {
      try {
        line.release(options);
      } catch (error) {
        errors.push(error as Error);
      }
    }
    this.lock?.release();
    this.uninstall?.();
    return errors;
  }

  /**
   * Drives every line safe on normal exit, SIGINT, SIGTERM and an uncaught
   * error. Signals then end the process as the signal would have (128 + n).
   * `beforeSignalExit` (the board daemon's stop) runs first on a signal, for up to `graceMs`;
   * a second signal, or an uncaught error meanwhile, drives the lines safe at once.
   */
  installSafeExit(
    onReleaseErrors: (errors: Error[]) => void = () => {},
    graceful: { beforeSignalExit: () => Promise<unknown>; graceMs: number } | undefined = undefined,
  ): void {
    if (this.uninstall !== undefined) return;
    const release = () => onReleaseErrors(this.releaseAll());
    let signalled = false;
    const onSignal = (signal: NodeJS.Signals) => {
      const exit = () => {
        release();
        process.exit(128 + (signal === "SIGINT" ? 2 : 15));
      };
      if (graceful === undefined || signalled) return exit();
      signalled = true;
      const grace = setTimeout(exit, graceful.graceMs);
      graceful.beforeSignalExit().then(
        () => {
          clearTimeout(grace);
          exit();
        },
        (error: unknown) => {
          clearTimeout(grace);
          process.stderr.write(`smw: stopping failed: ${(error as Error)?.message ?? error}\n`);
          exit();
        },
      );
    };
    const onFatal = (error: unknown) => {
      release();
      process.stderr.write(`smw: fatal: ${(error as Error)?.stack ?? String(error)}\n`);
      process.exit(70);
    };
    process.on("exit", release);
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    process.on("uncaughtException", onFatal);
    process.on("unhandledRejection", onFatal);
    this.uninstall = () => {
      process.off("exit", release);
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      process.off("uncaughtException", onFatal);
      process.off("unhandledRejection", onFatal);
    };
  }

  private line(role: LineRole): ClaimedLine {
    const line = this.lines.get(role);
    if (line === undefined)
      throw new LineError(`board ${this.boardId} has no ${role} line claimed`);
    if (this.released) throw new LineError(`board ${this.boardId}'s lines were released`);
    return line;
  }
}
