/**
 * One board's whole protocol as a core without I/O, in the manner of etcd's
 * raft library: events in (time, an authenticated control message, a step's
 * outcome, an operator command), actions out (send, run a step, enter the
 * fail-safe state, record, wake me at). It composes the timely execution
 * service, the group schedule, Algorithm 1, the peer monitor and the
 * fail-safe state. The same core runs in the daemon and in the deterministic
 * simulation.
 */
import type { ControlMessage, FailsafeAction, StepBudgets } from "@smw/wiring";
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
  authFailureLimit: number;
  failsafePolicy: readonly FailsafeAction[];
  /** Planned instant of the first period's trigger. */
  firstTriggerMs: number;
  startMs: number;
  /** A fail-safe state read back from disk: the board starts in it. */
  restoredFailsafe?: FailsafeState;
}

export type BoardEvent =
  /** A timer fired; `armedForMs` is the instant it was set for (its lateness is checked). */
  | { kind: "time"; nowMs: number; armedForMs?: number }
  | { kind: "message"; from: string; message: ControlMessage; nowMs: number }
  | { kind: "stepFinished"; step: RecoveryStep; outcome: StepOutcome; nowMs: number }
  | { kind: "authFailure"; from: string | undefined; nowMs: number }
  | { kind: "clearFailsafe"; nowMs: number };

export type BoardAction =
  | { kind: "broadcast"; message: ControlMessage }
  | { kind: "send"; to: string; message: ControlMessage }
  | { kind: "runStep"; period: number; step: RecoveryStep; deadlineMs: number }
  | { kind: "enterFailsafe"; state: FailsafeState; actions: readonly FailsafeAction[] }
  | { kind: "failsafeCleared" }
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

export class BoardCore {
  private readonly timely: TimelyCore;
  private readonly schedule: GroupSchedule;
  private readonly recovery: RecoveryCore;
  private readonly peers: PeerMonitor;
  private readonly failsafe: FailsafeCore;
  private readonly clocks: ClockMonitor | undefined;
  private readonly authFailures = new Map<string, number>();
  private lastPeriod = -1;
  private readonly periodStartMs = new Map<number, number>();

  constructor(private readonly config: BoardCoreConfig) {
    this.timely = new TimelyCore({
      tPMs: config.tPMs,
      tDMs: config.tDMs,
      latenessBoundMs: config.latenessBoundMs,
      firstTriggerMs: config.firstTriggerMs,
    });
    this.schedule = new GroupSchedule({
      self: config.self,
      groups: config.groups,
      tLocalexecMs: tLocalexecMs(config.budgets),
      handoffMs: config.deliveryBoundMs,
    });
    this.recovery = new RecoveryCore(config.budgets);
    this.peers = new PeerMonitor(
      config.boards.filter((b) => b !== config.self),
      config.heartbeatMs,
      config.silenceBoundMs,
      config.startMs,
    );
    this.failsafe = new FailsafeCore(config.self, config.failsafePolicy, config.restoredFailsafe);
    this.clocks =
      config.clockOffsetBoundMs === undefined
        ? undefined
        : new ClockMonitor(
            config.clockOffsetBoundMs,
            config.driftMaxPpm ?? 100,
            config.deliveryBoundMs,
          );
  }

  get failsafeState(): FailsafeState | undefined {
    return this.failsafe.state;
  }

  get scheduleState(): { period: number; group: number } | undefined {
    return this.schedule.state;
  }

  get triggers(): readonly TriggerRecord[] {
    return this.timely.history;
  }

  /** What to do right after starting: a restored fail-safe state is announced again. */
  start(): BoardAction[] {
    const state = this.failsafe.state;
    return state === undefined
      ? []
      : [
          {
            kind: "broadcast",
            message: { type: "FAILSAFE", reason: state.reason, origin: state.origin },
          },
        ];
  }

  /** The next instant this board must be told the time. */
  nextWakeupMs(): number | undefined {
    const candidates = [this.peers.nextWakeupMs()];
    if (this.failsafe.state === undefined) {
      candidates.push(
        ...[
          this.timely.nextWakeupMs(),
          this.schedule.nextWakeupMs(),
          this.recovery.nextWakeupMs(),
        ].filter((ms): ms is number => ms !== undefined),
      );
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
        this.peers.heard(event.from, event.nowMs);
        this.onMessage(event.from, event.message, event.nowMs, out);
        break;
      case "stepFinished":
        if (this.failsafe.state === undefined) {
          for (const r of this.recovery.finished(event.step, event.outcome, event.nowMs))
            this.onRecovery(r, event.nowMs, out);
        }
        break;
      case "authFailure": {
        if (event.from === undefined) break;
        const failures = (this.authFailures.get(event.from) ?? 0) + 1;
        this.authFailures.set(event.from, failures);
        if (failures === this.config.authFailureLimit) {
          this.enterFailsafe(
            `${failures} frames claiming to be from ${event.from} failed authentication`,
            event.nowMs,
            out,
          );
        }
        break;
      }
      case "clearFailsafe":
        for (const o of this.failsafe.clear())
          if (o.kind === "cleared") out.push({ kind: "failsafeCleared" });
        break;
    }
    return out;
  }

