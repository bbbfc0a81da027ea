/**
 * `smw rig demo`: the 6-host rig, a client load throughout, one host's SM code
 * tampered into a Byzantine replica and another host's stored state corrupted,
 * then rejuvenation periods until each has been found and cleaned. With two
 * periods the faults land after the first (a clean baseline); with one, as
 * soon as the service is healthy, before the tampered hosts' turns.
 *
 * First, unless told to keep the testbed's budgets, a calibration period
 * measures this machine and the demo runs with the budgets it gave (and the
 * plan they make), so its promises hold on a slower machine too.
 */

import { formatDurationMs, type Testbed } from "@smw/wiring";
import type { LiveServer } from "../live/live-server.js";
import { DEMO_LOAD, type LoadShape } from "../load/client-load.js";
import { type Calibration, calibrate, DEFAULT_CALIBRATION_MARGIN_PERCENT } from "./calibrate.js";
import { type RigRunResult, runRig } from "./rig-run.js";

export interface DemoOptions {
  testbedFile: string;
  periods: number;
  outDir?: string;
  say: (line: string) => void;
  netns?: boolean;
  runsDir?: string;
  /** Run with the testbed's own budgets: no calibration period. */
  keepBudgets?: boolean;
  /** Margin over the largest time the calibration measured, in percent. */
  marginPercent?: number;
  /** The live page: it follows the calibration, then the demo (`faults`: which takes faults from it). */
  live?: { server: LiveServer; faults: boolean };
  /** The client load of the calibration and the demo (default `DEMO_LOAD`). */
  loadShape?: LoadShape;
}

export interface DemoResult extends RigRunResult {
  calibration: Calibration | undefined;
}

/** The demo's victims: the middle hosts of the rejuvenation order, so their turn comes after the faults. */
export function demoVictims(testbed: Testbed): { byzantine: string; corrupted: string } {
  const order = testbed.rejuvenation.groups.flat();
  const byzantine = order[Math.floor(order.length / 2) - 1] ?? order[0];
  const corrupted = order[Math.floor(order.length / 2) + 1] ?? order[order.length - 1];
  if (byzantine === undefined || corrupted === undefined)
    throw new RangeError("the testbed has no hosts");
  return { byzantine, corrupted };
}

export async function runDemo(options: DemoOptions): Promise<DemoResult> {
  const common = {
    ...(options.netns ? { netns: true } : {}),
    ...(options.runsDir === undefined ? {} : { runsDir: options.runsDir }),
    loadShape: options.loadShape ?? DEMO_LOAD,
  };
  let calibration: Calibration | undefined;
  if (!options.keepBudgets) {
    calibration = await calibrate({
      testbedFile: options.testbedFile,
      marginPercent: options.marginPercent ?? DEFAULT_CALIBRATION_MARGIN_PERCENT,
      say: options.say,
      ...common,
      ...(options.live === undefined ? {} : { live: options.live.server }),
    });
    options.say(
      `calibration: budgets measured on this machine (largest + ${calibration.marginPercent}% + procMax ${calibration.allowanceMs} ms): ${describeBudgets(calibration)}`,
    );
    options.say(
      `calibration: the plan with them is feasible: T_localexec ${formatDurationMs(calibration.plan.tLocalexecMs)}, T_Xmax ${formatDurationMs(calibration.plan.tXmaxMs)} < T_d ${formatDurationMs(calibration.plan.tDMs)} < T_p ${formatDurationMs(calibration.plan.tPMs)}`,
    );
  }
  const result = await runRig({
    testbedFile: options.testbedFile,
    title: `smw rig demo: ${options.periods} rejuvenation period${options.periods === 1 ? "" : "s"}${calibration === undefined ? ", the testbed's own budgets" : ", budgets measured on this machine"}`,
    periods: options.periods,
    say: options.say,
    ...common,
    ...(calibration === undefined
      ? {}
      : {
          overrides: {
            budgets: calibration.budgets,
            ...(calibration.schedule.widened
              ? { tDMs: calibration.schedule.tDMs, tPMs: calibration.schedule.tPMs }
              : {}),
          },
          note: [
            "Budgets measured on this machine by the calibration period of smw rig demo:",
            `the largest time of each step + ${calibration.marginPercent}% + procMax (${calibration.allowanceMs} ms)${calibration.viewChangeAllowanceMs > 0 ? `, T_transfer's + one view-change timeout (${calibration.viewChangeAllowanceMs} ms)` : ""}${calibration.schedule.widened ? ", T_d and T_p widened to fit them" : ""}; see calibration/ and report/plan.txt.`,
          ],
          planHeader: calibration.planText,
        }),
    ...(options.outDir === undefined ? {} : { outDir: options.outDir }),
    ...(options.live === undefined ? {} : { live: options.live }),
    scenario: async (rig, context) => {
      const { byzantine, corrupted } = demoVictims(rig.testbed);
      if (options.periods >= 2) {
        const tP = rig.testbed.rejuvenation.tPMs ?? 0;
        await context.periodComplete(options.periods - 2, (options.periods - 1) * tP + 30_000);
      }
      rig.compromise(byzantine, ["wrong-replies", "equivocate"]);
      // Corrupted while the host is down, so its replica boots from it (a running one would
      // overwrite it at its next checkpoint).
      rig.corruptStateAtNextBoot(corrupted);
    },
  });
  return { ...result, calibration };
}

function describeBudgets(c: Calibration): string {
  const b = c.budgets;
  return [
    `T_shutdown ${formatDurationMs(b.tShutdownMs)}`,
    `T_checkcode ${formatDurationMs(b.tCheckcodeMs)}`,
    `T_restorecode ${formatDurationMs(b.tRestorecodeMs)}`,
    `T_boot ${formatDurationMs(b.tBootMs)}`,
    `T_transfer ${formatDurationMs(b.tTransferMs)}${c.viewChangeAllowanceMs > 0 ? ` (with one view change, ${formatDurationMs(c.viewChangeAllowanceMs)})` : ""}`,
  ].join(", ");
}
