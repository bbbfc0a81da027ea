/**
 * Deterministic simulation of the distributed wormhole: every board's core in
 * one process, simulated time, a control network that delays frames up to its
 * bound, steps of Algorithm 1 that take a random share of their budgets, and
 * timers that fire a little late, all from one seed. A board that joins (it starts without an
 * agreed schedule, restarts, or is cleared) runs its start-up check first (the last lease of its
 * previous run lapses, both images are checked), and a step of its rejuvenation waits for it on
 * the step's own budget, as in the daemon.
 * Faults can be injected:
 * failing steps, dead boards, cut links, lost frames, late timers, skewed
 * clocks, forged frames, boards restarted, and operators clearing fail-safe.
 * Boards either start on an agreed schedule or join one as the daemon does.
 * After every event the invariants are checked: never more than k hosts down,
 * groups in order. A run replays exactly from its seed.
 */
import type { ControlMessage, StepBudgets } from "@smw/wiring";
import { type BoardAction, BoardCore, type BoardCoreConfig } from "../coordinator/board-core.js";
import type { FailsafeState } from "../failsafe/failsafe-core.js";
import type { RecoveryStep } from "../recovery/recovery-core.js";
import { stepBudgetMs } from "../recovery/recovery-core.js";
import { Prng } from "./prng.js";

export type SimFault =
  /** A step of one board takes longer than its budget. */
  | { kind: "stepOverBudget"; board: string; period: number; step: RecoveryStep }
  /** A step of one board fails (e.g. a golden image that does not verify). */
  | { kind: "stepFails"; board: string; period: number; step: RecoveryStep; reason: string }
  /** A board's code is found corrupted by its check in a period (restore runs). */
  | { kind: "corrupted"; board: string; period: number; step: "checkOS" | "checkSM" }
  /** A board stops (crash): it neither sends nor receives from `atMs` on. */
  | { kind: "boardDies"; board: string; atMs: number }
  /** The link between two boards is cut from `atMs` on. */
  | { kind: "cutLink"; a: string; b: string; atMs: number }
  /** One timer of a board fires `lateMs` late, at or after `atMs`. */
  | { kind: "lateTimer"; board: string; atMs: number; lateMs: number }
  /** A board's clock runs `skewMs` ahead of the others from the start. */
  | { kind: "clockSkew"; board: string; skewMs: number }
  /** A board's clock runs fast by `ppm` parts per million. */
  | { kind: "clockDrift"; board: string; ppm: number }
  /** `count` forged frames claiming to come from `from` reach `to` at `atMs`. */
  | { kind: "forgedFrames"; from: string; to: string; atMs: number; count: number }
  /** From `fromMs` on, every control frame takes `extraMs` longer than it would. */
  | { kind: "slowFrames"; extraMs: number; fromMs: number }
  /** From `fromMs` on, each control frame is lost with probability `fraction`. */
  | { kind: "dropFrames"; fraction: number; fromMs: number }
  /**
   * A board's process stops at `atMs` and starts again `downMs` later: a new core, from its
   * latched fail-safe state if it had one, joining its peers otherwise.
   */
  | { kind: "boardRestarts"; board: string; atMs: number; downMs: number }
  /** The operator clears a board's fail-safe state at `atMs`. */
  | { kind: "operatorClears"; board: string; atMs: number };

export interface SimConfig {
  seed: number;
  boards: readonly string[];
  groups: readonly (readonly string[])[];
  k: number;
  budgets: StepBudgets;
  tPMs: number;
  tDMs: number;
  latenessBoundMs: number;
  heartbeatMs: number;
  silenceBoundMs: number;
  deliveryBoundMs: number;
  /** The boards' leases on their hosts' keys (the start-up check waits for the last one). */
  keyLeaseMs?: number;
  clockOffsetBoundMs?: number;
  driftMaxPpm?: number;
  authFailureLimit?: number;
  authFailureWindowMs?: number;
  /** What forged frames past the limit do (default: fail-safe). */
  onAuthFailures?: "alarm" | "fail-safe";
  /** Periods to run (the run stops when the last one completes or all boards are in fail-safe). */
  periods: number;
  faults?: readonly SimFault[];
  /** Boards that start in a fail-safe state read back from disk. */
  restoredFailsafe?: Readonly<Record<string, FailsafeState>>;
  /**
   * Boards start by joining (as the daemon does), each at its instant here (default: all at 0),
   * instead of on a schedule agreed beforehand.
   */
  join?: { startMs?: Readonly<Record<string, number>>; leadMs?: number; deadlineMs?: number };
  /** Simulated time to run at most (default: enough for the periods). */
  horizonMs?: number;
}

