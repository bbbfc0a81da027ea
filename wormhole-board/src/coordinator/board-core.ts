/**
 * One board's whole protocol as a core without I/O, in the manner of etcd's
 * raft library: events in (time, an authenticated control message, a step's
 * outcome, an operator command), actions out (send, run a step, enter the
 * fail-safe state, record, wake me at). It composes joining, the timely
 * execution service, the group schedule, Algorithm 1, the peer monitor and
 * the fail-safe state. The same core runs in the daemon and in the
 * deterministic simulation, from start-up through restarts and clears.
 *
 * Phases: joining (agreeing on a schedule with the peers, `join-core.ts`),
 * running it, and fail-safe (latched until an operator clears it; then
 * joining again). Every heartbeat carries the sender's fail-safe state, so a
 * lost FAILSAFE frame cannot leave a running peer unaware.
 */
import {
  type ControlMessage,
  defaultJoinLeadMs,
  type FailsafeAction,
  groupSlackMs,
  type StepBudgets,
} from "@smw/wiring";
import { FailsafeCore, type FailsafeState } from "../failsafe/failsafe-core.js";
import { ClockMonitor } from "../link/clock-monitor.js";
import { PeerMonitor } from "../link/peer-monitor.js";
import {
  RecoveryCore,
  type RecoveryStep,
  type StepOutcome,
  type StepRecord,
} from "../recovery/recovery-core.js";
import { TimelyCore, type TriggerRecord } from "../timely/timely-core.js";
import { GroupSchedule } from "./group-schedule.js";
import { JoinCore } from "./join-core.js";

export interface BoardCoreConfig {
  self: string;
  /** Every board id, this one included. */
  boards: readonly string[];
  /** Board ids per group, in rejuvenation order. */
  groups: readonly (readonly string[])[];
  budgets: StepBudgets;
  tPMs: number;
  tDMs: number;
  /** P1: the promised bound on trigger lateness. */
  latenessBoundMs: number;
  heartbeatMs: number;
  silenceBoundMs: number;
  deliveryBoundMs: number;
  /** Largest clock offset tolerated between two boards. */
  clockOffsetBoundMs?: number;
  /** P2: the promised bound on a board clock's drift rate. */
  driftMaxPpm?: number;
  /** Frames failing authentication from one claimed peer within the window: an attack. */
  authFailureLimit: number;
  authFailureWindowMs?: number;
  /** What an attack does (default: fail-safe, the cautious reading in a simulation). */
  onAuthFailures?: "alarm" | "fail-safe";
  failsafePolicy: readonly FailsafeAction[];
  /**
   * Planned instant of period 0's trigger, when it is agreed already (tests, simulations of a
   * running testbed); otherwise the board starts by joining its peers.
   */
  firstTriggerMs?: number;
  /** How long a board's lease on its host's key lasts (the first boot waits for the last one). */
  keyLeaseMs?: number;
  /** Joining: how far ahead a fresh proposal lies (default `defaultJoinLeadMs`), and how long joining may last. */
  joinLeadMs?: number;
  joinDeadlineMs?: number;
  startMs: number;
  /** A fail-safe state read back from disk: the board starts in it. */
  restoredFailsafe?: FailsafeState;
  /** The last key epoch this board certified before it started (0: none). */
  lastKeyEpoch?: number;
}

export type BoardEvent =
  /** A timer fired; `armedForMs` is the instant it was set for (its lateness is checked). */
  | { kind: "time"; nowMs: number; armedForMs?: number }
  | { kind: "message"; from: string; message: ControlMessage; nowMs: number }
  | { kind: "stepFinished"; step: RecoveryStep; outcome: StepOutcome; nowMs: number }
  | { kind: "authFailure"; from: string | undefined; nowMs: number }
  | { kind: "clearFailsafe"; nowMs: number }
  /** Something the driver found that the board cannot run with (a start-up check that failed). */
  | { kind: "localFault"; reason: string; nowMs: number }
  /** The board certified its host's key under `epoch`. */
  | { kind: "keyCertified"; epoch: number; nowMs: number };

