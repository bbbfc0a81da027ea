/**
 * The planner: methodology M_exhaustion-safe (paper 2.3.2) and the group
 * strategy of section 3.3 as code. A pure function from the figures of a
 * testbed to every condition with its numbers, a verdict, the tightest
 * condition, and, when infeasible, the smallest change that fixes each
 * failing condition.
 */
import { formatDurationMs as fmt } from "../duration.js";
import type { StepBudgets } from "../testbed/testbed.js";
import {
  describeExhaustionModel,
  type ExhaustionModel,
  largestKnownCount,
  tExhaustMs,
} from "./exhaustion-model.js";

export interface PlanInput {
  n: number;
  k: number;
  kPrime: number;
  /** Faults tolerated in all; default k + k'. */
  f?: number;
  /** The five step budgets, or T_localexec directly. Exactly one of the two. */
  budgets?: StepBudgets;
  tLocalexecMs?: number;
  /** Groups in the configured order; default ⌈n/k⌉. */
  groups?: number;
  /** Hand-off between groups over the control link (its delivery bound); default 0. */
  handoffMs?: number;
  /** P1: how late a board may act (processing delay and timer lateness); default 0. */
  procMaxMs?: number;
  /** How far two boards' clocks may differ; default 0. */
  clockOffsetBoundMs?: number;
  tPMs?: number;
  tDMs?: number;
  tExhaust: ExhaustionModel;
}

export type ConditionName =
  | "k' >= 1"
  | "k + k' <= f"
  | "n >= 3k' + 2k + 1"
  | "T_d >= T_exec"
  | "T_Xmax < T_d"
  | "T_d < T_p − 2·procMax"
  | "T_p + T_d < T_exhaust(k'+1)";

export interface Condition {
  name: ConditionName;
  holds: boolean;
  /** The condition with the numbers plugged in. */
  detail: string;
  /** Margin in the condition's own unit (negative or zero when it fails a strict bound). */
  slack: { amount: number; unit: "replicas" | "ms"; text: string };
  /** Slack relative to the bound, for finding the tightest condition. */
  relativeSlack: number;
  /** When it fails: the smallest change that makes it hold. */
  fix?: string;
}

export interface Plan {
  feasible: boolean;
  n: number;
  k: number;
  kPrime: number;
  f: number;
  fDefaulted: boolean;
  /** Least n for the configured k and k': 3k' + 2k + 1. */
  nMin: number;
  tLocalexecMs: number;
  /** How T_localexec was obtained, with the numbers. */
  tLocalexecDetail: string;
  groups: number;
  tExecMs: number;
  /** Worst-case execution time of F: T_exec plus, per group, its hand-off and slack. */
  tXmaxMs: number;
  handoffMs: number;
  /** Per group: what processing lateness may add (see `groupSlackMs`). */
  groupSlackMs: number;
  procMaxMs: number;
  tPMs: number;
  tDMs: number;
  /** Whether T_p and T_d were given, or chosen here from the feasible range. */
  tPGiven: boolean;
  tDGiven: boolean;
  tExhaustDescription: string;
  /** T_exhaust(k' + 1), when the model gives it. */
  tExhaustNextMs: number | undefined;
  conditions: Condition[];
  tightest: { name: ConditionName; slackText: string } | undefined;
  /** Bounds, exclusive, that T_d and T_p must stay within for this k' (undefined: unbounded). */
  range: { tDMinMs: number; tDMaxMs: number | undefined; tPMaxMs: number | undefined };
  /** Methodology step 3: the least k' (and n, f) that T_p + T_d and T_exhaust require. */
  step3:
    | { kPrimeMin: number; nMin: number; fMin: number }
    | { kPrimeMin: undefined; reason: string };
}

export class PlanInputError extends Error {
  override name = "PlanInputError";
}

export function tLocalexecFromBudgets(b: StepBudgets): number {
  return b.tShutdownMs + 2 * b.tCheckcodeMs + 2 * b.tRestorecodeMs + b.tBootMs + b.tTransferMs;
}

/**
 * What the group schedule allows beyond the budgets and hand-offs, and the planner counts in
 * T_Xmax: per group, one processing delay (P1: the group begins on a DONE or a trigger, handled
 * up to procMax late); once per period, the clock offset bound (each board reckons the deadlines
 * from its own trigger, on its own clock). Not in it: the processing between the steps inside a
 * group, which the budgets' margins over measured times absorb (each step is timed from its own
 * start).
 */
