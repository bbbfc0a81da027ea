/**
 * Algorithm 1 (refreshCodeAndState) on one board, as a core without I/O:
 * it says which step to run and by when, hears how each step ended, skips a
 * restore whose check found the code clean, and reports a step over its
 * budget or failed. The driver runs the steps (lines, images, host link).
 */
import type { StepBudgets } from "@smw/wiring";

export const RECOVERY_STEPS = [
  "shutdown",
  "checkOS",
  "restoreOS",
  "checkSM",
  "restoreSM",
  "boot",
  "transfer",
] as const;
export type RecoveryStep = (typeof RECOVERY_STEPS)[number];

export function stepBudgetMs(step: RecoveryStep, budgets: StepBudgets): number {
  switch (step) {
    case "shutdown":
      return budgets.tShutdownMs;
    case "checkOS":
    case "checkSM":
      return budgets.tCheckcodeMs;
    case "restoreOS":
    case "restoreSM":
      return budgets.tRestorecodeMs;
    case "boot":
      return budgets.tBootMs;
    case "transfer":
      return budgets.tTransferMs;
  }
}

export interface StepRecord {
  period: number;
  step: RecoveryStep;
  /** Where the static schedule placed the step's start. */
  plannedMs: number;
  startMs?: number;
  endMs?: number;
  budgetMs: number;
  /** `interrupted`: cut short when the board entered fail-safe for another reason. */
  verdict: "ok" | "skipped" | "over-budget" | "failed" | "interrupted" | "running";
  detail?: string;
}

/** How a step ended: check steps say whether the code was corrupted. */
export type StepOutcome =
  | { ok: true; corrupted?: boolean; detail?: string }
  | { ok: false; reason: string };

export type RecoveryOutput =
  | { kind: "run"; step: RecoveryStep; deadlineMs: number }
  | { kind: "done"; period: number; records: StepRecord[] }
  | { kind: "violation"; reason: string };

export class RecoveryCore {
  private records: StepRecord[] = [];
  private current: StepRecord | undefined;
  private period = -1;
  private failed = false;
  /** The current period's records have gone out (done, or handed over by `interrupt`). */
  private reported = true;

  constructor(private readonly budgets: StepBudgets) {}

  get running(): boolean {
    return this.current !== undefined;
  }

  /** Starts Algorithm 1 for `period`; `plannedStartMs` is the static schedule's start of this board's group. */
  start(period: number, plannedStartMs: number, nowMs: number): RecoveryOutput[] {
    if (this.failed || this.current !== undefined) return [];
    this.period = period;
    this.records = [];
    this.reported = false;
    let planned = plannedStartMs;
    for (const step of RECOVERY_STEPS) {
      const budgetMs = stepBudgetMs(step, this.budgets);
      this.records.push({ period, step, plannedMs: planned, budgetMs, verdict: "running" });
      planned += budgetMs;
    }
    return this.begin("shutdown", nowMs);
  }

  finished(step: RecoveryStep, outcome: StepOutcome, nowMs: number): RecoveryOutput[] {
    const record = this.current;
    if (this.failed || record === undefined || record.step !== step) return [];
    record.endMs = nowMs;
    const tookMs = nowMs - (record.startMs as number);
    if (outcome.ok && outcome.detail !== undefined) record.detail = outcome.detail;
    if (tookMs > record.budgetMs) {
      record.verdict = "over-budget";
      return [
        this.fail(
          `step ${step} of period ${this.period} took ${tookMs.toFixed(0)} ms, over its budget of ${record.budgetMs} ms`,
        ),
      ];
    }
    if (!outcome.ok) {
      record.verdict = "failed";
      record.detail = outcome.reason;
      return [this.fail(`step ${step} of period ${this.period} failed: ${outcome.reason}`)];
    }
    record.verdict = "ok";
    const next = this.nextStep(step, outcome.corrupted === true);
    if (next === undefined) {
      this.current = undefined;
      this.reported = true;
      return [
        {
          kind: "done",
          period: this.period,
          records: this.records.filter((r) => r.verdict !== "running"),
        },
      ];
    }
    return this.begin(next, nowMs);
  }

  /** Time has reached `nowMs`: a step past its budget is a violation even before it reports. */
  tick(nowMs: number): RecoveryOutput[] {
    const record = this.current;
    if (this.failed || record === undefined) return [];
    if (nowMs > (record.startMs as number) + record.budgetMs) {
      record.verdict = "over-budget";
      record.endMs = nowMs;
      return [
        this.fail(
          `step ${record.step} of period ${this.period} is over its budget of ${record.budgetMs} ms`,
        ),
      ];
    }
    return [];
  }

  nextWakeupMs(): number | undefined {
    const record = this.current;
    return this.failed || record === undefined
      ? undefined
      : (record.startMs as number) + record.budgetMs;
  }

  stepRecords(): readonly StepRecord[] {
    return this.records;
  }

  /**
   * The board has entered fail-safe: stop, and hand over once the records of a run that
   * will not complete, up to the step that failed or was cut short (steps never reached
   * are left out), so a drill or campaign keeps the step that broke.
   */
  interrupt(nowMs: number): { period: number; records: StepRecord[] } | undefined {
    const record = this.current;
    if (record !== undefined) {
      record.verdict = "interrupted";
      record.endMs = nowMs;
    }
    this.failed = true;
    this.current = undefined;
    if (this.reported) return undefined;
    this.reported = true;
    return { period: this.period, records: this.records.filter((r) => r.verdict !== "running") };
  }

  private nextStep(step: RecoveryStep, corrupted: boolean): RecoveryStep | undefined {
    switch (step) {
      case "shutdown":
        return "checkOS";
      case "checkOS":
        return corrupted ? "restoreOS" : this.skip("restoreOS", "checkSM");
      case "restoreOS":
        return "checkSM";
      case "checkSM":
        return corrupted ? "restoreSM" : this.skip("restoreSM", "boot");
      case "restoreSM":
        return "boot";
      case "boot":
        return "transfer";
      case "transfer":
        return undefined;
    }
  }

  private skip(skipped: RecoveryStep, next: RecoveryStep): RecoveryStep {
    const record = this.records.find((r) => r.step === skipped);
    if (record !== undefined) record.verdict = "skipped";
    return next;
  }

  private begin(step: RecoveryStep, nowMs: number): RecoveryOutput[] {
    const record = this.records.find((r) => r.step === step) as StepRecord;
    record.startMs = nowMs;
    this.current = record;
    return [{ kind: "run", step, deadlineMs: nowMs + record.budgetMs }];
  }

  private fail(reason: string): RecoveryOutput {
    this.failed = true;
    this.current = undefined;
    return { kind: "violation", reason };
  }
}
