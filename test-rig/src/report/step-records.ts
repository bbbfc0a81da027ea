/**
 * The boards' own records of every rejuvenation (their `steps.jsonl`): when
 * each step of Algorithm 1 started and ended, its budget and verdict, and the
 * periods' triggers. The report's timings are read from these, not from the
 * rig's observation, so they are what the boards measured.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import type { Testbed } from "@smw/wiring";

export interface StepRow {
  board: string;
  host: string;
  period: number;
  step: string;
  plannedMs: number;
  startMs: number | undefined;
  endMs: number | undefined;
  budgetMs: number;
  verdict: string;
  detail: string | undefined;
}

export interface TriggerRow {
  board: string;
  period: number;
  plannedMs: number;
  actualMs: number;
  latenessMs: number;
}

export interface PeriodRow {
  board: string;
  period: number;
  startMs: number;
  endMs: number;
}

export interface BoardRecords {
  steps: StepRow[];
  triggers: TriggerRow[];
  periods: PeriodRow[];
  /** Lines of the files that could not be read as records (file:line: why). */
  unreadable: string[];
}

export function readBoardRecords(testbed: Testbed): BoardRecords {
  const out: BoardRecords = { steps: [], triggers: [], periods: [], unreadable: [] };
  for (const board of testbed.boards) {
    const file = path.join(board.stateDir, "steps.jsonl");
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    text.split("\n").forEach((line, i) => {
      if (line.trim() === "") return;
      let r: Record<string, unknown>;
      try {
        r = JSON.parse(line) as Record<string, unknown>;
      } catch {
        out.unreadable.push(`${file}:${i + 1}: not JSON`);
        return;
      }
      const num = (v: unknown) => (typeof v === "number" ? v : undefined);
      if (r.kind === "step") {
        out.steps.push({
          board: board.id,
          host: board.guards,
          period: num(r.period) ?? -1,
          step: String(r.step),
          plannedMs: num(r.plannedMs) ?? 0,
          startMs: num(r.startMs),
          endMs: num(r.endMs),
          budgetMs: num(r.budgetMs) ?? 0,
          verdict: String(r.verdict),
          detail: typeof r.detail === "string" ? r.detail : undefined,
        });
      } else if (r.kind === "trigger") {
        out.triggers.push({
          board: board.id,
          period: num(r.index) ?? -1,
          plannedMs: num(r.plannedMs) ?? 0,
          actualMs: num(r.actualMs) ?? 0,
          latenessMs: num(r.latenessMs) ?? 0,
        });
      } else if (r.kind === "period") {
        out.periods.push({
          board: board.id,
          period: num(r.period) ?? -1,
          startMs: num(r.startMs) ?? 0,
          endMs: num(r.endMs) ?? 0,
        });
      }
    });
  }
  return out;
}