  private onTime(nowMs: number, out: BoardAction[]): void {
    for (const p of this.peers.tick(nowMs)) {
      if (p.kind === "heartbeat") {
        // One heartbeat per peer, each echoing that peer's clock for the offset estimate.
        for (const peer of this.config.boards) {
          if (peer === this.config.self) continue;
          out.push({
            kind: "send",
            to: peer,
            message: {
              type: "HB",
              period: this.lastPeriod,
              schedule: this.config.firstTriggerMs,
              joined: this.failsafe.state === undefined,
              sentAtMs: nowMs,
              ...(this.clocks?.echoFor(peer, nowMs) ?? {}),
            },
          });
        }
      } else
        this.enterFailsafe(
          `board ${p.peer} silent for ${p.silentMs.toFixed(0)} ms (bound ${this.config.silenceBoundMs} ms)`,
          nowMs,
          out,
        );
    }
    if (this.failsafe.state !== undefined) return;
    for (const r of this.recovery.tick(nowMs)) this.onRecovery(r, nowMs, out);
    for (const s of this.schedule.tick(nowMs)) this.onSchedule(s, nowMs, out);
    for (const t of this.timely.tick(nowMs)) {
      if (this.failsafe.state !== undefined) break;
      if (t.kind === "violation") {
        this.enterFailsafe(t.reason, nowMs, out);
        continue;
      }
      const record = this.timely.history[this.timely.history.length - 1] as TriggerRecord;
      out.push({ kind: "trigger", record });
      this.lastPeriod = t.index;
      this.periodStartMs.set(t.index, t.actualMs);
      for (const s of this.schedule.periodStarted(t.index, t.actualMs))
        this.onSchedule(s, nowMs, out);
    }
  }

  private onMessage(
    from: string,
    message: ControlMessage,
    nowMs: number,
    out: BoardAction[],
  ): void {
    switch (message.type) {
      case "HB":
        this.checkClock(from, message, nowMs, out);
        // Every board must run the same schedule; one that does not is a fault.
        if (
          message.joined &&
          message.schedule !== this.config.firstTriggerMs &&
          this.failsafe.state === undefined
        ) {
          this.enterFailsafe(
            `board ${from} runs a schedule starting at ${message.schedule}, not ${this.config.firstTriggerMs}`,
            nowMs,
            out,
          );
        }
        return;
      case "DONE":
        if (this.failsafe.state === undefined) {
          for (const s of this.schedule.boardDone(from, message.period, nowMs))
            this.onSchedule(s, nowMs, out);
        }
        return;
      case "FAILSAFE":
        for (const f of this.failsafe.heard(message.origin, message.reason, nowMs)) {
          if (f.kind === "enter") this.entered(f.state, f.actions, nowMs, out);
        }
        return;
    }
  }

  private onSchedule(
    output: ReturnType<GroupSchedule["tick"]>[number],
    nowMs: number,
    out: BoardAction[],
  ): void {
    if (this.failsafe.state !== undefined) return;
    switch (output.kind) {
      case "groupStarted":
        out.push({ kind: "revokeKeys", period: output.period, group: output.group });
        return;
      case "startRecovery":
        for (const r of this.recovery.start(output.period, output.plannedStartMs, nowMs))
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
        for (const t of this.timely.done(output.period, output.endMs)) {
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
        out.push({
          kind: "broadcast",
          message: {
            type: "DONE",
            period: output.period,
            steps: output.records.map((r) => ({
              step: r.step,
              startMs: r.startMs ?? -1,
              endMs: r.endMs ?? -1,
              budgetMs: r.budgetMs,
              verdict: r.verdict,
            })),
          },
        });
        for (const s of this.schedule.boardDone(this.config.self, output.period, nowMs))
          this.onSchedule(s, nowMs, out);
        return;
      }
      case "violation":
        this.enterFailsafe(output.reason, nowMs, out);
        return;
    }
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
        ? `the clock of board ${from} is ${Math.abs(verdict.offsetMs).toFixed(1)} ms ${verdict.offsetMs > 0 ? "ahead of" : "behind"} ours, over the bound of ${boundMs} ms`
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
    const partial = this.recovery.interrupt(nowMs);
    if (partial !== undefined) out.push({ kind: "recoveryInterrupted", ...partial });
  }

  private enterFailsafe(reason: string, nowMs: number, out: BoardAction[]): void {
    for (const f of this.failsafe.trigger(reason, nowMs)) {
      if (f.kind !== "enter") continue;
      this.entered(f.state, f.actions, nowMs, out);
      out.push({
        kind: "broadcast",
        message: { type: "FAILSAFE", reason: f.state.reason, origin: f.state.origin },
      });
    }
  }
}
