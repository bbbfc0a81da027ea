/**
 * Joining: how a board that is not running a schedule (it just started, restarted, or its
 * fail-safe state was cleared) comes to run the same one as its peers, as a core without I/O.
 *
 * Period i's trigger is planned at `schedule + i·P` (P = T_p − lateness bound, see the timely
 * core), so a schedule is one number, the instant of period 0. Boards that are all joining
 * propose one on a whole-second grid a lead ahead, take the latest proposal they hear, and commit
 * a silence bound before it once every peer has been heard proposing. A board that hears a peer
 * already running a schedule joins that one at its next trigger still to come.
 *
 * What is not a proposal: the heartbeat of a board in fail-safe (it runs nothing and proposes
 * nothing), and a schedule further ahead than a fresh proposal could be (a board restarted with a
 * latched fail-safe state once advertised one a year out, and everyone followed it). Joining has a
 * deadline: a board that has not joined by then fails safe, since its host is then exactly "not
 * timely rejuvenated".
 *
 * A peer already in fail-safe when this board began joining is waited for (an operator clearing
 * the boards one by one must not have the first ones fail again at once); a peer heard healthy
 * since, that then fails safe, has a fresh trigger, which this board follows (`isFreshFailsafe`).
 */

export interface JoinConfig {
  self: string;
  /** Every board id, this one included. */
  boards: readonly string[];
  /** How far ahead a fresh proposal lies (rounded up to the grid). */
  leadMs: number;
  /** Joining longer than this is a fail-safe trigger. */
  deadlineMs: number;
  /** A proposal is committed this long before its instant, and a peer heard within it counts. */
  silenceBoundMs: number;
  /** The planned spacing of triggers (T_p − lateness bound). */
  plannedPeriodMs: number;
  /** The control link's one-way delivery bound. */
  deliveryBoundMs: number;
  gridMs?: number;
  startMs: number;
}

/** What a peer's heartbeat says about its schedule. */
export interface PeerSchedule {
  schedule: number;
  joined: boolean;
  /** Set when the peer is in the fail-safe state. */
  failsafe?: { origin: string; reason: string };
}

export type JoinVerdict =
  /** Run `schedule`, beginning with period `firstIndex`. */
  { kind: "joined"; schedule: number; firstIndex: number } | { kind: "failed"; reason: string };

const DEFAULT_GRID_MS = 1_000;

export class JoinCore {
  private proposalMs: number;
  private readonly heard = new Map<string, PeerSchedule & { atMs: number }>();
  /** Peers heard out of fail-safe since joining began. */
  private readonly healthy = new Set<string>();
  private readonly gridMs: number;

  constructor(private readonly config: JoinConfig) {
    this.gridMs = config.gridMs ?? DEFAULT_GRID_MS;
    this.proposalMs = this.freshProposal(config.startMs);
  }

  /** The schedule this board proposes in its heartbeats. */
  get proposal(): number {
    return this.proposalMs;
  }

  get deadlineMs(): number {
    return this.config.startMs + this.config.deadlineMs;
  }

  heardFrom(peer: string, schedule: PeerSchedule, nowMs: number): void {
    if (peer === this.config.self || !this.config.boards.includes(peer)) return;
    this.heard.set(peer, { ...schedule, atMs: nowMs });
    if (schedule.failsafe === undefined) this.healthy.add(peer);
  }

  /** Whether every peer was heard lately, none of them in fail-safe. */
  allPeersHealthy(nowMs: number): boolean {
    return this.config.boards.every((b) => {
      if (b === this.config.self) return true;
      const p = this.heard.get(b);
      return (
        p !== undefined && p.failsafe === undefined && nowMs - p.atMs <= this.config.silenceBoundMs
      );
    });
  }

  /**
   * Whether every peer was heard lately, joining like this board: none in fail-safe, none running
   * a schedule. Every board holds its host in reset from its start (or clear) until then, so no
   * replica of the testbed has run since before its last reset: a cold start.
   */
  allPeersJoining(nowMs: number): boolean {
    return (
      this.allPeersHealthy(nowMs) &&
      this.config.boards.every((b) => b === this.config.self || this.heard.get(b)?.joined === false)
    );
  }

  /** Whether `peer`'s fail-safe state is newer than this join: it was heard out of it since. */
  isFreshFailsafe(peer: string): boolean {
    return this.healthy.has(peer);
  }

  nextWakeupMs(): number {
    return Math.min(this.deadlineMs, Math.max(this.config.startMs, this.commitMs()));
  }

  /** Time has reached `nowMs`: joined, failed, or still joining (undefined). */
  tick(nowMs: number): JoinVerdict | undefined {
    const peers = this.config.boards.filter((b) => b !== this.config.self);
    const recent = [...this.heard].filter(([, p]) => nowMs - p.atMs <= this.config.silenceBoundMs);
    const running = recent.filter(([, p]) => p.joined && p.failsafe === undefined);
    if (running.length > 0) {
      const schedules = new Set(running.map(([, p]) => p.schedule));
      if (schedules.size > 1) {
        return {
          kind: "failed",
          reason: `peers run different schedules (${running.map(([b, p]) => `${b}: ${p.schedule}`).join(", ")})`,
        };
      }
      const schedule = running[0]?.[1].schedule as number;
      // The next trigger still far enough ahead for this board's timer to make it.
      const firstIndex = Math.max(
        0,
        Math.ceil((nowMs + this.config.deliveryBoundMs - schedule) / this.config.plannedPeriodMs),
      );
      return { kind: "joined", schedule, firstIndex };
    }
    if (nowMs >= this.deadlineMs) {
      const inFailsafe = recent.filter(([, p]) => p.failsafe !== undefined).map(([b]) => b);
      const unheard = peers.filter((b) => !recent.some(([p]) => p === b));
      return {
        kind: "failed",
        reason: `joining did not complete within ${this.config.deadlineMs} ms${inFailsafe.length > 0 ? `: ${inFailsafe.join(", ")} in fail-safe` : ""}${unheard.length > 0 ? `${inFailsafe.length > 0 ? "," : ":"} nothing heard from ${unheard.join(", ")}` : ""}`,
      };
    }
    const proposing = recent.filter(([, p]) => !p.joined && p.failsafe === undefined);
    const furthestMs = this.freshProposal(nowMs) + this.config.silenceBoundMs;
    for (const [, p] of proposing)
      if (p.schedule <= furthestMs) this.proposalMs = Math.max(this.proposalMs, p.schedule);
    if (nowMs < this.commitMs()) return undefined;
    const everyone = peers.every((b) =>
      proposing.some(([p, s]) => p === b && s.schedule <= furthestMs),
    );
    if (everyone && this.proposalMs > nowMs)
      return { kind: "joined", schedule: this.proposalMs, firstIndex: 0 };
    // Not everyone is here (or a proposal went by): propose a later start.
    this.proposalMs = this.freshProposal(nowMs);
    return undefined;
  }

  private commitMs(): number {
    return this.proposalMs - this.config.silenceBoundMs;
  }

  private freshProposal(nowMs: number): number {
    return Math.ceil((nowMs + this.config.leadMs) / this.gridMs) * this.gridMs;
  }
}
