/**
 * A host's console text, kept for its operator: what the host printed on its serial line that
 * was not a host-link message (boot messages, a kernel panic). One line per entry, the board's
 * ISO time first. The host is untrusted, so everything but printable ASCII is escaped (`\x1b`,
 * `\u{202e}`, and `\\` for a backslash): its text cannot move an operator's terminal or hide
 * behind bidirectional marks. The file is bounded: before an entry would take it past
 * `maxBytes` it becomes `<path>.1`, `<path>.1` becomes `<path>.2`, and so on up to `keep` old
 * files. Writes run in the background, never with fsync (the event loop drives the board's
 * timers), and never throw: an entry that could not be written (a full disk, a folder gone) is
 * counted, as is one beyond `maxPendingBytes` waiting to be written.
 */

import { appendFile, rename, stat, unlink } from "node:fs/promises";
import path from "node:path";

export interface ConsoleLogOptions {
  /** The most a file holds; at least 1 KiB. */
  maxBytes?: number;
  /** How many rotated files are kept besides the current one. */
  keep?: number;
  /** The most bytes of entries waiting to be written; entries beyond it are dropped and counted. */
  maxPendingBytes?: number;
}

const MIN_MAX_BYTES = 1024;

/** Where a board keeps the console of the host it guards: in its state folder. */
export function consoleLogPath(stateDir: string): string {
  return path.join(stateDir, "console.log");
}

export class ConsoleLog {
  readonly maxBytes: number;
  readonly keep: number;
  readonly maxPendingBytes: number;
  readonly counters = {
    /** Entries appended to the file. */
    written: 0,
    /** Entries lost to a failed write or rotation. */
    failed: 0,
    /** Entries dropped because too many were waiting to be written. */
    dropped: 0,
    /** Entries cut to fit in one file. */
    truncated: 0,
    rotations: 0,
  };
  private readonly pending: string[] = [];
  private pendingBytes = 0;
  /** The current file's size as far as this log knows; undefined: read it before the next write. */
  private sizeBytes: number | undefined;
  private writing: Promise<void> | undefined;

  constructor(
    readonly path: string,
    options: ConsoleLogOptions = {},
  ) {
    this.maxBytes = options.maxBytes ?? 1024 * 1024;
    this.keep = options.keep ?? 3;
    this.maxPendingBytes = options.maxPendingBytes ?? 256 * 1024;
    if (path === "") throw new RangeError("a console log needs a file path");
    if (!Number.isSafeInteger(this.maxBytes) || this.maxBytes < MIN_MAX_BYTES)
      throw new RangeError(
        `the console log ${path}: maxBytes must be a whole number of at least ${MIN_MAX_BYTES} (got ${this.maxBytes})`,
      );
    if (!Number.isSafeInteger(this.keep) || this.keep < 0)
      throw new RangeError(
        `the console log ${path}: keep must be a whole number, 0 or more (got ${this.keep})`,
      );
    if (!Number.isSafeInteger(this.maxPendingBytes) || this.maxPendingBytes < 0)
      throw new RangeError(
        `the console log ${path}: maxPendingBytes must be a whole number, 0 or more (got ${this.maxPendingBytes})`,
      );
  }

  /** Appends `text` as one entry, in the background. */
  write(text: string): void {
    let entry = `${new Date().toISOString()} ${escapeConsoleText(text)}\n`;
    // Escaped text is ASCII: its length is its size in bytes, and it can be cut anywhere.
    if (entry.length > this.maxBytes) {
      entry = `${entry.slice(0, this.maxBytes - 1)}\n`;
      this.counters.truncated++;
    }
    if (this.pendingBytes + entry.length > this.maxPendingBytes) {
      this.counters.dropped++;
      return;
    }
    this.pending.push(entry);
    this.pendingBytes += entry.length;
    this.startWriting();
  }

  /** Waits until every entry written so far is in the file or counted as lost. */
  async flush(): Promise<void> {
    while (this.writing !== undefined) await this.writing;
  }

  private startWriting(): void {
    if (this.writing !== undefined) return;
    this.writing = this.drain().finally(() => {
      this.writing = undefined;
      // An entry that came after the last look at the queue, before this.
      if (this.pending.length > 0) this.startWriting();
    });
  }

  private async drain(): Promise<void> {
    while (this.pending.length > 0) {
      let taken = 0;
      try {
        this.sizeBytes ??= await this.sizeOnDisk();
        const first = this.pending[0] as string;
        if (this.sizeBytes > 0 && this.sizeBytes + first.length > this.maxBytes) {
          await this.rotate();
          this.sizeBytes = 0;
        }
        let batchBytes = 0;
        while (
          taken < this.pending.length &&
          this.sizeBytes + batchBytes + (this.pending[taken] as string).length <= this.maxBytes
        )
          batchBytes += (this.pending[taken++] as string).length;
        const batch = this.pending.splice(0, taken);
        this.pendingBytes -= batchBytes;
        await appendFile(this.path, batch.join(""), { mode: 0o600 });
        this.sizeBytes += batchBytes;
        this.counters.written += taken;
      } catch {
        // A failure before a batch was taken (reading the size, rotating) costs the first
        // entry, so that the next ones still get their try.
        if (taken === 0) {
          taken = 1;
          this.pendingBytes -= (this.pending.shift() as string).length;
        }
        this.counters.failed += taken;
        this.sizeBytes = undefined;
      }
    }
  }

  private async sizeOnDisk(): Promise<number> {
    try {
      return (await stat(this.path)).size;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return 0;
      throw error;
    }
  }

  /**
   * `<path>.n` -> `<path>.n+1` from the oldest kept, then `<path>` -> `<path>.1`; the oldest,
   * `<path>.keep`, is replaced.
   */
  private async rotate(): Promise<void> {
    // A file someone else removed needs no moving.
    if (this.keep === 0) await ifThere(unlink(this.path));
    else {
      for (let n = this.keep - 1; n >= 1; n--)
        await ifThere(rename(`${this.path}.${n}`, `${this.path}.${n + 1}`));
      await ifThere(rename(this.path, `${this.path}.1`));
    }
    this.counters.rotations++;
  }
}

async function ifThere(operation: Promise<void>): Promise<void> {
  try {
    await operation;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
}

/** `text` with all but printable ASCII escaped, backslashes doubled so escapes stay unambiguous. */
export function escapeConsoleText(text: string): string {
  let escaped = "";
  for (const char of text) {
    const code = char.codePointAt(0) as number;
    if (char === "\\") escaped += "\\\\";
    else if (code >= 0x20 && code <= 0x7e) escaped += char;
    else if (code <= 0xff) escaped += `\\x${code.toString(16).padStart(2, "0")}`;
    else escaped += `\\u{${code.toString(16)}}`;
  }
  return escaped;
}