export type BoardAction =
  | { kind: "broadcast"; message: ControlMessage }
  | { kind: "send"; to: string; message: ControlMessage }
  | { kind: "runStep"; period: number; step: RecoveryStep; deadlineMs: number }
  | { kind: "enterFailsafe"; state: FailsafeState; actions: readonly FailsafeAction[] }
  | { kind: "failsafeCleared" }
  /** Something an operator must hear of that does not stop the testbed (an attack on the link). */
  | { kind: "alarm"; reason: string }
  /** Joining is over: the board runs `schedule` from period `firstIndex` on. */
  | { kind: "joined"; schedule: number; firstIndex: number }
  | { kind: "trigger"; record: TriggerRecord }
  | { kind: "recoveryDone"; period: number; records: StepRecord[] }
  /** Fail-safe cut this board's rejuvenation short: the steps it ran, the last one's verdict says how it ended. */
  | { kind: "recoveryInterrupted"; period: number; records: StepRecord[] }
  | { kind: "periodComplete"; period: number; startMs: number; endMs: number }
  /**
   * A group's rejuvenation began: the keys of its replicas are revoked (the wormhole knows the
   * schedule; the replicas do not). The daemon tells its host at once, or at its next boot.
   */
  | { kind: "revokeKeys"; period: number; group: number };

export function tLocalexecMs(b: StepBudgets): number {
  return b.tShutdownMs + 2 * b.tCheckcodeMs + 2 * b.tRestorecodeMs + b.tBootMs + b.tTransferMs;
}

export type BoardPhase = "joining" | "running" | "failsafe";

/** A schedule being run: the cores that exist only once the boards agree on one. */
interface Running {
  schedule: number;
  /** When this board began running it (its clock). */
  sinceMs: number;
  timely: TimelyCore;
  groups: GroupSchedule;
  recovery: RecoveryCore;
}

export class BoardCore {
  private running: Running | undefined;
  private join: JoinCore | undefined;
  private peers: PeerMonitor;
  private readonly failsafe: FailsafeCore;
  private readonly clocks: ClockMonitor | undefined;
  /** Per claimed sender: when its frames failed authentication, within the window. */
  private readonly authFailures = new Map<string, number[]>();
  /** Per peer: the frames refused as recordings by their stamp (`stamped`), for the reasons. */
  private readonly staleFrames = new Map<
    string,
    { count: number; lastAgeMs: number | undefined; boundMs: number }
  >();
  /** Per claimed sender: its last alarm, and the frames that failed since (not alarmed yet). */
  private readonly authAlarms = new Map<string, { atMs: number; failedSince: number }>();
  private lastPeriod = -1;
  private readonly periodStartMs = new Map<number, number>();
  private lastKeyEpoch: number;
  /** One more than the last key epoch certified before this board's last join began. */
  private joinKeyFloor = 1;
  /** Per peer board: the highest key floor it announced (floors only rise). */
  private readonly peerKeyFloors = new Map<string, number>();

  constructor(private readonly config: BoardCoreConfig) {
    this.lastKeyEpoch = config.lastKeyEpoch ?? 0;
    this.peers = this.newPeerMonitor(config.startMs);
    this.failsafe = new FailsafeCore(config.self, config.failsafePolicy, config.restoredFailsafe);
    if (this.failsafe.state === undefined) {
      if (config.firstTriggerMs !== undefined)
        this.startRunning(config.firstTriggerMs, 0, config.startMs);
      else this.join = this.newJoin(config.startMs);
    }
    this.clocks =
      config.clockOffsetBoundMs === undefined
        ? undefined
        : new ClockMonitor(
            config.clockOffsetBoundMs,
            config.driftMaxPpm ?? 100,
            config.deliveryBoundMs,
            config.latenessBoundMs,
          );
  }

  get failsafeState(): FailsafeState | undefined {
    return this.failsafe.state;
  }

  get phase(): BoardPhase {
    if (this.failsafe.state !== undefined) return "failsafe";
    return this.running === undefined ? "joining" : "running";
  }

  /** The instant of period 0 of the schedule being run, or proposed while joining. */
  get schedule(): number | undefined {
    return this.running?.schedule ?? this.join?.proposal;
  }

  get scheduleState(): { period: number; group: number } | undefined {
    return this.running?.groups.state;
  }

  get triggers(): readonly TriggerRecord[] {
    return this.running?.timely.history ?? [];
  }

  /**
   * Whether the host may run now: never in fail-safe; while joining, only once every peer has
   * been heard and none is in fail-safe (a board restarted into a testbed that failed safe keeps
   * its host held until the operator clears the others, or its join deadline).
   */
  mayReleaseHost(nowMs: number): boolean {
    if (this.failsafe.state !== undefined) return false;
    return this.running !== undefined || (this.join?.allPeersHealthy(nowMs) ?? false);
  }

