/**
 * Sending large messages again, spaced out. A PRE_PREPARE sent again to a peer whose STATUS shows
 * it behind, a HOLDERS sent again to the primary every half view-change timeout, a client's
 * request sent again every retransmission interval, and an EXECUTED report to a peer whose
 * STATUS shows it behind, each carry the request whole. (HOLDs did too, until they named it by
 * its digest.) With writes of 1 MiB on a starved
 * CPU, these came faster than the receivers could read them: each link filled with megabytes of
 * copies ahead of the small PREPAREs and COMMITs behind them, nothing committed, and view change
 * followed view change (four replicas beside six busy loops: no write executed in 25 s, 100 MB
 * of copies sent). So a message of `LARGE_MESSAGE_BYTES` or more goes again only after twice the
 * wait of the time before, up to `MAX_DOUBLINGS`; smaller ones keep their fixed interval, as
 * before (a lost vote costs little to send again and is what recovery from loss waits on).
 */

/** From this size on, a message sent again waits twice as long each time. */
export const LARGE_MESSAGE_BYTES = 64 * 1024;

/** The wait doubles at most this many times (64 times the base wait). */
export const MAX_DOUBLINGS = 6;

/**
 * A client's request doubles its wait at most this many times (8 times its retransmission
 * interval: 4 s at 500 ms), so that it still goes again several times within a caller's timeout
 * (the CLI waits 10 s): a client that needs one more copy to be answered must not give up first.
 */
export const CLIENT_MAX_DOUBLINGS = 3;

/**
 * The wait before sending a message of `sizeBytes` again, after it was sent again `times` times
 * (doubling at most `maxDoublings` times).
 */
export function resendWaitMs(
  baseMs: number,
  sizeBytes: number,
  times: number,
  maxDoublings = MAX_DOUBLINGS,
): number {
  if (sizeBytes < LARGE_MESSAGE_BYTES) return baseMs;
  return baseMs * 2 ** Math.min(Math.max(0, times), maxDoublings);
}

/** Per receiver: when a large message was last sent again, and how many times. */
export class LargeResends {
  private readonly sent = new Map<string, { atMs: number; times: number }>();

  /** Whether a message of `sizeBytes` may go to `to` again now (then counted as gone). Small ones always may. */
  take(to: string, sizeBytes: number, baseMs: number, nowMs: number): boolean {
    if (sizeBytes < LARGE_MESSAGE_BYTES) return true;
    const last = this.sent.get(to);
    if (last !== undefined && nowMs - last.atMs < resendWaitMs(baseMs, sizeBytes, last.times))
      return false;
    this.sent.set(to, { atMs: nowMs, times: (last?.times ?? -1) + 1 });
    return true;
  }
}