export function groupSlackMs(procMaxMs: number): number {
  return procMaxMs;
}

/**
 * Default join lead, from the testbed's own bounds: time for every board to hear a proposal and
 * commit before it (four silence bounds, at least 2 s), and for every host's first boot to be over
 * before period 0 begins. A board releases its host once it has heard every peer (a silence
 * bound), the last lease of its previous run has lapsed (a key lease) and both images checked
 * out (twice T_checkcode); the host then boots, counted twice (hosts sharing a machine, as on the
 * simulated testbed, boot together). Shorter, and the first rejuvenation's steps would wait
 * behind the start-up check on their own budgets: a testbed whose image checks take longer than
 * T_shutdown would fail safe at its first period. A restore at start-up is not counted: that host
 * joins late, as one more host down.
 */
export function defaultJoinLeadMs(c: {
  silenceBoundMs: number;
  keyLeaseMs?: number;
  budgets: StepBudgets;
}): number {
  const firstBootMs =
    c.silenceBoundMs + (c.keyLeaseMs ?? 0) + 2 * c.budgets.tCheckcodeMs + 2 * c.budgets.tBootMs;
  return Math.max(2_000, 4 * c.silenceBoundMs, firstBootMs);
}

export function minReplicas(k: number, kPrime: number): number {
  return 3 * kPrime + 2 * k + 1;
}

