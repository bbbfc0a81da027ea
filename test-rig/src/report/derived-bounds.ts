/**
 * Upper bounds for the step budgets derived from measurements: the largest
 * value measured for each step plus a stated margin, rounded up to a tidy
 * figure, written as the `budgets:` block of a testbed file.
 */
import { tLocalexecMs } from "@smw/wormhole-board";
import type { StepStats } from "./step-stats.js";

const KEYS: Record<string, string> = {
  T_shutdown: "tShutdown",
  T_checkcode: "tCheckcode",
  T_restorecode: "tRestorecode",
  T_boot: "tBoot",
  T_transfer: "tTransfer",
};

export interface DerivedBound {
  name: string;
  key: string;
  measuredMaxMs: number | undefined;
  boundMs: number;
  currentBudgetMs: number;
}

/** Rounds up to 10 ms below 1 s, 50 ms below 10 s, else 500 ms. */
export function roundUpMs(ms: number): number {
  const unit = ms < 1_000 ? 10 : ms < 10_000 ? 50 : 500;
  return Math.ceil(ms / unit) * unit;
}

export function deriveBounds(stats: readonly StepStats[], marginPercent: number): DerivedBound[] {
  return stats
    .filter((s) => KEYS[s.name] !== undefined)
    .map((s) => {
      const measured = s.count === 0 ? undefined : s.maxMs;
      return {
        name: s.name,
        key: KEYS[s.name] as string,
        measuredMaxMs: measured,
        // Nothing measured (a restore that never ran): keep the budget there is.
        boundMs:
          measured === undefined
            ? s.budgetMs
            : roundUpMs(Math.max(1, measured * (1 + marginPercent / 100))),
        currentBudgetMs: s.budgetMs,
      };
    });
}

export function renderBoundsYaml(
  bounds: readonly DerivedBound[],
  marginPercent: number,
  cycles: number,
): string {
  const lines = [
    `# Step budgets derived from ${cycles} measured rejuvenation period(s): the largest value`,
    `# measured for each step plus ${marginPercent}%. Paste under rejuvenation: in the testbed file.`,
    "  budgets:",
  ];
  for (const b of bounds) {
    const note =
      b.measuredMaxMs === undefined
        ? "not measured (never ran): the current budget kept"
        : `measured max ${Math.round(b.measuredMaxMs)} ms; budget now ${b.currentBudgetMs} ms`;
    lines.push(`    ${`${b.key}: ${b.boundMs}ms`.padEnd(24)} # ${note}`);
  }
  const boundOf = (key: string) => bounds.find((b) => b.key === key)?.boundMs ?? 0;
  const localexec = tLocalexecMs({
    tShutdownMs: boundOf("tShutdown"),
    tCheckcodeMs: boundOf("tCheckcode"),
    tRestorecodeMs: boundOf("tRestorecode"),
    tBootMs: boundOf("tBoot"),
    tTransferMs: boundOf("tTransfer"),
  });
  lines.push(
    `# T_localexec with these budgets: ${localexec} ms (smw plan checks the schedule against it)`,
  );
  return `${lines.join("\n")}\n`;
}
