/**
 * The clocks of the boards, checked over the control link (P2). Heartbeats
 * carry the sender's clock and echo the last heartbeat heard from the peer,
 * as NTP does: from the four instants a board estimates the offset of each
 * peer's clock and the round trip. Only round trips within twice the
 * delivery bound count. A peer whose offset is beyond the bound even
 * allowing half the round trip is reported, and so is one whose offset moves
 * faster than two boards' promised drift allows. A peer with no round trip
 * that counts for too long is reported too (`unsampled`): delaying heartbeats
 * must not switch the check off, and an unknown clock is not a good one.
 */

export interface ClockSample {
  atMs: number;
  offsetMs: number;
  rttMs: number;
}

export type ClockVerdict =
  | {
      kind: "offset";
      peer: string;
      offsetMs: number;
      /**
       * Set when told by one heartbeat with no echo yet: how long after its stamp it arrived.
       * A clock behind ours and a delivery slower than its bound look alike then.
       */
      arrivedAfterMs?: number;
    }
  | { kind: "drift"; peer: string; ppm: number };

interface PeerClock {
  /** The peer's clock in its last heartbeat, and when it arrived here. */
  lastSentAtMs?: number;
  lastReceivedAtMs?: number;
  /** The sample with the smallest round trip so far: the drift baseline. */
  baseline?: ClockSample;
  latest?: ClockSample;
}

export class ClockMonitor {
  private readonly peers = new Map<string, PeerClock>();

  constructor(
    private readonly offsetBoundMs: number,
    private readonly driftMaxPpm: number,
    private readonly deliveryBoundMs: number,
    /**
     * P1's bound on processing (procMax): a heartbeat is stamped before its sender writes it and
     * handled after its receiver reads it, each up to this late. A first heartbeat, checked one
     * way, is allowed both (a loaded board is not a clock out of bounds); samples with an echo
     * measure what they took and need no allowance.
     */
    private readonly processingMs = 0,
  ) {}

  /** What to echo to `peer` in a heartbeat sent now. */
  echoFor(peer: string, nowMs: number): { echoMs: number; heldMs: number } | undefined {
    const p = this.peers.get(peer);
    if (p?.lastSentAtMs === undefined || p.lastReceivedAtMs === undefined) return undefined;
    return { echoMs: p.lastSentAtMs, heldMs: nowMs - p.lastReceivedAtMs };
  }

  /** A heartbeat from `peer` arrived at `nowMs`. */
  heard(
    peer: string,
    hb: { sentAtMs?: number; echoMs?: number; heldMs?: number },
    nowMs: number,
  ): ClockVerdict | undefined {
    const p = this.peers.get(peer) ?? {};
    this.peers.set(peer, p);
    if (hb.sentAtMs === undefined) return undefined;
    p.lastSentAtMs = hb.sentAtMs;
    p.lastReceivedAtMs = nowMs;
    if (hb.echoMs === undefined || hb.heldMs === undefined) {
      // No echo yet: the one-way bound only. Offset lies in [now − sent − in flight, now − sent],
      // in flight being at most the delivery bound and a processing delay at either end.
      const apparent = nowMs - hb.sentAtMs;
      const inFlightMs = this.deliveryBoundMs + 2 * this.processingMs;
      if (apparent - inFlightMs > this.offsetBoundMs)
        return {
          kind: "offset",
          peer,
          offsetMs: -(apparent - inFlightMs),
          arrivedAfterMs: apparent,
        };
      if (apparent < -this.offsetBoundMs) return { kind: "offset", peer, offsetMs: -apparent };
      return undefined;
    }
    const t1 = hb.echoMs;
    const t3 = hb.sentAtMs;
    const t2 = t3 - hb.heldMs;
    const t4 = nowMs;
    const rttMs = t4 - t1 - hb.heldMs;
    if (rttMs < 0 || rttMs > 2 * this.deliveryBoundMs) return undefined;
    const offsetMs = (t2 - t1 + (t3 - t4)) / 2;
    const sample = { atMs: nowMs, offsetMs, rttMs };
    p.latest = sample;
    if (Math.abs(offsetMs) - rttMs / 2 > this.offsetBoundMs)
      return { kind: "offset", peer, offsetMs };
    if (p.baseline === undefined || rttMs < p.baseline.rttMs / 2) {
      p.baseline = sample;
      return undefined;
    }
    const spanMs = nowMs - p.baseline.atMs;
    if (spanMs >= 10_000) {
      const movedMs = Math.abs(offsetMs - p.baseline.offsetMs) - (rttMs + p.baseline.rttMs) / 2;
      const allowedMs = 2 * this.driftMaxPpm * 1e-6 * spanMs;
      if (movedMs > allowedMs)
        return { kind: "drift", peer, ppm: ((offsetMs - p.baseline.offsetMs) / spanMs) * 1e6 };
    }
    return undefined;
  }

  /**
   * Peers (of `peers`) with no sample that counts since `sinceMs` and within the last `boundMs`,
   * with how long it has been.
   */
  unsampled(
    peers: readonly string[],
    sinceMs: number,
    boundMs: number,
    nowMs: number,
  ): Array<{ peer: string; forMs: number }> {
    const out: Array<{ peer: string; forMs: number }> = [];
    for (const peer of peers) {
      const lastMs = Math.max(sinceMs, this.peers.get(peer)?.latest?.atMs ?? sinceMs);
      if (nowMs - lastMs > boundMs) out.push({ peer, forMs: nowMs - lastMs });
    }
    return out;
  }

  latest(peer: string): ClockSample | undefined {
    return this.peers.get(peer)?.latest;
  }
}