  /**
   * Whether a host released now starts cold: this board and all its peers are joining (none runs
   * a schedule, none is in fail-safe), so every replica of the testbed lost its memory at its
   * last reset and none has voted since under a key another remembers (`JoinCore.allPeersJoining`).
   */
  isColdStart(nowMs: number): boolean {
    if (this.failsafe.state !== undefined || this.running !== undefined) return false;
    return this.join?.allPeersJoining(nowMs) ?? false;
  }

  /**
   * Every key this board certifies from its last join on has at least this epoch, every key it
   * certified before a lower one (the driver certifies none below it: `StepRunner.certifyNoneBelow`).
   */
  get keyFloor(): number {
    return this.joinKeyFloor;
  }

  /**
   * Per peer board, the key floor of its last join, as it announces in every heartbeat. A board
   * holds its host in reset from its join on, so every key it certified before belongs to a host
   * that has been reset since (for a cold start: the era before). Every certificate this board
   * issues goes with a revocation of each peer host's keys below its board's floor: a replica
   * (started cold, or restarted later) never takes such a key, whatever certificate reaches it.
   */
  keyFloors(): ReadonlyMap<string, number> {
    return this.peerKeyFloors;
  }

  /** The planned instant of period `index`'s trigger, once a schedule runs. */
  plannedTriggerMs(index: number): number | undefined {
    return this.running?.timely.plannedMs(index);
  }

  private newPeerMonitor(startMs: number): PeerMonitor {
    return new PeerMonitor(
      this.config.boards.filter((b) => b !== this.config.self),
      this.config.heartbeatMs,
      this.config.silenceBoundMs,
      startMs,
    );
  }

  private newJoin(startMs: number): JoinCore {
    const c = this.config;
    // Above the last epoch certified, and above this second: key epochs are the board's clock in
    // whole seconds, so a board whose record of its last epoch was lost still floors every key
    // it certified before (the driver certifies no key below the floor: `keyFloor`).
    this.joinKeyFloor = Math.max(this.lastKeyEpoch, Math.floor(startMs / 1000)) + 1;
    return new JoinCore({
      self: c.self,
      boards: c.boards,
      leadMs: c.joinLeadMs ?? defaultJoinLeadMs(c),
      deadlineMs: c.joinDeadlineMs ?? c.tPMs,
      silenceBoundMs: c.silenceBoundMs,
      plannedPeriodMs: c.tPMs - c.latenessBoundMs,
      deliveryBoundMs: c.deliveryBoundMs,
      startMs,
    });
  }

  private startRunning(schedule: number, firstIndex: number, nowMs: number): void {
    const c = this.config;
    this.join = undefined;
    this.running = {
      schedule,
      sinceMs: nowMs,
      timely: new TimelyCore({
        tPMs: c.tPMs,
        tDMs: c.tDMs,
        latenessBoundMs: c.latenessBoundMs,
        firstTriggerMs: schedule,
        firstIndex,
      }),
      groups: new GroupSchedule({
        self: c.self,
        groups: c.groups,
        tLocalexecMs: tLocalexecMs(c.budgets),
        handoffMs: c.deliveryBoundMs,
        slackMs: groupSlackMs(c.latenessBoundMs),
        offsetMs: c.clockOffsetBoundMs ?? 0,
      }),
      recovery: new RecoveryCore(c.budgets),
    };
  }

  /** What to do right after starting: a restored fail-safe state is announced again. */
  start(): BoardAction[] {
    const state = this.failsafe.state;
    return state === undefined
      ? []
      : [
          {
            kind: "broadcast",
            message: {
              type: "FAILSAFE",
              reason: state.reason,
              origin: state.origin,
              sentAtMs: this.config.startMs,
            },
          },
        ];
  }

  /** The next instant this board must be told the time. */
  nextWakeupMs(): number | undefined {
    const candidates = [this.peers.nextWakeupMs()];
    const run = this.running;
    if (this.failsafe.state === undefined && run !== undefined) {
      candidates.push(
        ...[
          run.timely.nextWakeupMs(),
          run.groups.nextWakeupMs(),
          run.recovery.nextWakeupMs(),
        ].filter((ms): ms is number => ms !== undefined),
      );
    } else if (this.failsafe.state === undefined && this.join !== undefined) {
      candidates.push(this.join.nextWakeupMs());
    }
    return Math.min(...candidates);
  }

