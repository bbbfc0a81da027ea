/** The planner's findings, for people (text) and for scripts (JSON). */
import { formatDurationMs as fmt } from "../duration.js";
import type { Testbed } from "../testbed/testbed.js";
import type { Plan, PlanInput } from "./planner.js";

/** The planner's inputs as a testbed states them. */
export function planInputFromTestbed(testbed: Testbed): PlanInput {
  const r = testbed.rejuvenation;
  return {
    n: testbed.hosts.length,
    k: r.k,
    kPrime: r.kPrime,
    f: r.f,
    budgets: r.budgets,
    groups: r.groups.length,
    // Group g+1 starts when group g's "done" arrives over the control link.
    handoffMs: testbed.controlNetwork.deliveryBoundMs,
    procMaxMs: testbed.timeliness.procMaxMs,
    clockOffsetBoundMs: testbed.timeliness.clockOffsetBoundMs,
    ...(r.tPMs === undefined ? {} : { tPMs: r.tPMs }),
    ...(r.tDMs === undefined ? {} : { tDMs: r.tDMs }),
    tExhaust: testbed.tExhaust,
  };
}

export function renderPlanText(plan: Plan, title: string): string {
  const out: string[] = [];
  out.push(title, "");
  out.push(
    `  n = ${plan.n}, k = ${plan.k}, k' = ${plan.kPrime}, f = ${plan.f}${plan.fDefaulted ? " (k + k')" : ""}`,
  );
  out.push(`  T_localexec = ${plan.tLocalexecDetail}`);
  const evenGroups = Math.ceil(plan.n / plan.k);
  out.push(
    `  groups      = ${plan.groups}${plan.groups === evenGroups ? ` (⌈n/k⌉ = ⌈${plan.n}/${plan.k}⌉)` : ` (configured order; ⌈n/k⌉ would be ${evenGroups})`}`,
  );
  out.push(`  T_exec      = ${plan.groups} · ${fmt(plan.tLocalexecMs)} = ${fmt(plan.tExecMs)}`);
  if (plan.tXmaxMs > plan.tExecMs) {
    const perGroup = [
      ...(plan.handoffMs > 0 ? [`${fmt(plan.handoffMs)} control-link hand-off`] : []),
      ...(plan.groupSlackMs > 0 ? [`${fmt(plan.groupSlackMs)} procMax`] : []),
    ].join(" + ");
    const offsetMs =
      plan.tXmaxMs - plan.tExecMs - plan.groups * (plan.handoffMs + plan.groupSlackMs);
    out.push(
      `  T_Xmax      = T_exec${perGroup === "" ? "" : ` + ${plan.groups} · (${perGroup})`}${offsetMs > 0 ? ` + ${fmt(offsetMs)} clock offset` : ""} = ${fmt(plan.tXmaxMs)}`,
    );
  }
  out.push(`  T_exhaust   = ${plan.tExhaustDescription}`);
  out.push(
    `  T_p = ${fmt(plan.tPMs)}${plan.tPGiven ? "" : " (chosen)"}, T_d = ${fmt(plan.tDMs)}${plan.tDGiven ? "" : " (chosen)"}`,
  );
  out.push("", "  conditions");
  const width = Math.max(...plan.conditions.map((c) => c.name.length));
  for (const c of plan.conditions) {
    out.push(`    ${c.holds ? "holds" : "FAILS"}  ${c.name.padEnd(width)}  ${c.detail}`);
    if (!c.holds && c.fix !== undefined) out.push(`           ${" ".repeat(width)}  fix: ${c.fix}`);
  }
  out.push("");
  out.push(
    plan.feasible
      ? "  verdict: FEASIBLE - the schedule is replica-exhaustion-safe"
      : `  verdict: INFEASIBLE - ${plan.conditions.filter((c) => !c.holds).length} condition(s) fail`,
  );
  if (plan.tightest !== undefined) {
    out.push(`  tightest: ${plan.tightest.name}, slack ${plan.tightest.slackText}`);
  }
  const { tDMinMs, tDMaxMs, tPMaxMs } = plan.range;
  const tDRange = `T_d in (${fmt(tDMinMs)}, ${tDMaxMs === undefined ? "∞" : fmt(tDMaxMs)})`;
  const tPRange = `T_p in (T_d, ${tPMaxMs === undefined ? "∞" : `${fmt(tPMaxMs)} for T_d = ${fmt(plan.tDMs)}`})`;
  const empty = tDMaxMs !== undefined && tDMaxMs <= tDMinMs;
  out.push(
    `  feasible range for k' = ${plan.kPrime}: ${empty ? "none (T_d's bounds cross)" : `${tDRange}, ${tPRange}`}`,
  );
  out.push(
    plan.step3.kPrimeMin === undefined
      ? `  methodology step 3: ${plan.step3.reason}`
      : `  methodology step 3: T_p + T_d = ${fmt(plan.tPMs + plan.tDMs)} needs k' >= ${plan.step3.kPrimeMin} (n >= ${plan.step3.nMin}, f >= ${plan.step3.fMin})`,
  );
  return `${out.join("\n")}\n`;
}

/** Stable JSON for scripts; infinities become null. */
export function planToJson(plan: Plan): unknown {
  const finite = (value: number | undefined) =>
    value === undefined || !Number.isFinite(value) ? null : value;
  return {
    feasible: plan.feasible,
    n: plan.n,
    k: plan.k,
    kPrime: plan.kPrime,
    f: plan.f,
    nMin: plan.nMin,
    tLocalexecMs: plan.tLocalexecMs,
    groups: plan.groups,
    tExecMs: plan.tExecMs,
    tXmaxMs: plan.tXmaxMs,
    handoffMs: plan.handoffMs,
    tPMs: plan.tPMs,
    tDMs: plan.tDMs,
    tPGiven: plan.tPGiven,
    tDGiven: plan.tDGiven,
    tExhaust: plan.tExhaustDescription,
    tExhaustNextMs: finite(plan.tExhaustNextMs),
    conditions: plan.conditions.map((c) => ({
      name: c.name,
      holds: c.holds,
      detail: c.detail,
      slack: finite(c.slack.amount),
      slackUnit: c.slack.unit,
      ...(c.fix === undefined ? {} : { fix: c.fix }),
    })),
    tightest: plan.tightest ?? null,
    range: {
      tDMinExclusiveMs: plan.range.tDMinMs,
      tDMaxExclusiveMs: finite(plan.range.tDMaxMs),
      tPMaxExclusiveMs: finite(plan.range.tPMaxMs),
    },
    step3:
      plan.step3.kPrimeMin === undefined
        ? { kPrimeMin: null, reason: plan.step3.reason }
        : plan.step3,
  };
}
