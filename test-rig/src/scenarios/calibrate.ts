/**
 * The paper's methodology on the machine at hand (section 2.3.2: measure the
 * steps, then plan). Before the demo's faulty periods, one clean period runs
 * under the same client load with loose budgets (CALIBRATION_FACTOR times the
 * testbed's, T_d and T_p widened to fit), so this machine's step times are
 * measured rather than assumed. Each step's budget is then the largest time
 * measured plus a stated margin plus procMax, the board's own bound on
 * processing delay (P1): the step as measured, slowed by at most the lateness
 * the board promises. The planner then checks the testbed with those budgets;
 * an infeasible plan stops the demo before it starts, saying why.
 */

import { writeFileSync } from "node:fs";
import path from "node:path";
import {
  formatProblem,
  loadTestbedFile,
  type Plan,
  plan,
  planInputFromTestbed,
  renderPlanText,
  type StepBudgets,
  type Testbed,
} from "@smw/wiring";
import type { LiveServer } from "../live/live-server.js";
import type { LoadShape } from "../load/client-load.js";
import {
  budgetsFromBounds,
  type DerivedBound,
  deriveBounds,
  renderBoundsYaml,
} from "../report/derived-bounds.js";
import { firstBroken, type RunSummary } from "../report/run-report.js";
import { rigJoinLeadMs } from "../rig/rig.js";
import { RigSetupError } from "../rig/rig-setup.js";
import { rigRunDir } from "../rig/run-folder.js";
import { runRig } from "./rig-run.js";

/** The calibration period's budgets: this many times the testbed's, so that it measures rather than fails. */
export const CALIBRATION_FACTOR = 4;
/**
 * Margin over the largest time measured. One period gives six samples of each step, and a step
 * can have a slower mode that six samples miss (T_transfer had one, ~+1.3 s, while peers
 * redialed a rebooted replica only after their backoff): the budget must hold what was not seen.
 */
export const DEFAULT_CALIBRATION_MARGIN_PERCENT = 200;

export interface CalibrationOptions {
  testbedFile: string;
  runsDir?: string;
  marginPercent: number;
  say: (line: string) => void;
  netns?: boolean;
  /** The live page: it follows the calibration period too (which takes no faults from it). */
  live?: LiveServer;
  /** The client load, the same as the run that follows: its budgets are measured under it. */
  loadShape?: LoadShape;
}

export interface Calibration {
  /** The budgets measured on this machine (margin and procMax included). */
  budgets: StepBudgets;
  bounds: DerivedBound[];
  marginPercent: number;
  allowanceMs: number;
  /**
   * Added to T_transfer's budget: one view-change timeout, which a recovering replica may have
   * to wait out (below). 0 when T_transfer was not measured.
   */
  viewChangeAllowanceMs: number;
  /** The planner on the testbed with those budgets. */
  plan: Plan;
  /** T_d and T_p to run with: the testbed's, widened when the measured budgets need it. */
  schedule: { tPMs: number; tDMs: number; widened: boolean };
  /** plan.txt's opening: the plan with the budgets measured on this machine. */
  planText: string;
  /** The calibration period's own report folder. */
  reportDir: string;
  summary: RunSummary;
}

/** The calibration could not give budgets, or gave budgets the plan cannot meet. */
export class CalibrationRefused extends Error {}

/** T_d and T_p for the calibration period: the testbed's, widened when the loose budgets need it. */
export function calibrationSchedule(
  testbed: Testbed,
  looseBudgets: StepBudgets,
): { tPMs: number; tDMs: number } {
  const loose = plan({ ...planInputFromTestbed(testbed), budgets: looseBudgets });
  const tDMs = Math.max(testbed.rejuvenation.tDMs ?? 0, Math.ceil(loose.tXmaxMs / 1000 + 1) * 1000);
  const gapMs = Math.max(
    1_000,
    (testbed.rejuvenation.tPMs ?? 0) - (testbed.rejuvenation.tDMs ?? 0),
    testbed.timeliness.procMaxMs * 2,
  );
  return { tDMs, tPMs: tDMs + gapMs };
}

export function scaleBudgets(b: StepBudgets, factor: number): StepBudgets {
  return {
    tShutdownMs: b.tShutdownMs * factor,
    tCheckcodeMs: b.tCheckcodeMs * factor,
    tRestorecodeMs: b.tRestorecodeMs * factor,
    tBootMs: b.tBootMs * factor,
    tTransferMs: b.tTransferMs * factor,
  };
}

