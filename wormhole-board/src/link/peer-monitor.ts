/**
 * Liveness of the peer boards: every frame from a peer counts as a sign of
 * life, heartbeats make sure there is one at least every heartbeat period,
 * and a peer not heard from for the silence bound is reported, once.
 */

export type PeerMonitorOutput =
  | { kind: "heartbeat" }
  | { kind: "silent"; peer: string; silentMs: number };

export class PeerMonitor {
  private readonly lastHeardMs = new Map<string, number>();
  private nextHeartbeatMs: number;
  private reported = new Set<string>();

  constructor(
    peers: readonly string[],
    private readonly heartbeatMs: number,
    private readonly silenceBoundMs: number,
    startMs: number,
  ) {
    for (const peer of peers) this.lastHeardMs.set(peer, startMs);
    this.nextHeartbeatMs = startMs;
  }

  heard(peer: string, nowMs: number): void {
    if (this.lastHeardMs.has(peer)) this.lastHeardMs.set(peer, nowMs);
  }

  tick(nowMs: number): PeerMonitorOutput[] {
    const out: PeerMonitorOutput[] = [];
    if (nowMs >= this.nextHeartbeatMs) {
      out.push({ kind: "heartbeat" });
      // Re-armed against the absolute schedule, so heartbeats do not drift.
      while (this.nextHeartbeatMs <= nowMs) this.nextHeartbeatMs += this.heartbeatMs;
    }
    for (const [peer, lastMs] of this.lastHeardMs) {
      if (nowMs - lastMs > this.silenceBoundMs && !this.reported.has(peer)) {
        this.reported.add(peer);
        out.push({ kind: "silent", peer, silentMs: nowMs - lastMs });
      }
    }
    return out;
  }

  nextWakeupMs(): number {
    let next = this.nextHeartbeatMs;
    for (const [peer, lastMs] of this.lastHeardMs) {
      if (!this.reported.has(peer)) next = Math.min(next, lastMs + this.silenceBoundMs + 1);
    }
    return next;
  }

  lastHeard(peer: string): number | undefined {
    return this.lastHeardMs.get(peer);
  }
}
