/**
 * Upper bounds for the step budgets derived from measurements: the largest
 * value measured for each step plus a stated margin (and, where asked, a fixed
 * allowance such as the board's promised processing delay), rounded up to a
 * tidy figure, written as the `budgets:` block of a testbed file.
 */
import type { StepBudgets } from "@smw/wiring";
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

export function deriveBounds(
  stats: readonly StepStats[],
  marginPercent: number,
  allowanceMs = 0,
): DerivedBound[] {
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
            : roundUpMs(Math.max(1, measured * (1 + marginPercent / 100) + allowanceMs)),
        currentBudgetMs: s.budgetMs,
      };
    });
}

/** The step budgets the bounds give; a step never measured keeps its budget in `fallback`. */
export function budgetsFromBounds(
  bounds: readonly DerivedBound[],
  fallback: StepBudgets,
): StepBudgets {
  const pick = (key: string, fallbackMs: number) => {
    const b = bounds.find((x) => x.key === key);
    return b?.measuredMaxMs === undefined ? fallbackMs : b.boundMs;
  };
  return {
    tShutdownMs: pick("tShutdown", fallback.tShutdownMs),
    tCheckcodeMs: pick("tCheckcode", fallback.tCheckcodeMs),
    tRestorecodeMs: pick("tRestorecode", fallback.tRestorecodeMs),
    tBootMs: pick("tBoot", fallback.tBootMs),
    tTransferMs: pick("tTransfer", fallback.tTransferMs),
  };
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
        : `measured max ${Math.round(b.measuredMaxMs)} ms; testbed budget ${b.currentBudgetMs} ms`;
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
