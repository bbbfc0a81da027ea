/** The demo's calibration: from one clean period's step times to budgets and a plan. */
import path from "node:path";
import {
  budgetsFromCalibration,
  CALIBRATION_FACTOR,
  calibrationSchedule,
  type RunSummary,
  rigJoinLeadMs,
  type StepStats,
  scaleBudgets,
} from "@smw/test-rig";
import { loadTestbedFile, plan, planInputFromTestbed } from "@smw/wiring";
import { describe, expect, it } from "vitest";

const loaded = loadTestbedFile(path.resolve("wiring/examples/rig-6.yaml"));
if (!loaded.ok) throw new Error("rig-6.yaml does not load");
const testbed = loaded.testbed;

function stats(maxMs: Record<string, number | undefined>): StepStats[] {
  return Object.entries(maxMs).map(([name, max]) => ({
    name: name as StepStats["name"],
    count: max === undefined ? 0 : 6,
    minMs: max ?? Number.NaN,
    medianMs: max ?? Number.NaN,
    p99Ms: max ?? Number.NaN,
    maxMs: max ?? Number.NaN,
    budgetMs: 0,
  }));
}

const summaryWith = (s: StepStats[]) => ({ stats: s }) as unknown as RunSummary;

describe("the calibration period's schedule", () => {
  it("widens T_d to fit budgets four times the testbed's, and keeps T_p beyond it", () => {
    const loose = scaleBudgets(testbed.rejuvenation.budgets, CALIBRATION_FACTOR);
    const { tPMs, tDMs } = calibrationSchedule(testbed, loose);
    const p = plan({ ...planInputFromTestbed(testbed), budgets: loose, tPMs, tDMs });
    expect(p.conditions.find((c) => c.name === "T_d >= T_exec")?.holds).toBe(true);
    expect(p.conditions.find((c) => c.name === "T_Xmax < T_d")?.holds).toBe(true);
    expect(tPMs).toBeGreaterThan(tDMs);
    expect(tDMs % 1000).toBe(0);
  });

  it("keeps the testbed's T_d and T_p when they already fit", () => {
    expect(calibrationSchedule(testbed, testbed.rejuvenation.budgets)).toEqual({
      tDMs: testbed.rejuvenation.tDMs,
      tPMs: testbed.rejuvenation.tPMs,
    });
  });
});

describe("budgets from a calibration period", () => {
  it("are the largest time + the margin + procMax; a step never measured keeps its budget", () => {
    const c = budgetsFromCalibration(
      testbed,
      summaryWith(
        stats({
          T_shutdown: 40,
          T_checkcode: 12,
          T_restorecode: undefined,
          T_boot: 900,
          T_transfer: 2600,
          T_localexec: 3600,
        }),
      ),
      100,
    );
    // procMax of rig-6 is 500 ms; rounded up to 10 ms below 1 s, 50 ms below 10 s.
    expect(c.allowanceMs).toBe(500);
    expect(c.budgets).toEqual({
      tShutdownMs: 580,
      tCheckcodeMs: 530,
      tRestorecodeMs: testbed.rejuvenation.budgets.tRestorecodeMs,
      tBootMs: 2300,
      // 2600 + 100% + procMax, and one view change (rig-6's viewChangeTimeout, 1 s) to wait out.
      tTransferMs: 5700 + 1000,
    });
    expect(c.viewChangeAllowanceMs).toBe(1000);
    expect(c.plan.feasible).toBe(true);
    expect(c.plan.tLocalexecMs).toBe(580 + 2 * 530 + 2 * 500 + 2300 + 6700);
    expect(c.planText).toMatch(/^rig-6 with budgets measured on this machine: /);
    expect(c.planText).toMatch(
      /largest time measured \+ 100% \+ procMax \(500 ms\), T_transfer's \+ one view-change timeout \(1000 ms\)/,
    );
  });

  it("widen T_d and T_p when this machine is too slow for the testbed's, and plan with them", () => {
    const c = budgetsFromCalibration(
      testbed,
      summaryWith(stats({ T_shutdown: 40, T_checkcode: 12, T_boot: 4_000, T_transfer: 9_000 })),
      100,
    );
    // 6 groups of T_localexec ≈ 28 s each do not fit in the testbed's T_d = 90 s: widened.
    expect(c.schedule.widened).toBe(true);
    expect(c.schedule.tDMs).toBeGreaterThan(c.plan.tXmaxMs);
    expect(c.schedule.tPMs).toBeGreaterThan(c.schedule.tDMs);
    expect(c.plan.feasible).toBe(true);
    expect(c.planText).toMatch(/T_d and T_p widened to fit them/);
  });

  it("give an infeasible plan when even the widest schedule is not exhaustion-safe, and say which condition", () => {
    const c = budgetsFromCalibration(
      testbed,
      summaryWith(stats({ T_shutdown: 40, T_checkcode: 12, T_boot: 4_000, T_transfer: 120_000 })),
      100,
    );
    // T_exec ≈ 6 × 6 min: T_p + T_d is over the 20 min two compromises take.
    expect(c.plan.feasible).toBe(false);
    expect(c.plan.conditions.find((x) => x.name === "T_p + T_d < T_exhaust(k'+1)")?.holds).toBe(
      false,
    );
    expect(c.planText).toMatch(/verdict: INFEASIBLE/);
  });
});

describe("the rig's join lead", () => {
  const withBounds = (silenceBoundMs: number, tBootMs: number) => ({
    ...testbed,
    controlNetwork: { ...testbed.controlNetwork, silenceBoundMs },
    rejuvenation: {
      ...testbed.rejuvenation,
      budgets: { ...testbed.rejuvenation.budgets, tBootMs },
    },
  });

  it("lets every host's first boot end before period 0: at least 12 s, more for long budgets", () => {
    // rig-6: 1.5 s + 1 s lease + 2 x 250 ms checks + 2 x 4.5 s boots = 12 s.
    expect(rigJoinLeadMs(withBounds(1_500, 4_500))).toBe(12_000);
    expect(rigJoinLeadMs(withBounds(1_500, 9_000))).toBe(1_500 + 1_000 + 500 + 18_000);
    // A board's own: four silence bounds.
    expect(rigJoinLeadMs(withBounds(4_000, 1_000))).toBe(16_000);
    expect(rigJoinLeadMs(withBounds(200, 1_000))).toBe(12_000);
  });
});