  handle(event: BoardEvent): BoardAction[] {
    const out: BoardAction[] = [];
    switch (event.kind) {
      case "time":
        if (
          event.armedForMs !== undefined &&
          event.nowMs - event.armedForMs > this.config.latenessBoundMs
        ) {
          this.enterFailsafe(
            `a timer fired ${(event.nowMs - event.armedForMs).toFixed(3)} ms late, over the promised ${this.config.latenessBoundMs} ms`,
            event.nowMs,
            out,
          );
        }
        this.onTime(event.nowMs, out);
        break;
      case "message":
        if (this.stamped(event.from, event.message, event.nowMs) === "stale") break;
        this.peers.heard(event.from, event.nowMs);
        this.onMessage(event.from, event.message, event.nowMs, out);
        break;
      case "stepFinished":
        if (this.failsafe.state === undefined && this.running !== undefined) {
          for (const r of this.running.recovery.finished(event.step, event.outcome, event.nowMs))
            this.onRecovery(r, event.nowMs, out);
        }
        break;
      case "authFailure":
        if (event.from !== undefined) this.authFailure(event.from, event.nowMs, out);
        break;
      case "localFault":
        this.enterFailsafe(event.reason, event.nowMs, out);
        break;
      case "keyCertified":
        this.lastKeyEpoch = Math.max(this.lastKeyEpoch, event.epoch);
        break;
      case "clearFailsafe":
        for (const o of this.failsafe.clear()) {
          if (o.kind !== "cleared") continue;
          // Whatever ran before is over: agree on a schedule afresh (or join one running).
          this.running = undefined;
          this.lastPeriod = -1;
          this.periodStartMs.clear();
          this.join = this.newJoin(event.nowMs);
          this.peers = this.newPeerMonitor(event.nowMs);
          this.staleFrames.clear();
          out.push({ kind: "failsafeCleared" });
        }
        break;
    }
    return out;
  }

  private onTime(nowMs: number, out: BoardAction[]): void {
    for (const p of this.peers.tick(nowMs)) {
      if (p.kind === "heartbeat") {
        const state = this.failsafe.state;
        // One heartbeat per peer, each echoing that peer's clock for the offset estimate, and
        // each saying whether this board is in fail-safe and why (whatever became of FAILSAFE).
        for (const peer of this.config.boards) {
          if (peer === this.config.self) continue;
          out.push({
            kind: "send",
            to: peer,
            message: {
              type: "HB",
              period: this.lastPeriod,
              schedule: state === undefined ? (this.schedule ?? 0) : 0,
              joined: state === undefined && this.running !== undefined,
              sentAtMs: nowMs,
              keyFloor: this.joinKeyFloor,
              ...(this.clocks?.echoFor(peer, nowMs) ?? {}),
              ...(state === undefined
                ? {}
                : { failsafe: { origin: state.origin, reason: state.reason.slice(0, 240) } }),
            },
          });
        }
      } else if (this.running !== undefined)
        // While joining, peers may not be up yet: the join deadline bounds that wait.
        this.enterFailsafe(
          `board ${p.peer} silent for ${p.silentMs.toFixed(0)} ms (bound ${this.config.silenceBoundMs} ms)${this.staleNote([p.peer])}`,
          nowMs,
          out,
        );
    }
    if (this.failsafe.state !== undefined) return;
    if (this.join !== undefined) {
      const verdict = this.join.tick(nowMs);
      if (verdict?.kind === "failed")
        this.enterFailsafe(
          `${verdict.reason}${this.staleNote(this.config.boards.filter((b) => b !== this.config.self))}`,
          nowMs,
          out,
        );
      if (verdict?.kind !== "joined") return;
      this.startRunning(verdict.schedule, verdict.firstIndex, nowMs);
      // Silence is counted from now: peers were not all up while joining.
      this.peers = this.newPeerMonitor(nowMs);
      out.push({ kind: "joined", schedule: verdict.schedule, firstIndex: verdict.firstIndex });
    }
    const run = this.running;
    if (run === undefined) return;
    this.checkClockSamples(run, nowMs, out);
    if (this.failsafe.state !== undefined) return;
    for (const r of run.recovery.tick(nowMs)) this.onRecovery(r, nowMs, out);
    for (const s of run.groups.tick(nowMs)) this.onSchedule(s, nowMs, out);
    for (const t of run.timely.tick(nowMs)) {
      if (this.failsafe.state !== undefined) break;
      if (t.kind === "violation") {
        this.enterFailsafe(t.reason, nowMs, out);
        continue;
      }
      const record = run.timely.history[run.timely.history.length - 1] as TriggerRecord;
      out.push({ kind: "trigger", record });
      this.lastPeriod = t.index;
      this.periodStartMs.set(t.index, t.actualMs);
      for (const s of run.groups.periodStarted(t.index, t.actualMs)) this.onSchedule(s, nowMs, out);
    }
  }