export interface SimTraceEntry {
  atMs: number;
  board: string;
  what: string;
}

export interface SimResult {
  seed: number;
  periodsCompleted: number;
  /** Per period: the boards in the order their recoveries started. */
  recoveryOrder: string[][];
  maxHostsDown: number;
  /** Per board, when it entered the fail-safe state and why. */
  failsafe: Record<string, FailsafeState & { atMs: number }>;
  /** Per board, the rejuvenation fail-safe cut short: each step run and how it ended. */
  interrupted: Record<string, { period: number; steps: Array<{ step: string; verdict: string }> }>;
  /** When the first fault that could trigger the fail-safe state took effect. */
  firstFaultMs: number | undefined;
  triggers: Record<string, Array<{ index: number; actualMs: number; latenessMs: number }>>;
  periods: Array<{ period: number; startMs: number; endMs: number }>;
  /** Per board, each time it joined a schedule: which, from which period, and when. */
  joins: Record<string, Array<{ schedule: number; firstIndex: number; atMs: number }>>;
  /** Per board, the alarms it raised (attacks that do not stop the testbed). */
  alarms: Record<string, Array<{ atMs: number; reason: string }>>;
  /** Per board, each time it entered the fail-safe state (a board may be cleared and fail again). */
  failsafeHistory: Record<string, Array<FailsafeState & { atMs: number }>>;
  invariantViolations: string[];
  trace: SimTraceEntry[];
  endMs: number;
}

type QueueItem =
  | { atMs: number; order: number; kind: "timer"; board: string; token: number; armedForMs: number }
  | {
      atMs: number;
      order: number;
      kind: "deliver";
      board: string;
      from: string;
      message: ControlMessage;
    }
  | {
      atMs: number;
      order: number;
      kind: "stepDone";
      board: string;
      period: number;
      step: RecoveryStep;
    }
  | { atMs: number; order: number; kind: "forged"; board: string; from: string }
  | { atMs: number; order: number; kind: "restart"; board: string }
  | { atMs: number; order: number; kind: "clear"; board: string };

type WithoutOrder<T> = T extends unknown ? Omit<T, "order"> : never;