/** From a calibration period's step statistics: the budgets, and the plan with them. */
export function budgetsFromCalibration(
  testbed: Testbed,
  summary: RunSummary,
  marginPercent: number,
): Omit<Calibration, "reportDir" | "summary"> {
  const allowanceMs = testbed.timeliness.procMaxMs;
  const own = testbed.rejuvenation.budgets;
  const ownByKey: Record<string, number> = {
    tShutdown: own.tShutdownMs,
    tCheckcode: own.tCheckcodeMs,
    tRestorecode: own.tRestorecodeMs,
    tBoot: own.tBootMs,
    tTransfer: own.tTransferMs,
  };
  // Compared with the testbed's own budgets, not the loose ones the calibration ran with; a
  // step that never ran (no restore was needed) keeps the testbed's own budget.
  const bounds = deriveBounds(summary.stats, marginPercent, allowanceMs).map((b) => {
    const ownMs = ownByKey[b.key] ?? b.currentBudgetMs;
    return {
      ...b,
      currentBudgetMs: ownMs,
      boundMs: b.measuredMaxMs === undefined ? ownMs : b.boundMs,
    };
  });
  const measuredBudgets = budgetsFromBounds(bounds, own);
  // A recovering replica may have to wait out one view change before its peers' checkpoint
  // counts for it: the current NEW_VIEW can be signed under keys revoked since (the hosts
  // rejuvenated after it formed), so it cannot follow it and a new view must form. One
  // calibration period never shows that (it happens in the periods after), so T_transfer
  // carries one view-change timeout on top of what was measured.
  const transferMeasured = bounds.some(
    (b) => b.key === "tTransfer" && b.measuredMaxMs !== undefined,
  );
  const viewChangeAllowanceMs = transferMeasured
    ? Math.max(0, ...testbed.hosts.map((h) => h.replica.viewChangeTimeoutMs))
    : 0;
  const budgets = {
    ...measuredBudgets,
    tTransferMs: measuredBudgets.tTransferMs + viewChangeAllowanceMs,
  };
  // As the paper's methodology does: T_d from T_exec with these budgets (the testbed's own if it
  // is enough), T_p after it; then the exhaustion condition decides.
  const fitted = calibrationSchedule(testbed, budgets);
  const widened = fitted.tDMs !== testbed.rejuvenation.tDMs;
  const measured = plan({ ...planInputFromTestbed(testbed), budgets, ...fitted });
  const samples = summary.stats.find((s) => s.name === "T_localexec")?.count ?? 0;
  const planText = renderPlanText(
    measured,
    `${testbed.name} with budgets measured on this machine: a calibration period (${samples} rejuvenations, no faults, under the client load); each budget is the largest time measured + ${marginPercent}% + procMax (${allowanceMs} ms)${viewChangeAllowanceMs > 0 ? `, T_transfer's + one view-change timeout (${viewChangeAllowanceMs} ms)` : ""}${widened ? "; T_d and T_p widened to fit them" : ""}`,
  );
  return {
    budgets,
    bounds,
    marginPercent,
    allowanceMs,
    viewChangeAllowanceMs,
    plan: measured,
    planText,
    schedule: { ...fitted, widened },
  };
}

export async function calibrate(options: CalibrationOptions): Promise<Calibration> {
  const loaded = loadTestbedFile(options.testbedFile);
  if (!loaded.ok) throw new RigSetupError(loaded.problems.map(formatProblem).join("\n"));
  const testbed = loaded.testbed;
  const loose = scaleBudgets(testbed.rejuvenation.budgets, CALIBRATION_FACTOR);
  const schedule = calibrationSchedule(testbed, loose);
  const reportDir = path.join(rigRunDir(testbed.name, options.runsDir), "calibration");
  options.say(
    `calibration: one clean period under load, budgets ${CALIBRATION_FACTOR}x the testbed's, to measure this machine`,
  );
  const run = await runRig({
    testbedFile: options.testbedFile,
    title: `smw rig demo: calibration period (no faults, budgets ${CALIBRATION_FACTOR}x the testbed's)`,
    periods: 1,
    say: (line) => options.say(`  ${line}`),
    outDir: reportDir,
    overrides: { budgets: loose, ...schedule },
    // The hosts' first boot takes what it takes on the testbed: reckoned with its own budgets.
    joinLeadMs: rigJoinLeadMs(testbed),
    note: [
      `Calibration period of smw rig demo: budgets ${CALIBRATION_FACTOR}x the testbed's, T_d and T_p widened to fit.`,
    ],
    ...(options.runsDir === undefined ? {} : { runsDir: options.runsDir }),
    ...(options.netns ? { netns: true } : {}),
    ...(options.loadShape === undefined ? {} : { loadShape: options.loadShape }),
    ...(options.live === undefined ? {} : { live: { server: options.live, faults: false } }),
  });
  const broken = firstBroken(run.summary);
  if (broken !== undefined)
    throw new CalibrationRefused(
      `the calibration period did not complete cleanly with budgets ${CALIBRATION_FACTOR}x the testbed's, so this machine gave no budgets to plan with: ${broken}\n(report: ${reportDir}; smw rig demo --keep-budgets runs with the testbed's own budgets)`,
    );
  const derived = budgetsFromCalibration(testbed, run.summary, options.marginPercent);
  const samples = run.summary.stats.find((s) => s.name === "T_localexec")?.count ?? 0;
  writeFileSync(
    path.join(reportDir, "bounds.yaml"),
    renderBoundsYaml(derived.bounds, options.marginPercent, run.summary.periodsCompleted).replace(
      `plus ${options.marginPercent}%.`,
      `plus ${options.marginPercent}% plus procMax (${derived.allowanceMs} ms).${derived.viewChangeAllowanceMs > 0 ? `\n# The demo's T_transfer budget is tTransfer below + one view-change timeout (${derived.viewChangeAllowanceMs} ms): a recovering replica may have to wait out one view change.` : ""}`,
    ),
  );
  writeFileSync(path.join(reportDir, "plan.txt"), derived.planText);
  if (!derived.plan.feasible)
    throw new CalibrationRefused(
      `the budgets measured on this machine (${samples} rejuvenations) make the plan infeasible; the demo does not run a schedule its boards cannot keep:\n\n${derived.planText}\n(report: ${reportDir}; smw rig demo --keep-budgets runs with the testbed's own budgets)`,
    );
  return { ...derived, reportDir, summary: run.summary };
}