  private onMessage(
    from: string,
    message: ControlMessage,
    nowMs: number,
    out: BoardAction[],
  ): void {
    switch (message.type) {
      case "HB": {
        // The highest heard: a heartbeat of a peer's earlier join, delayed, never lowers it.
        if (message.keyFloor !== undefined && this.config.boards.includes(from))
          this.peerKeyFloors.set(
            from,
            Math.max(message.keyFloor, this.peerKeyFloors.get(from) ?? 0),
          );
        const fresh = message.failsafe !== undefined && this.join?.isFreshFailsafe(from) === true;
        this.join?.heardFrom(
          from,
          {
            schedule: message.schedule,
            joined: message.joined,
            ...(message.failsafe === undefined ? {} : { failsafe: message.failsafe }),
          },
          nowMs,
        );
        if (fresh && message.failsafe !== undefined && this.failsafe.state === undefined) {
          this.heardFailsafe(message.failsafe.origin, message.failsafe.reason, nowMs, out);
          return;
        }
        const run = this.running;
        if (run === undefined || this.failsafe.state !== undefined) return;
        if (message.failsafe !== undefined) {
          this.heardFailsafe(message.failsafe.origin, message.failsafe.reason, nowMs, out);
          return;
        }
        this.checkClock(from, message, nowMs, out);
        // Every board must run the same schedule; one that does not is a fault.
        if (message.joined && message.schedule !== run.schedule) {
          this.enterFailsafe(
            `board ${from} runs a schedule starting at ${message.schedule}, not ${run.schedule}`,
            nowMs,
            out,
          );
        }
        return;
      }
      case "DONE":
        if (
          this.failsafe.state === undefined &&
          this.running !== undefined &&
          message.schedule === this.running.schedule
        ) {
          for (const s of this.running.groups.boardDone(from, message.period, nowMs))
            this.onSchedule(s, nowMs, out);
        }
        return;
      case "FAILSAFE":
        // A joining board follows only a fail-safe newer than its join (see join-core.ts); one
        // latched before, it waits out, up to its join deadline: else every clear undid itself.
        if (this.running !== undefined || this.join?.isFreshFailsafe(from) === true)
          this.heardFailsafe(message.origin, message.reason, nowMs, out);
        return;
    }
  }

  /**
   * Counted in a sliding window per claimed sender, so that line noise over a long run adds up
   * to nothing; past the limit, the testbed's policy: fail-safe, or an alarm, at most one per
   * window and claimed sender. Each alarm runs the operator's command and posts to the webhook:
   * one per few forged frames would let whoever reaches the control port flood them (and the
   * board's own event loop), so the frames failing in between are counted into the next one.
   */
  private authFailure(from: string, nowMs: number, out: BoardAction[]): void {
    const windowMs = this.config.authFailureWindowMs ?? 60_000;
    const alarmed = this.authAlarms.get(from);
    if (alarmed !== undefined && nowMs - alarmed.atMs < windowMs) {
      alarmed.failedSince++;
      return;
    }
    const times = (this.authFailures.get(from) ?? []).filter((t) => nowMs - t < windowMs);
    times.push(nowMs);
    // Kept bounded: only the last `limit` instants matter.
    if (times.length > this.config.authFailureLimit) times.shift();
    this.authFailures.set(from, times);
    if (times.length < this.config.authFailureLimit) return;
    const reason = `${times.length} frames claiming to be from ${from} failed authentication within ${windowMs} ms`;
    if ((this.config.onAuthFailures ?? "fail-safe") === "fail-safe") {
      this.enterFailsafe(reason, nowMs, out);
      return;
    }
    const since =
      alarmed === undefined || alarmed.failedSince === 0
        ? ""
        : `, after ${alarmed.failedSince} more in the ${((nowMs - alarmed.atMs) / 1000).toFixed(0)} s since the last alarm for it`;
    out.push({ kind: "alarm", reason: `${reason}${since}` });
    this.authAlarms.set(from, { atMs: nowMs, failedSince: 0 });
    this.authFailures.set(from, []);
  }

