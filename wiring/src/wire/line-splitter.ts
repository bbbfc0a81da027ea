/**
 * Splits a byte stream into lines, never holding more than a bound: a line
 * that grows past it is dropped up to its newline and counted, so a peer that
 * never sends a newline cannot exhaust memory. (A plain ReadlineParser would
 * buffer without limit.)
 */
export class LineSplitter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private discarding = false;
  oversized = 0;

  constructor(
    private readonly maxLineBytes: number,
    private readonly onLine: (line: string) => void,
  ) {}

  push(chunk: Buffer): void {
    let start = 0;
    for (;;) {
      const newline = chunk.indexOf(10, start);
      if (newline < 0) {
        this.keep(chunk.subarray(start));
        return;
      }
      this.keep(chunk.subarray(start, newline));
      if (this.discarding) {
        this.discarding = false;
      } else {
        const line = Buffer.concat(this.pending).toString("utf8");
        this.onLine(line.endsWith("\r") ? line.slice(0, -1) : line);
      }
      this.pending = [];
      this.pendingBytes = 0;
      start = newline + 1;
    }
  }

  /** Bytes of the line not yet ended that are held (0 while discarding an oversized one). */
  get unfinishedBytes(): number {
    return this.pendingBytes;
  }

  /** Drops a partial line (a writer that went away mid-line); true if there was one. */
  reset(): boolean {
    const partial = this.pendingBytes > 0 || this.discarding;
    this.pending = [];
    this.pendingBytes = 0;
    this.discarding = false;
    return partial;
  }

  private keep(part: Buffer): void {
    if (this.discarding || part.length === 0) return;
    if (this.pendingBytes + part.length > this.maxLineBytes) {
      this.discarding = true;
      this.oversized++;
      this.pending = [];
      this.pendingBytes = 0;
      return;
    }
    this.pending.push(Buffer.from(part));
    this.pendingBytes += part.length;
  }
}
