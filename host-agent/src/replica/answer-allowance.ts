/**
 * How many state-transfer answers a replica gives one peer: a token bucket per asker. A FETCH of
 * a few bytes asks for an answer of up to `maxReplyBytes` (4 MiB on hosts) that costs the server
 * its encoding; unbounded, one Byzantine replica asking at network speed would make every correct
 * replica spend its CPU and its links on answers, and a recovering replica's transfer would miss
 * its deadline (the board then fails safe). A correct asker has one request out at a time
 * (`state-transfer.ts`), so it stays within the bucket; a refused request is retried after the
 * asker's retry interval, as a lost one is.
 */

export interface AnswerAllowanceOptions {
  /** Answers a peer may have at once, after a quiet spell. */
  burst: number;
  /** One more answer every this many ms. */
  refillMs: number;
}

export class AnswerAllowance {
  private readonly peers = new Map<string, { tokens: number; atMs: number }>();

  constructor(private readonly options: AnswerAllowanceOptions) {
    if (!(options.burst >= 1) || !(options.refillMs > 0))
      throw new RangeError(
        "an answer allowance needs a burst of at least 1 and a refill time above 0 ms",
      );
  }

  /** Takes one answer from `peer`'s allowance; false if it has none left now. */
  take(peer: string, nowMs: number): boolean {
    const { burst, refillMs } = this.options;
    const known = this.peers.get(peer) ?? { tokens: burst, atMs: nowMs };
    const tokens = Math.min(burst, known.tokens + Math.max(0, nowMs - known.atMs) / refillMs);
    if (tokens < 1) {
      this.peers.set(peer, { tokens, atMs: nowMs });
      return false;
    }
    this.peers.set(peer, { tokens: tokens - 1, atMs: nowMs });
    return true;
  }
}
