/**
 * One process owns a board's lines. A lock file holds the owner's PID; a lock
 * left by a process that no longer runs is taken over.
 */
import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from "node:fs";
import path from "node:path";
import { LineError } from "./line.js";

export interface LineLock {
  readonly path: string;
  release(): void;
}

/** Where a board's line lock lives: one per testbed and board, in /run (gone at reboot). */
export function lineLockPath(testbedName: string, boardId: string): string {
  return `/run/smw/${testbedName}-${boardId}.lines.lock`;
}

export function acquireLineLock(lockPath: string): LineLock {
  mkdirSync(path.dirname(lockPath), { recursive: true });
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = openSync(lockPath, "wx", 0o644);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      let released = false;
      return {
        path: lockPath,
        release() {
          if (released) return;
          released = true;
          try {
            if (readFileSync(lockPath, "utf8").trim() === String(process.pid)) unlinkSync(lockPath);
          } catch {
            // Already gone: nothing to release.
          }
        },
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") {
        throw new LineError(`cannot create the line lock ${lockPath}: ${(error as Error).message}`);
      }
      const owner = Number(readFileSync(lockPath, "utf8").trim());
      if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && isAlive(owner)) {
        throw new LineError(
          `the lines are owned by process ${owner} (lock ${lockPath}); one process owns all lines`,
        );
      }
      // Stale: its owner is gone.
      unlinkSync(lockPath);
    }
  }
  throw new LineError(`cannot take the line lock ${lockPath}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
