/**
 * How many bytes of unordered read answers a replica gives one client per second (SAFETY.md,
 * "Reads without ordering"). A READ costs its client nothing to send and the replica a read, an
 * encoding and a MAC or a signature over the answer: a faulty client sending scans of 1000 keys
 * as fast as replicas take them had every replica spend nearly all its time on its answers, and
 * the correct clients' throughput fell to a few operations a second (`npm run bench -- kv --only
 * flood`). A token bucket per client, in bytes: an answer is given while the client is not in
 * debt, and charged its size once made (a scan's size is known only then), so a client gets at
 * most the burst and the rate, plus one answer. A correct client has one operation out at a time
 * and reads far less than the rate; beyond it, its reads go unanswered and it orders them, as it
 * does when replicas are slow.
 */

/** Default rate: far above what a correct client reads one operation at a time. */
export const READ_BYTES_PER_SECOND = 4 * 1024 * 1024;
/** Default burst: a whole second's worth. */
export const READ_BURST_BYTES = 4 * 1024 * 1024;

export class ReadAllowance {
  private readonly clients = new Map<string, { tokens: number; atMs: number }>();

  constructor(
    private readonly bytesPerSecond = READ_BYTES_PER_SECOND,
    private readonly burstBytes = READ_BURST_BYTES,
  ) {
    if (!(bytesPerSecond > 0) || !(burstBytes > 0))
      throw new RangeError("a read allowance needs a rate and a burst above 0 bytes");
  }

  /** Whether `client` may be answered now (it is not in debt). */
  mayAnswer(client: string, nowMs: number): boolean {
    return this.refilled(client, nowMs).tokens > 0;
  }

  /** Charges `client` an answer of `bytes`. */
  charge(client: string, bytes: number, nowMs: number): void {
    const bucket = this.refilled(client, nowMs);
    bucket.tokens -= bytes;
  }

  /**
   * When `client`, in debt, may be answered again (the first whole millisecond its bucket holds
   * more than nothing); undefined if it is not in debt.
   */
  paidBackAtMs(client: string, nowMs: number): number | undefined {
    const { tokens } = this.refilled(client, nowMs);
    if (tokens > 0) return undefined;
    return Math.floor(nowMs + (-tokens * 1000) / this.bytesPerSecond) + 1;
  }

  private refilled(client: string, nowMs: number): { tokens: number; atMs: number } {
    let bucket = this.clients.get(client);
    if (bucket === undefined) {
      bucket = { tokens: this.burstBytes, atMs: nowMs };
      this.clients.set(client, bucket);
    }
    const elapsedMs = Math.max(0, nowMs - bucket.atMs);
    bucket.tokens = Math.min(
      this.burstBytes,
      bucket.tokens + (elapsedMs * this.bytesPerSecond) / 1000,
    );
    bucket.atMs = nowMs;
    return bucket;
  }
}