  /**
   * Whether a message is a recording, by the instant it says it was sent: such a message is
   * neither heard (it does not keep its sender from being silent) nor acted on.
   * - A fail-safe statement (FAILSAFE, or a heartbeat carrying one) sent longer ago than a
   *   silence bound, or not saying when: a genuine one arrives within the delivery bound, and
   *   the heartbeats repeat it.
   * - A heartbeat sent longer ago than a silence bound plus the clocks' offset bound, or not
   *   saying when: a live one arrives within the delivery bound, stamped by a clock within the
   *   offset bound of ours. The frame numbers do not tell: a board that restarted knows only
   *   its peers' boot epochs, not how far their frames had got, so frames recorded earlier in a
   *   peer's boot pass its replay window (one from before a fail-safe and its clearing named
   *   the old schedule, and the board failed safe on "peers run different schedules"; a peer's
   *   first heartbeat, without a clock echo, failed it on the peer's clock).
   * A peer whose clock is behind ours by more than that is refused the same way, and fails
   * safe as silent: its refused heartbeats are named in the reason (`staleNote`).
   * DONE carries no stamp: it names its schedule and period, which a replay cannot make current.
   */
  private stamped(from: string, message: ControlMessage, nowMs: number): "live" | "stale" {
    if (message.type === "DONE") return "live";
    const carriesFailsafe = message.type === "FAILSAFE" || message.failsafe !== undefined;
    const boundMs =
      this.config.silenceBoundMs + (carriesFailsafe ? 0 : (this.config.clockOffsetBoundMs ?? 0));
    const ageMs = message.sentAtMs === undefined ? undefined : nowMs - message.sentAtMs;
    if (ageMs !== undefined && ageMs <= boundMs) return "live";
    const stale = this.staleFrames.get(from) ?? { count: 0, lastAgeMs: undefined, boundMs };
    stale.count++;
    stale.lastAgeMs = ageMs;
    stale.boundMs = boundMs;
    this.staleFrames.set(from, stale);
    return "stale";
  }

  /** What the frames refused as stale say of `peers`, for a fail-safe reason ("" if none). */
  private staleNote(peers: readonly string[]): string {
    const notes = peers.flatMap((peer) => {
      const stale = this.staleFrames.get(peer);
      if (stale === undefined) return [];
      const age =
        stale.lastAgeMs === undefined
          ? "the last not saying when it was sent"
          : `the last stamped ${stale.lastAgeMs.toFixed(0)} ms before it arrived`;
      return [
        `${stale.count} frame${stale.count === 1 ? "" : "s"} of ${peer} refused as older than ${stale.boundMs} ms (${age}: its clock behind ours, or recordings replayed)`,
      ];
    });
    return notes.length === 0 ? "" : `; ${notes.join("; ")}`;
  }

  private heardFailsafe(origin: string, reason: string, nowMs: number, out: BoardAction[]): void {
    for (const f of this.failsafe.heard(origin, reason, nowMs)) {
      if (f.kind === "enter") this.entered(f.state, f.actions, nowMs, out);
    }
  }

  private onSchedule(
    output: ReturnType<GroupSchedule["tick"]>[number],
    nowMs: number,
    out: BoardAction[],
  ): void {
    const run = this.running;
    if (this.failsafe.state !== undefined || run === undefined) return;
    switch (output.kind) {
      case "groupStarted":
        out.push({ kind: "revokeKeys", period: output.period, group: output.group });
        return;
      case "startRecovery":
        for (const r of run.recovery.start(output.period, output.plannedStartMs, nowMs))
          this.onRecovery(r, nowMs, out);
        return;
      case "periodComplete": {
        out.push({
          kind: "periodComplete",
          period: output.period,
          startMs: this.periodStartMs.get(output.period) ?? nowMs,
          endMs: output.endMs,
        });
        this.periodStartMs.delete(output.period);
        for (const t of run.timely.done(output.period, output.endMs)) {
          if (t.kind === "violation") this.enterFailsafe(t.reason, nowMs, out);
        }
        return;
      }
      case "violation":
        this.enterFailsafe(output.reason, nowMs, out);
        return;
    }
  }

