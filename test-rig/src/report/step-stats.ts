/**
 * The per-step timing table: for each of the paper's step budgets the
 * measured min, median, p99 and max over every board and period, against the
 * budget; T_localexec is each board's whole Algorithm 1 run, shutdown to
 * transfer. Restores that did not run (the check found the code clean) are
 * not counted as zero; a step cut short by fail-safe is not a sample, while a
 * step over its budget is (it took at least that long). T_localexec counts
 * only runs that completed.
 */
import type { StepBudgets } from "@smw/wiring";
import { type RecoveryStep, stepBudgetMs, tLocalexecMs } from "@smw/wormhole-board";
import type { StepRow } from "./step-records.js";

export const STEP_NAMES = [
  "T_shutdown",
  "T_checkcode",
  "T_restorecode",
  "T_boot",
  "T_transfer",
  "T_localexec",
] as const;
export type StepName = (typeof STEP_NAMES)[number];

export interface StepStats {
  name: StepName;
  count: number;
  minMs: number;
  medianMs: number;
  p99Ms: number;
  maxMs: number;
  budgetMs: number;
}

const STEP_OF: Record<string, StepName> = {
  shutdown: "T_shutdown",
  checkOS: "T_checkcode",
  checkSM: "T_checkcode",
  restoreOS: "T_restorecode",
  restoreSM: "T_restorecode",
  boot: "T_boot",
  transfer: "T_transfer",
};

/** The step that stands for each budget (T_localexec is the whole of Algorithm 1). */
const STEP_FOR: Record<Exclude<StepName, "T_localexec">, RecoveryStep> = {
  T_shutdown: "shutdown",
  T_checkcode: "checkOS",
  T_restorecode: "restoreOS",
  T_boot: "boot",
  T_transfer: "transfer",
};

export function budgetOf(name: StepName, b: StepBudgets): number {
  return name === "T_localexec" ? tLocalexecMs(b) : stepBudgetMs(STEP_FOR[name], b);
}

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] as number;
}

/** Samples per step name, in ms. */
export function stepSamples(rows: readonly StepRow[]): Map<StepName, number[]> {
  const samples = new Map<StepName, number[]>(STEP_NAMES.map((n) => [n, []]));
  const runs = new Map<string, { start: number; end: number; complete: boolean }>();
  for (const row of rows) {
    if (row.startMs === undefined || row.endMs === undefined || row.verdict === "interrupted")
      continue;
    const name = STEP_OF[row.step];
    if (name === undefined) continue;
    samples.get(name)?.push(row.endMs - row.startMs);
    const key = `${row.board}\u0000${row.period}`;
    const run = runs.get(key) ?? { start: row.startMs, end: row.endMs, complete: false };
    run.start = Math.min(run.start, row.startMs);
    run.end = Math.max(run.end, row.endMs);
    if (row.step === "transfer" && row.verdict === "ok") run.complete = true;
    runs.set(key, run);
  }
  for (const run of runs.values())
    if (run.complete) samples.get("T_localexec")?.push(run.end - run.start);
  return samples;
}

export function stepStats(rows: readonly StepRow[], budgets: StepBudgets): StepStats[] {
  const samples = stepSamples(rows);
  return STEP_NAMES.map((name) => {
    const sorted = [...(samples.get(name) ?? [])].sort((a, b) => a - b);
    return {
      name,
      count: sorted.length,
      minMs: sorted[0] ?? Number.NaN,
      medianMs: percentile(sorted, 50),
      p99Ms: percentile(sorted, 99),
      maxMs: sorted[sorted.length - 1] ?? Number.NaN,
      budgetMs: budgetOf(name, budgets),
    };
  });
}

export function formatMs(ms: number): string {
  if (Number.isNaN(ms)) return "-";
  return ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`;
}

export function renderStepTable(stats: readonly StepStats[]): string {
  const header = ["step", "n", "min", "median", "p99", "max", "budget", "max/budget"];
  const rows = stats.map((s) => [
    s.name,
    String(s.count),
    formatMs(s.minMs),
    formatMs(s.medianMs),
    formatMs(s.p99Ms),
    formatMs(s.maxMs),
    formatMs(s.budgetMs),
    s.count === 0 ? "-" : (s.maxMs / s.budgetMs).toFixed(2),
  ]);
  const widths = header.map((h, i) =>
    Math.max(h.length, ...rows.map((r) => (r[i] as string).length)),
  );
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number)))
      .join("  ");
  return [line(header), ...rows.map(line)].join("\n");
}

export function stepsCsv(rows: readonly StepRow[]): string {
  const out = [
    "board,host,period,step,planned_ms,start_ms,end_ms,took_ms,budget_ms,verdict,detail",
  ];
  for (const r of rows) {
    const took =
      r.startMs !== undefined && r.endMs !== undefined ? (r.endMs - r.startMs).toFixed(1) : "";
    out.push(
      [
        r.board,
        r.host,
        r.period,
        r.step,
        r.plannedMs,
        r.startMs ?? "",
        r.endMs ?? "",
        took,
        r.budgetMs,
        r.verdict,
        csvField(r.detail ?? ""),
      ].join(","),
    );
  }
  return `${out.join("\n")}\n`;
}

function csvField(text: string): string {
  return /[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}