export function runClusterSim(config: SimConfig): SimResult {
  const rng = new Prng(config.seed);
  const faults = config.faults ?? [];
  const queue = new EventQueue();
  let order = 0;
  const push = (item: WithoutOrder<QueueItem>) => {
    queue.push({ ...item, order: order++ } as QueueItem);
  };
  const firstTriggerMs = 1_000;
  const cores = new Map<string, BoardCore>();
  const timerToken = new Map<string, number>();
  const down = new Set<string>();
  const result: SimResult = {
    seed: config.seed,
    periodsCompleted: 0,
    recoveryOrder: [],
    maxHostsDown: 0,
    failsafe: {},
    interrupted: {},
    firstFaultMs: undefined,
    triggers: {},
    periods: [],
    joins: {},
    alarms: {},
    failsafeHistory: {},
    invariantViolations: [],
    trace: [],
    endMs: 0,
  };
  const startOf = (board: string) => (config.join ? (config.join.startMs?.[board] ?? 0) : 0);
  const dead = (board: string, atMs: number) =>
    atMs < startOf(board) ||
    faults.some(
      (f) =>
        (f.kind === "boardDies" && f.board === board && atMs >= f.atMs) ||
        (f.kind === "boardRestarts" &&
          f.board === board &&
          atMs >= f.atMs &&
          atMs < f.atMs + f.downMs),
    );
  const extraDelay = (atMs: number) =>
    faults.reduce(
      (sum, f) => sum + (f.kind === "slowFrames" && atMs >= f.fromMs ? f.extraMs : 0),
      0,
    );
  const dropFraction = (atMs: number) =>
    faults.reduce(
      (max, f) => (f.kind === "dropFrames" && atMs >= f.fromMs ? Math.max(max, f.fraction) : max),
      0,
    );
  // Frames lost at random draw from their own stream, so runs without loss replay as before.
  const lossRng = new Prng(config.seed ^ 0x5eed);
  const lost = (atMs: number) => {
    const fraction = dropFraction(atMs);
    return fraction > 0 && lossRng.next() < fraction;
  };
  // Per board, when its start-up check ends: the last lease of its previous run lapsed and both
  // images checked (a share of their budgets, from a stream of its own so that runs replay as
  // before). A step of its rejuvenation begins only then, on its own budget, as in the daemon.
  const startupRng = new Prng(config.seed ^ 0x57a7);
  const startupUntil = new Map<string, number>();
  // At a start, the lease's lapse and the checks overlap; after a clear the checks come after it.
  const startUp = (board: string, atMs: number, cleared = false) => {
    const checksMs = 2 * startupRng.between(0.05, 0.7) * config.budgets.tCheckcodeMs;
    const leaseMs = config.keyLeaseMs ?? 0;
    startupUntil.set(board, atMs + (cleared ? leaseMs + checksMs : Math.max(leaseMs, checksMs)));
  };
  const cut = (a: string, b: string, atMs: number) =>
    faults.some(
      (f) =>
        f.kind === "cutLink" &&
        ((f.a === a && f.b === b) || (f.a === b && f.b === a)) &&
        atMs >= f.atMs,
    );
  const noteFault = (atMs: number) => {
    if (result.firstFaultMs === undefined || atMs < result.firstFaultMs) result.firstFaultMs = atMs;
  };
  for (const f of faults)
    if (f.kind === "boardDies" || f.kind === "cutLink" || f.kind === "boardRestarts")
      noteFault(f.atMs);
    else if (f.kind === "slowFrames") noteFault(f.fromMs);
  for (const f of faults) if (f.kind === "clockSkew" || f.kind === "clockDrift") noteFault(0);
  // Each board sees its own clock: simulated time plus its skew and drift.
  const localOf = (board: string, atMs: number) => atMs + skewOf(board, atMs);
  const skewOf = (board: string, atMs: number) =>
    faults.reduce(
      (sum, f) =>
        sum +
        (f.kind === "clockSkew" && f.board === board ? f.skewMs : 0) +
        (f.kind === "clockDrift" && f.board === board ? atMs * f.ppm * 1e-6 : 0),
      0,
    );

  /** A board's core; `joining`: it starts by joining (the daemon always does; a restart too). */
  const newCore = (
    board: string,
    startMs: number,
    restored: FailsafeState | undefined,
    joining: boolean,
  ) => {
    const coreConfig: BoardCoreConfig = {
      self: board,
      boards: config.boards,
      groups: config.groups,
      budgets: config.budgets,
      tPMs: config.tPMs,
      tDMs: config.tDMs,
      latenessBoundMs: config.latenessBoundMs,
      heartbeatMs: config.heartbeatMs,
      silenceBoundMs: config.silenceBoundMs,
      deliveryBoundMs: config.deliveryBoundMs,
      ...(config.keyLeaseMs === undefined ? {} : { keyLeaseMs: config.keyLeaseMs }),
      clockOffsetBoundMs: config.clockOffsetBoundMs ?? 10,
      driftMaxPpm: config.driftMaxPpm ?? 100,
      authFailureLimit: config.authFailureLimit ?? 5,
      ...(config.authFailureWindowMs === undefined
        ? {}
        : { authFailureWindowMs: config.authFailureWindowMs }),
      ...(config.onAuthFailures === undefined ? {} : { onAuthFailures: config.onAuthFailures }),
      failsafePolicy: [{ kind: "hold-reset" }],
      ...(joining
        ? {
            ...(config.join?.leadMs === undefined ? {} : { joinLeadMs: config.join.leadMs }),
            ...(config.join?.deadlineMs === undefined
              ? {}
              : { joinDeadlineMs: config.join.deadlineMs }),
          }
        : { firstTriggerMs }),
      startMs,
      ...(restored === undefined ? {} : { restoredFailsafe: restored }),
    };
    return new BoardCore(coreConfig);
  };
  for (const board of config.boards) {
    cores.set(
      board,
      newCore(board, startOf(board), config.restoredFailsafe?.[board], config.join !== undefined),
    );
    result.triggers[board] = [];
    result.joins[board] = [];
    result.failsafeHistory[board] = [];
    result.alarms[board] = [];
  }

  // One pending timer per board; re-arming for the same instant keeps it, as a real timer would.
  const pending = new Map<string, { wakeMs: number; token: number }>();
  const arm = (board: string, nowMs: number) => {
    const core = cores.get(board) as BoardCore;
    const wake = core.nextWakeupMs();
    if (wake === undefined) return;
    if (pending.get(board)?.wakeMs === wake) return;
    const token = (timerToken.get(board) ?? 0) + 1;
    timerToken.set(board, token);
    pending.set(board, { wakeMs: wake, token });
    let lateMs = rng.between(0, config.latenessBoundMs * 0.9);
    const late = faults.find((f) => f.kind === "lateTimer" && f.board === board && wake >= f.atMs);
    if (late !== undefined && late.kind === "lateTimer") {
      lateMs = late.lateMs;
      noteFault(wake);
    }
    const skew = skewOf(board, nowMs);
    const armedForMs = Math.max(nowMs + skew, wake);
    push({
      atMs: armedForMs - skewOf(board, armedForMs) + lateMs,
      kind: "timer",
      board,
      token,
      armedForMs,
    });
  };

  const apply = (board: string, actions: BoardAction[], nowMs: number) => {
    for (const action of actions) {
      switch (action.kind) {
        case "send":
          if (!cut(board, action.to, nowMs) && !lost(nowMs)) {
            push({
              atMs: nowMs + rng.between(0, config.deliveryBoundMs) + extraDelay(nowMs),
              kind: "deliver",
              board: action.to,
              from: board,
              message: action.message,
            });
          }
          break;
        case "broadcast":
          for (const peer of config.boards) {
            if (peer === board || cut(board, peer, nowMs) || lost(nowMs)) continue;
            push({
              atMs: nowMs + rng.between(0, config.deliveryBoundMs) + extraDelay(nowMs),
              kind: "deliver",
              board: peer,
              from: board,
              message: action.message,
            });
          }
          break;
        case "runStep": {
          const budget = stepBudgetMs(action.step, config.budgets);
          const over = faults.some(
            (f) =>
              f.kind === "stepOverBudget" &&
              f.board === board &&
              f.period === action.period &&
              f.step === action.step,
          );
          const duration = over ? budget * 1.5 : rng.between(0.05, 0.7) * budget;
          if (over) noteFault(nowMs + budget);
          const beginsMs = Math.max(nowMs, startupUntil.get(board) ?? 0);
          if (action.step === "shutdown") {
            down.add(board);
            result.maxHostsDown = Math.max(result.maxHostsDown, down.size);
            if (down.size > config.k)
              result.invariantViolations.push(
                `${down.size} hosts down at ${nowMs.toFixed(1)} ms (k = ${config.k})`,
              );
            if (result.recoveryOrder[action.period] === undefined)
              result.recoveryOrder[action.period] = [];
            result.recoveryOrder[action.period]?.push(board);
          }
          push({
            atMs: beginsMs + duration,
            kind: "stepDone",
            board,
            period: action.period,
            step: action.step,
          });
          break;
        }
        case "recoveryDone":
          down.delete(board);
          break;
        case "recoveryInterrupted":
          result.interrupted[board] = {
            period: action.period,
            steps: action.records.map((r) => ({ step: r.step, verdict: r.verdict })),
          };
          break;
        case "enterFailsafe":
          result.failsafe[board] = { ...action.state, atMs: nowMs };
          result.failsafeHistory[board]?.push({ ...action.state, atMs: nowMs });
          break;
        case "joined":
          result.joins[board]?.push({
            schedule: action.schedule,
            firstIndex: action.firstIndex,
            atMs: nowMs,
          });
          break;
        case "periodComplete":
          if (board === config.boards[0]) {
            result.periods.push({
              period: action.period,
              startMs: action.startMs,
              endMs: action.endMs,
            });
            result.periodsCompleted = Math.max(result.periodsCompleted, action.period + 1);
          }
          break;
        case "trigger":
          result.triggers[board]?.push({
            index: action.record.index,
            actualMs: action.record.actualMs,
            latenessMs: action.record.latenessMs,
          });
          break;
        case "failsafeCleared":
          delete result.failsafe[board];
          startUp(board, nowMs, true);
          break;
        case "alarm":
          result.alarms[board]?.push({ atMs: nowMs, reason: action.reason });
          break;
      }
      // Heartbeats would drown the trace; everything else is kept.
      if (
        !((action.kind === "broadcast" || action.kind === "send") && action.message.type === "HB")
      ) {
        result.trace.push({ atMs: nowMs, board, what: describeAction(action) });
      }
    }
  };

  for (const board of config.boards) {
    const atMs = startOf(board);
    if (atMs === 0) {
      if (config.join !== undefined) startUp(board, 0);
      apply(board, (cores.get(board) as BoardCore).start(), 0);
      arm(board, 0);
    } else {
      // Not running before its start: the core made for it is replaced then.
      push({ atMs, kind: "restart", board });
    }
  }
  for (const f of faults) {
    if (f.kind === "boardRestarts")
      push({ atMs: f.atMs + f.downMs, kind: "restart", board: f.board });
    if (f.kind === "operatorClears") push({ atMs: f.atMs, kind: "clear", board: f.board });
  }
  const lastPlannedMs = Math.max(
    0,
    ...faults.map((f) =>
      f.kind === "boardRestarts" ? f.atMs + f.downMs : f.kind === "operatorClears" ? f.atMs : 0,
    ),
  );
  for (const f of faults) {
    if (f.kind === "forgedFrames") {
      noteFault(f.atMs);
      for (let i = 0; i < f.count; i++)
        push({ atMs: f.atMs + i, kind: "forged", board: f.to, from: f.from });
    }
  }

  const horizonMs =
    config.horizonMs ??
    firstTriggerMs +
      (config.periods + 1) * config.tPMs +
      (config.join ? Math.max(...config.boards.map(startOf)) + 10_000 : 0);
  for (let steps = 0; steps < 5_000_000 && queue.size > 0; steps++) {
    const item = queue.pop();
    if (item.atMs > horizonMs) break;
    result.endMs = item.atMs;
    if (dead(item.board, item.atMs)) continue;
    if (item.kind === "restart") {
      // A new process: what was latched on disk survives, nothing else does.
      const core = newCore(
        item.board,
        localOf(item.board, item.atMs),
        result.failsafe[item.board],
        true,
      );
      cores.set(item.board, core);
      pending.delete(item.board);
      timerToken.set(item.board, (timerToken.get(item.board) ?? 0) + 1);
      down.delete(item.board);
      startUp(item.board, item.atMs);
      result.trace.push({ atMs: item.atMs, board: item.board, what: "board (re)started" });
      apply(item.board, core.start(), item.atMs);
      arm(item.board, item.atMs);
      continue;
    }
    const core = cores.get(item.board) as BoardCore;
    const localMs = localOf(item.board, item.atMs);
    let actions: BoardAction[] = [];
    switch (item.kind) {
      case "timer":
        if (timerToken.get(item.board) !== item.token) continue;
        pending.delete(item.board);
        actions = core.handle({ kind: "time", nowMs: localMs, armedForMs: item.armedForMs });
        break;
      case "deliver":
        if (dead(item.from, item.atMs)) continue;
        actions = core.handle({
          kind: "message",
          from: item.from,
          message: item.message,
          nowMs: localMs,
        });
        break;
      case "stepDone": {
        const fails = faults.find(
          (f) =>
            f.kind === "stepFails" &&
            f.board === item.board &&
            f.period === item.period &&
            f.step === item.step,
        );
        const corrupted = faults.some(
          (f) =>
            f.kind === "corrupted" &&
            f.board === item.board &&
            f.period === item.period &&
            f.step === item.step,
        );
        if (fails !== undefined && fails.kind === "stepFails") noteFault(item.atMs);
        actions = core.handle({
          kind: "stepFinished",
          step: item.step,
          outcome:
            fails !== undefined && fails.kind === "stepFails"
              ? { ok: false, reason: fails.reason }
              : { ok: true, corrupted },
          nowMs: localMs,
        });
        break;
      }
      case "forged":
        actions = core.handle({ kind: "authFailure", from: item.from, nowMs: localMs });
        break;
      case "clear":
        actions = core.handle({ kind: "clearFailsafe", nowMs: localMs });
        break;
    }
    apply(item.board, actions, item.atMs);
    arm(item.board, item.atMs);
    const live = config.boards.filter((b) => !dead(b, item.atMs));
    if (item.atMs > lastPlannedMs && live.every((b) => result.failsafe[b] !== undefined)) break;
    if (result.periodsCompleted >= config.periods && Object.keys(result.failsafe).length === 0)
      break;
  }
  return result;
}