  private onRecovery(
    output: ReturnType<RecoveryCore["tick"]>[number],
    nowMs: number,
    out: BoardAction[],
  ): void {
    if (this.failsafe.state !== undefined) return;
    switch (output.kind) {
      case "run":
        out.push({
          kind: "runStep",
          period: this.lastPeriod,
          step: output.step,
          deadlineMs: output.deadlineMs,
        });
        return;
      case "done": {
        out.push({ kind: "recoveryDone", period: output.period, records: output.records });
        this.announceDone(output.period, nowMs, out);
        return;
      }
      case "violation":
        this.enterFailsafe(output.reason, nowMs, out);
        return;
    }
  }

  /** This board's rejuvenation in `period` is done: its peers hear it, and the schedule moves on. */
  private announceDone(period: number, nowMs: number, out: BoardAction[]): void {
    out.push({
      kind: "broadcast",
      message: { type: "DONE", period, schedule: this.running?.schedule ?? 0 },
    });
    for (const s of this.running?.groups.boardDone(this.config.self, period, nowMs) ?? [])
      this.onSchedule(s, nowMs, out);
  }

  /** How long a peer may go without a clock sample that counts: 8 silence bounds. */
  private get clockSampleBoundMs(): number {
    return 8 * this.config.silenceBoundMs;
  }

  private checkClockSamples(run: Running, nowMs: number, out: BoardAction[]): void {
    if (this.clocks === undefined) return;
    const peers = this.config.boards.filter((b) => b !== this.config.self);
    const [missing] = this.clocks.unsampled(peers, run.sinceMs, this.clockSampleBoundMs, nowMs);
    if (missing === undefined) return;
    this.enterFailsafe(
      `no clock sample from board ${missing.peer} for ${missing.forMs.toFixed(0)} ms (round trips over twice the delivery bound of ${this.config.deliveryBoundMs} ms do not count)`,
      nowMs,
      out,
    );
  }

  private checkClock(
    from: string,
    hb: ControlMessage & { type: "HB" },
    nowMs: number,
    out: BoardAction[],
  ): void {
    if (this.clocks === undefined || this.failsafe.state !== undefined) return;
    const verdict = this.clocks.heard(from, hb, nowMs);
    if (verdict === undefined) return;
    const boundMs = this.config.clockOffsetBoundMs as number;
    this.enterFailsafe(
      verdict.kind === "offset"
        ? `the clock of board ${from} is ${Math.abs(verdict.offsetMs).toFixed(1)} ms ${verdict.offsetMs > 0 ? "ahead of" : "behind"} ours, over the bound of ${boundMs} ms${
            verdict.arrivedAfterMs === undefined
              ? ""
              : `, or the control network broke its delivery bound of ${this.config.deliveryBoundMs} ms or a board its processing bound of ${this.config.latenessBoundMs} ms (a heartbeat arrived ${verdict.arrivedAfterMs.toFixed(1)} ms after its stamp)`
          }`
        : `the clock of board ${from} drifts ${verdict.ppm.toFixed(0)} ppm from ours, over twice the promised ${this.config.driftMaxPpm ?? 100} ppm`,
      nowMs,
      out,
    );
  }

  /** Fail-safe entered (here or told by a peer): a rejuvenation under way stops and is recorded. */
  private entered(
    state: FailsafeState,
    actions: readonly FailsafeAction[],
    nowMs: number,
    out: BoardAction[],
  ): void {
    out.push({ kind: "enterFailsafe", state, actions });
    // A board in fail-safe proposes no schedule (it runs none).
    this.join = undefined;
    const partial = this.running?.recovery.interrupt(nowMs);
    if (partial !== undefined) out.push({ kind: "recoveryInterrupted", ...partial });
  }

  private enterFailsafe(reason: string, nowMs: number, out: BoardAction[]): void {
    for (const f of this.failsafe.trigger(reason, nowMs)) {
      if (f.kind !== "enter") continue;
      this.entered(f.state, f.actions, nowMs, out);
      out.push({
        kind: "broadcast",
        message: {
          type: "FAILSAFE",
          reason: f.state.reason,
          origin: f.state.origin,
          sentAtMs: nowMs,
        },
      });
    }
  }
}
