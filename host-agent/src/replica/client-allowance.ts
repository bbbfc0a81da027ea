/**
 * What one client may cost a replica per second (SAFETY.md, "What clients cost"): a token bucket
 * in bytes per client, charged a fixed `MESSAGE_COST_BYTES` for every message the client sends
 * (the reading, parsing and MAC check each costs, whatever it says) and the size of every
 * unordered read answer once made (a scan's size is known only then). A client in debt has
 * whatever it sends dropped unread, and its connections left unread, until it is paid back.
 *
 * Why: a READ costs its client nothing and the replica a read, an encoding and a MAC or a
 * signature over the answer; a faulty client sending scans of 1000 keys as fast as replicas took
 * them had the correct clients' throughput fall to a few operations a second. And any message,
 * a replayed write or a READ of nothing, costs a replica tens of microseconds to read and refuse:
 * one client sending them at network speed took a fifth of the others' throughput
 * (`npm run bench -- kv --only flood`). A correct client has one operation out at a time and
 * costs far less than the rate; beyond it, what it sends is dropped until it is paid back, as
 * when the network loses it, and it retransmits.
 */

/** Default rate: far above what a correct client costs, one operation at a time. */
export const CLIENT_BYTES_PER_SECOND = 4 * 1024 * 1024;
/** Default burst: a whole second's worth. */
export const CLIENT_BURST_BYTES = 4 * 1024 * 1024;
/**
 * What each message a client sends is charged, whatever it holds: about what reading, parsing and
 * checking it costs, in answer bytes (a replica writes about 20 bytes of a scan's answer a
 * microsecond, and spends some 30 µs on a message). At the default rate, 4096 messages a second.
 */
export const MESSAGE_COST_BYTES = 1024;

export class ClientAllowance {
  private readonly clients = new Map<string, { tokens: number; atMs: number }>();

  constructor(
    private readonly bytesPerSecond = CLIENT_BYTES_PER_SECOND,
    private readonly burstBytes = CLIENT_BURST_BYTES,
  ) {
    if (!(bytesPerSecond > 0) || !(burstBytes > 0))
      throw new RangeError("a client allowance needs a rate and a burst above 0 bytes");
  }

  /** Whether `client` may be answered now (it is not in debt). */
  mayAnswer(client: string, nowMs: number): boolean {
    return this.refilled(client, nowMs).tokens > 0;
  }

  /** Charges `client` `bytes`: a message it sent, or an answer made for it. */
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