function describeAction(action: BoardAction): string {
  switch (action.kind) {
    case "broadcast":
      return `send ${action.message.type}${"period" in action.message ? ` ${action.message.period}` : ""}`;
    case "send":
      return `send ${action.message.type} to ${action.to}`;
    case "runStep":
      return `run ${action.step} (period ${action.period})`;
    case "enterFailsafe":
      return `FAILSAFE: ${action.state.reason} (from ${action.state.origin})`;
    case "failsafeCleared":
      return "fail-safe cleared";
    case "joined":
      return `joined schedule ${action.schedule} from period ${action.firstIndex}`;
    case "alarm":
      return `ALARM: ${action.reason}`;
    case "trigger":
      return `trigger ${action.record.index} (${action.record.latenessMs.toFixed(3)} ms late)`;
    case "recoveryDone":
      return `recovered (period ${action.period})`;
    case "recoveryInterrupted":
      return `rejuvenation cut short (period ${action.period}, ${action.records.length} steps run)`;
    case "periodComplete":
      return `period ${action.period} complete`;
    case "revokeKeys":
      return `revoke the keys of group ${action.group + 1} (period ${action.period})`;
  }
}

/** A binary min-heap on (time, insertion order): the simulation's event queue. */
class EventQueue {
  private readonly items: QueueItem[] = [];

  get size(): number {
    return this.items.length;
  }

  push(item: QueueItem): void {
    const items = this.items;
    items.push(item);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(items[i] as QueueItem, items[parent] as QueueItem)) break;
      [items[i], items[parent]] = [items[parent] as QueueItem, items[i] as QueueItem];
      i = parent;
    }
  }

  pop(): QueueItem {
    const items = this.items;
    const top = items[0] as QueueItem;
    const last = items.pop() as QueueItem;
    if (items.length > 0) {
      items[0] = last;
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        const right = left + 1;
        let smallest = i;
        if (left < items.length && before(items[left] as QueueItem, items[smallest] as QueueItem))
          smallest = left;
        if (right < items.length && before(items[right] as QueueItem, items[smallest] as QueueItem))
          smallest = right;
        if (smallest === i) break;
        [items[i], items[smallest]] = [items[smallest] as QueueItem, items[i] as QueueItem];
        i = smallest;
      }
    }
    return top;
  }
}

function before(a: QueueItem, b: QueueItem): boolean {
  return a.atMs < b.atMs || (a.atMs === b.atMs && a.order < b.order);
}
