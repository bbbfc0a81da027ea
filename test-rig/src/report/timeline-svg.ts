/**
 * The paper's Figure 3 for one run: one row per group of hosts, each step of
 * Algorithm 1 a bar where the board measured it, every period's start (T_p
 * apart), its deadline T_d, and each group's planned slot (its T_localexec
 * budget) marked. A bar outlined red ran over its budget.
 */
import { escapeXml } from "@smw/wiring";
import type { PeriodRow, StepRow, TriggerRow } from "./step-records.js";

export interface TimelineInput {
  title: string;
  groups: ReadonlyArray<readonly string[]>;
  /** board id of each host */
  boardOf: ReadonlyMap<string, string>;
  steps: readonly StepRow[];
  triggers: readonly TriggerRow[];
  periods: readonly PeriodRow[];
  tPMs: number;
  tDMs: number;
  tLocalexecMs: number;
  /** Where drawing stops, ms on the boards' clock (default: the last step's end). */
  endMs?: number;
}

const COLOURS: Record<string, string> = {
  shutdown: "#8c6d31",
  checkOS: "#3182bd",
  checkSM: "#6baed6",
  restoreOS: "#e6550d",
  restoreSM: "#fd8d3c",
  boot: "#31a354",
  transfer: "#756bb1",
};

export function renderTimelineSvg(input: TimelineInput): string {
  const starts = input.triggers.map((t) => t.plannedMs);
  const origin = Math.min(
    ...starts,
    ...input.steps.map((s) => s.startMs ?? Number.POSITIVE_INFINITY),
  );
  if (!Number.isFinite(origin)) return emptySvg(input.title, "no rejuvenation was recorded");
  const lastEnd = Math.max(
    ...input.steps.map((s) => s.endMs ?? 0),
    ...starts.map((s) => s + input.tDMs),
  );
  const spanMs = Math.max(1, (input.endMs ?? lastEnd) - origin);
  const left = 90;
  const top = 50;
  const rowH = 28;
  const width = 1100;
  const plotW = width - left - 20;
  const height = top + input.groups.length * rowH + 110;
  const x = (ms: number) => left + ((ms - origin) / spanMs) * plotW;
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${left}" y="20" font-size="14" font-weight="bold">${escapeXml(input.title)}</text>`,
  );
  const bottom = top + input.groups.length * rowH;
  // Periods: start (T_p grid) and deadline T_d.
  const periodStarts = [
    ...new Map(input.triggers.map((t) => [t.period, t.plannedMs])).entries(),
  ].sort((a, b) => a[0] - b[0]);
  for (const [period, start] of periodStarts) {
    parts.push(
      `<line x1="${x(start).toFixed(1)}" y1="${top - 12}" x2="${x(start).toFixed(1)}" y2="${bottom}" stroke="#333" stroke-width="1.5"/>`,
      `<text x="${(x(start) + 3).toFixed(1)}" y="${top - 15}">period ${period} (T_p)</text>`,
    );
    const deadline = start + input.tDMs;
    parts.push(
      `<line x1="${x(deadline).toFixed(1)}" y1="${top - 12}" x2="${x(deadline).toFixed(1)}" y2="${bottom}" stroke="#d62728" stroke-dasharray="5,3"/>`,
      `<text x="${(x(deadline) - 3).toFixed(1)}" y="${top - 3}" fill="#d62728" text-anchor="end">T_d deadline</text>`,
    );
  }
  input.groups.forEach((group, g) => {
    const y = top + g * rowH;
    parts.push(
      `<text x="${left - 8}" y="${y + rowH / 2 + 4}" text-anchor="end">${escapeXml(`group ${g + 1}: ${group.join(",")}`)}</text>`,
      `<line x1="${left}" y1="${y + rowH}" x2="${left + plotW}" y2="${y + rowH}" stroke="#eee"/>`,
    );
    const boards = new Set(group.map((h) => input.boardOf.get(h)));
    for (const s of input.steps) {
      if (!boards.has(s.board)) continue;
      // Each group's slot in the static schedule: its T_localexec budget.
      if (s.step === "shutdown") {
        const slotEnd = s.plannedMs + input.tLocalexecMs;
        parts.push(
          `<rect x="${x(s.plannedMs).toFixed(1)}" y="${y + 2}" width="${Math.max(0.5, x(slotEnd) - x(s.plannedMs)).toFixed(1)}" height="${rowH - 4}" fill="none" stroke="#bbb" stroke-dasharray="2,2"/>`,
          `<line x1="${x(slotEnd).toFixed(1)}" y1="${y + 1}" x2="${x(slotEnd).toFixed(1)}" y2="${y + rowH - 1}" stroke="#d62728" stroke-width="1"/>`,
        );
      }
      if (s.startMs === undefined || s.endMs === undefined) continue;
      const over = s.verdict === "over-budget" || s.verdict === "failed";
      const cut = s.verdict === "interrupted";
      parts.push(
        `<rect x="${x(s.startMs).toFixed(1)}" y="${y + 6}" width="${Math.max(0.8, x(s.endMs) - x(s.startMs)).toFixed(1)}" height="${rowH - 12}" fill="${COLOURS[s.step] ?? "#999"}"${over ? ' stroke="#d62728" stroke-width="2"' : cut ? ' stroke="#333" stroke-width="1.5" stroke-dasharray="3 2"' : ""}><title>${escapeXml(`${s.board} ${s.step} period ${s.period}: ${(s.endMs - s.startMs).toFixed(0)} ms of ${s.budgetMs} ms (${s.verdict})`)}</title></rect>`,
      );
    }
  });
  // Time axis.
  const tickMs = niceTick(spanMs / 10);
  for (let t = 0; t <= spanMs; t += tickMs) {
    parts.push(
      `<line x1="${x(origin + t).toFixed(1)}" y1="${bottom}" x2="${x(origin + t).toFixed(1)}" y2="${bottom + 5}" stroke="#333"/>`,
      `<text x="${x(origin + t).toFixed(1)}" y="${bottom + 17}" text-anchor="middle">${t >= 1000 ? `${(t / 1000).toFixed(tickMs < 1000 ? 1 : 0)} s` : `${t} ms`}</text>`,
    );
  }
  // Legend.
  let lx = left;
  const ly = bottom + 40;
  for (const [step, colour] of Object.entries(COLOURS)) {
    parts.push(
      `<rect x="${lx}" y="${ly}" width="12" height="12" fill="${colour}"/>`,
      `<text x="${lx + 16}" y="${ly + 10}">${step}</text>`,
    );
    lx += 95;
  }
  parts.push(
    `<text x="${left}" y="${ly + 32}" fill="#555">${escapeXml(`T_p = ${input.tPMs} ms, T_d = ${input.tDMs} ms, T_localexec budget = ${input.tLocalexecMs} ms; dashed boxes: each group's slot in the static schedule, red ticks: its deadline; red outline: a step over its budget or failed, dashed: cut short by fail-safe`)}</text>`,
    "</svg>",
  );
  return `${parts.join("\n")}\n`;
}

function niceTick(raw: number): number {
  const steps = [
    10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 30_000, 60_000, 120_000, 300_000,
  ];
  return steps.find((s) => s >= raw) ?? 600_000;
}

function emptySvg(title: string, why: string): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="600" height="80" font-family="sans-serif"><text x="10" y="25" font-size="14">${escapeXml(title)}</text><text x="10" y="55">${escapeXml(why)}</text></svg>\n`;
}