export function plan(input: PlanInput): Plan {
  validate(input);
  const { n, k, kPrime } = input;
  const f = input.f ?? k + kPrime;
  const nMin = minReplicas(k, kPrime);
  const groups = input.groups ?? Math.ceil(n / k);
  const handoffMs = input.handoffMs ?? 0;
  const procMaxMs = input.procMaxMs ?? 0;
  const slackMs = groupSlackMs(procMaxMs);
  const offsetMs = input.clockOffsetBoundMs ?? 0;

  let tLocalexecMs: number;
  let tLocalexecDetail: string;
  if (input.budgets !== undefined) {
    const b = input.budgets;
    tLocalexecMs = tLocalexecFromBudgets(b);
    tLocalexecDetail = `T_shutdown + 2·T_checkcode + 2·T_restorecode + T_boot + T_transfer = ${fmt(b.tShutdownMs)} + 2·${fmt(b.tCheckcodeMs)} + 2·${fmt(b.tRestorecodeMs)} + ${fmt(b.tBootMs)} + ${fmt(b.tTransferMs)} = ${fmt(tLocalexecMs)}`;
  } else {
    tLocalexecMs = input.tLocalexecMs as number;
    tLocalexecDetail = `${fmt(tLocalexecMs)} (given)`;
  }
  const tExecMs = groups * tLocalexecMs;
  const tXmaxMs = tExecMs + groups * (handoffMs + slackMs) + offsetMs;
  const tExhaustNextMs = tExhaustMs(input.tExhaust, kPrime + 1);

  const chosen = chooseTimes(input, tXmaxMs, tExhaustNextMs, procMaxMs);
  const { tPMs, tDMs } = chosen;

  const conditions: Condition[] = [];
  const count = (amount: number, unit: "replicas"): Condition["slack"] => ({
    amount,
    unit,
    text: `${amount} ${Math.abs(amount) === 1 ? "replica" : "replicas"}`,
  });
  const time = (amount: number): Condition["slack"] => ({ amount, unit: "ms", text: fmt(amount) });

  // Largest k' the replicas and f can afford with this k (paper 3.3).
  const kPrimeAffordable = Math.min(Math.floor((n - 2 * k - 1) / 3), f - k);

  conditions.push({
    name: "k' >= 1",
    holds: kPrime >= 1,
    detail: `k' = ${kPrime}: at least one intrusion must be tolerated between rejuvenations`,
    slack: count(kPrime - 1, "replicas"),
    relativeSlack: kPrime - 1,
    ...(kPrime >= 1 ? {} : { fix: `set k' to 1 (then n >= ${minReplicas(k, 1)}, f >= ${k + 1})` }),
  });

  conditions.push({
    name: "k + k' <= f",
    holds: k + kPrime <= f,
    detail: `${k} + ${kPrime} = ${k + kPrime} <= f = ${f}`,
    slack: count(f - k - kPrime, "replicas"),
    relativeSlack: (f - k - kPrime) / f,
    ...(k + kPrime <= f
      ? {}
      : {
          fix: `raise f to ${k + kPrime}, or lower k' to ${f - k}${f - k < 1 ? " (below 1: lower k instead)" : ""}`,
        }),
  });

  conditions.push({
    name: "n >= 3k' + 2k + 1",
    holds: n >= nMin,
    detail: `n = ${n} >= 3·${kPrime} + 2·${k} + 1 = ${nMin}`,
    slack: count(n - nMin, "replicas"),
    relativeSlack: (n - nMin) / nMin,
    ...(n >= nMin
      ? {}
      : {
          fix: `minimum n = ${nMin}: add ${nMin - n} ${nMin - n === 1 ? "replica" : "replicas"}${
            kPrimeAffordable >= 0 && kPrimeAffordable < kPrime
              ? `; with n = ${n} and k = ${k} the largest k' affordable is ${kPrimeAffordable}`
              : ""
          }`,
        }),
  });

  const tLocalexecNeededMs = (tDMs - groups * (handoffMs + slackMs) - offsetMs) / groups;
  const neededLocalexec =
    tLocalexecNeededMs > 0
      ? `, or T_localexec <= ${fmt(tLocalexecNeededMs)} (T_d / ${groups} groups${handoffMs + slackMs > 0 ? ", less hand-offs and slack" : ""})`
      : "";

  conditions.push({
    name: "T_d >= T_exec",
    holds: tDMs >= tExecMs,
    detail: `T_d = ${fmt(tDMs)} >= T_exec = ${groups} · ${fmt(tLocalexecMs)} = ${fmt(tExecMs)}`,
    slack: time(tDMs - tExecMs),
    relativeSlack: (tDMs - tExecMs) / tDMs,
    ...(tDMs >= tExecMs ? {} : { fix: `minimum T_d = ${fmt(tExecMs)}${neededLocalexec}` }),
  });

  conditions.push({
    name: "T_Xmax < T_d",
    holds: tXmaxMs < tDMs,
    detail: `T_Xmax = ${
      handoffMs + slackMs + offsetMs > 0
        ? `T_exec + ${groups} · (${fmt(handoffMs)} hand-off${slackMs > 0 ? ` + ${fmt(slackMs)} procMax` : ""})${offsetMs > 0 ? ` + ${fmt(offsetMs)} clock offset` : ""} = `
        : "T_exec = "
    }${fmt(tXmaxMs)} < T_d = ${fmt(tDMs)} (Def. 2.4: the PRW instantiation is feasible)`,
    slack: time(tDMs - tXmaxMs),
    relativeSlack: (tDMs - tXmaxMs) / tDMs,
    ...(tXmaxMs < tDMs ? {} : { fix: `T_d must exceed ${fmt(tXmaxMs)}${neededLocalexec}` }),
  });

  // Triggers are planned T_p − procMax apart: one late by procMax keeps t_i − t_{i−1} within
  // [T_p − 2·procMax, T_p], which must stay above T_d (Definition 2.4).
  const tPLowMs = tPMs - 2 * procMaxMs;
  conditions.push({
    name: "T_d < T_p − 2·procMax",
    holds: tDMs < tPLowMs,
    detail: `T_d = ${fmt(tDMs)} < T_p − 2·procMax = ${fmt(tPMs)} − 2·${fmt(procMaxMs)} = ${fmt(tPLowMs)}`,
    slack: time(tPLowMs - tDMs),
    relativeSlack: (tPLowMs - tDMs) / tPMs,
    ...(tDMs < tPLowMs
      ? {}
      : { fix: `T_p must exceed T_d + 2·procMax = ${fmt(tDMs + 2 * procMaxMs)}` }),
  });

  const sumMs = tPMs + tDMs;
  const exhaustHolds = tExhaustNextMs !== undefined && sumMs < tExhaustNextMs;
  const step3 = methodologyStep3(input.tExhaust, k, sumMs);
  conditions.push({
    name: "T_p + T_d < T_exhaust(k'+1)",
    holds: exhaustHolds,
    detail:
      tExhaustNextMs === undefined
        ? `T_exhaust(${kPrime + 1}) is not in the table (it stops at ${largestKnownCount(input.tExhaust)})`
        : `T_p + T_d = ${fmt(tPMs)} + ${fmt(tDMs)} = ${fmt(sumMs)} < T_exhaust(${kPrime + 1}) = ${fmt(tExhaustNextMs)}`,
    slack: time(tExhaustNextMs === undefined ? Number.NEGATIVE_INFINITY : tExhaustNextMs - sumMs),
    relativeSlack:
      tExhaustNextMs === undefined
        ? Number.NEGATIVE_INFINITY
        : (tExhaustNextMs - sumMs) / tExhaustNextMs,
    ...(exhaustHolds
      ? {}
      : { fix: exhaustionFix(input, tExhaustNextMs, tDMs, tXmaxMs, groups, handoffMs, step3) }),
  });

  const feasible = conditions.every((condition) => condition.holds);
  // k' >= 1 and k + k' <= f are policy, not resources; the tightest is among the rest.
  const candidates = conditions.filter((c) => c.name !== "k' >= 1" && c.name !== "k + k' <= f");
  const tightestCondition = candidates.reduce<Condition | undefined>(
    (best, c) => (best === undefined || c.relativeSlack < best.relativeSlack ? c : best),
    undefined,
  );

  return {
    feasible,
    n,
    k,
    kPrime,
    f,
    fDefaulted: input.f === undefined,
    nMin,
    tLocalexecMs,
    tLocalexecDetail,
    groups,
    tExecMs,
    tXmaxMs,
    handoffMs,
    groupSlackMs: slackMs,
    procMaxMs,
    tPMs,
    tDMs,
    tPGiven: input.tPMs !== undefined,
    tDGiven: input.tDMs !== undefined,
    tExhaustDescription: describeExhaustionModel(input.tExhaust),
    tExhaustNextMs,
    conditions,
    tightest:
      tightestCondition === undefined
        ? undefined
        : { name: tightestCondition.name, slackText: tightestCondition.slack.text },
    range: chosen.range,
    step3,
  };
}

function exhaustionFix(
  input: PlanInput,
  tExhaustNextMs: number | undefined,
  tDMs: number,
  tXmaxMs: number,
  groups: number,
  handoffMs: number,
  step3: Plan["step3"],
): string {
  const kPrimeOption =
    step3.kPrimeMin !== undefined && step3.kPrimeMin > input.kPrime
      ? `; or raise k' to ${step3.kPrimeMin} (n >= ${step3.nMin}, f >= ${step3.fMin})`
      : "";
  if (tExhaustNextMs === undefined) {
    return `extend the T_exhaust table to x = ${input.kPrime + 1}${kPrimeOption}`;
  }
  const tPMaxMs = tExhaustNextMs - tDMs;
  if (tPMaxMs > tDMs) {
    return `maximum T_p: below ${fmt(tPMaxMs)} (T_exhaust(${input.kPrime + 1}) − T_d)${kPrimeOption}`;
  }
  // Even the shortest period (just over T_d) is too long: T_d itself must shrink.
  const tDMaxMs = tExhaustNextMs / 2;
  const tLocalexecNeededMs = (tDMaxMs - groups * handoffMs) / groups;
  const localexec =
    tXmaxMs >= tDMaxMs
      ? tLocalexecNeededMs > 0
        ? `, which needs T_localexec below ${fmt(tLocalexecNeededMs)}`
        : ", which no T_localexec allows with these hand-offs"
      : "";
  return `T_d must be below ${fmt(tDMaxMs)} (half of T_exhaust(${input.kPrime + 1})) and T_p below T_exhaust(${input.kPrime + 1}) − T_d${localexec}${kPrimeOption}`;
}

/** Methodology step 3: least k' >= 1 with T_exhaust(k'+1) > T_p + T_d. */
export function methodologyStep3(model: ExhaustionModel, k: number, sumMs: number): Plan["step3"] {
  const result = (kPrimeMin: number) => ({
    kPrimeMin,
    nMin: minReplicas(k, kPrimeMin),
    fMin: k + kPrimeMin,
  });
  switch (model.kind) {
    case "sequential":
      // x·T > S  ⇔  x > S/T; the least such x is ⌊S/T⌋ + 1, and k' = x − 1.
      return result(Math.max(1, Math.floor(sumMs / model.perReplicaMs)));
    case "parallel":
      return model.allMs > sumMs
        ? result(1)
        : {
            kPrimeMin: undefined,
            reason: `under parallel attacks T_exhaust(x) = ${fmt(model.allMs)} for every x, so no number of replicas outlasts T_p + T_d = ${fmt(sumMs)}; shorten T_p + T_d below it`,
          };
    case "table": {
      const largest = largestKnownCount(model);
      for (let x = 2; x <= largest; x++) {
        const ms = tExhaustMs(model, x);
        if (ms !== undefined && ms > sumMs) return result(x - 1);
      }
      return {
        kPrimeMin: undefined,
        reason: `no entry of the T_exhaust table for x >= 2 (it stops at x = ${largest}) exceeds T_p + T_d = ${fmt(sumMs)}; extend the table or shorten T_p + T_d`,
      };
    }
  }
}

/**
 * T_p and T_d as given, or chosen: T_d a tenth above T_Xmax, T_p a tenth below
 * its largest safe value, both rounded to figures people write; the range they
 * must stay within is reported either way.
 */
function chooseTimes(
  input: PlanInput,
  tXmaxMs: number,
  tExhaustNextMs: number | undefined,
  procMaxMs: number,
): { tPMs: number; tDMs: number; range: Plan["range"] } {
  const tEx = tExhaustNextMs;
  // T_d < T_p − 2·procMax, and T_p + T_d < T_exhaust(k'+1).
  const lateMs = 2 * procMaxMs;
  let tDMaxMs: number | undefined;
  if (input.tPMs !== undefined) {
    tDMaxMs =
      tEx === undefined ? input.tPMs - lateMs : Math.min(input.tPMs - lateMs, tEx - input.tPMs);
  } else {
    tDMaxMs = tEx === undefined ? undefined : (tEx - lateMs) / 2;
  }
  let tDMs = input.tDMs;
  if (tDMs === undefined) {
    tDMs = niceCeil(tXmaxMs * 1.1);
    if (tDMaxMs !== undefined && tDMs >= tDMaxMs && tXmaxMs < tDMaxMs) {
      tDMs = between(tXmaxMs, tDMaxMs);
    }
  }
  const tPMaxMs = tEx === undefined ? undefined : tEx - tDMs;
  const tPMinMs = tDMs + lateMs;
  let tPMs = input.tPMs;
  if (tPMs === undefined) {
    if (tPMaxMs === undefined) {
      tPMs = niceCeil(tDMs * 2 + lateMs);
    } else {
      tPMs = niceFloor(tPMaxMs * 0.9);
      if (tPMs <= tPMinMs && tPMaxMs > tPMinMs) tPMs = between(tPMinMs, tPMaxMs);
      if (tPMs <= tPMinMs) tPMs = niceCeil(tPMinMs * 1.1);
    }
  }
  return { tPMs, tDMs, range: { tDMinMs: tXmaxMs, tDMaxMs, tPMaxMs } };
}

const NICE_STEPS_MS = [
  [86_400_000, 3_600_000],
  [3_600_000, 60_000],
  [60_000, 1_000],
  [1_000, 100],
  [0, 1],
] as const;

function niceStep(ms: number): number {
  for (const [from, step] of NICE_STEPS_MS) if (ms >= from) return step;
  return 1;
}

function niceCeil(ms: number): number {
  const step = niceStep(ms);
  return Math.ceil(ms / step) * step;
}

function niceFloor(ms: number): number {
  const step = niceStep(ms);
  return Math.floor(ms / step) * step;
}

/** A round figure strictly inside (low, high), or the midpoint when none is. */
function between(lowMs: number, highMs: number): number {
  const mid = (lowMs + highMs) / 2;
  const rounded = niceFloor(mid);
  return rounded > lowMs && rounded < highMs ? rounded : mid;
}

function validate(input: PlanInput): void {
  const integer = (name: string, value: number, min: number) => {
    if (!Number.isInteger(value) || value < min) {
      throw new PlanInputError(`${name} must be an integer >= ${min}, got ${value}`);
    }
  };
  integer("n", input.n, 1);
  integer("k", input.k, 1);
  integer("k'", input.kPrime, 0);
  if (input.f !== undefined) integer("f", input.f, 1);
  if (input.groups !== undefined) {
    integer("groups", input.groups, Math.ceil(input.n / input.k));
  }
  if ((input.budgets === undefined) === (input.tLocalexecMs === undefined)) {
    throw new PlanInputError(
      "give either the five step budgets or T_localexec, not both and not neither",
    );
  }
  const positive = (name: string, ms: number | undefined) => {
    if (ms !== undefined && !(Number.isFinite(ms) && ms > 0)) {
      throw new PlanInputError(`${name} must be a duration longer than zero`);
    }
  };
  positive("T_localexec", input.tLocalexecMs);
  positive("T_p", input.tPMs);
  positive("T_d", input.tDMs);
  if (input.budgets !== undefined) {
    for (const [name, ms] of Object.entries(input.budgets)) positive(name, ms);
  }
  if (input.handoffMs !== undefined && !(input.handoffMs >= 0)) {
    throw new PlanInputError("the hand-off allowance must be zero or more");
  }
}
