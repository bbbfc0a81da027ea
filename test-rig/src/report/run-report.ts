/**
 * What a rig run showed, checked against the paper's promises: the step
 * timings the boards measured, the client load, the most hosts down at once,
 * the tampered hosts found and restored, and any fail-safe. Written as a
 * report folder: timings.csv, events.jsonl, timeline.svg, plan.txt, summary.txt.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { checkLinearizable, historyLine, parseHistory, reasonWithoutFolder } from "@smw/host-agent";
import { plan, planInputFromTestbed, renderPlanText, type Testbed } from "@smw/wiring";
import type { LoadFigures } from "../load/client-load.js";
import type { StampedEvent } from "../rig/rig-events.js";
import type { BoardRecords, StepRow } from "./step-records.js";
import {
  formatMs,
  percentile,
  renderStepTable,
  type StepStats,
  stepStats,
  stepsCsv,
} from "./step-stats.js";
import { renderTimelineSvg } from "./timeline-svg.js";

export interface Promise_ {
  name: string;
  held: boolean;
  detail: string;
}

export interface RunSummary {
  title: string;
  periodsWanted: number;
  periodsCompleted: number;
  stats: StepStats[];
  load: LoadFigures | undefined;
  /** The most hosts down at once for rejuvenation (the schedule's doing; bound: k). */
  maxHostsDown: number;
  /** Hosts held in reset by their board's fail-safe state (not the schedule's doing). */
  heldByFailsafe: string[];
  failsafe: Array<{ board: string; reason: string; atWallMs: number }>;
  /** Steps over their budget or failed, earliest first. */
  brokenSteps: StepRow[];
  tampered: Array<{ host: string; what: string; detected: boolean; restored: boolean }>;
  /** Stored states corrupted: did the replica refuse it at boot, and recover from its peers? */
  corruptedState: Array<{
    host: string;
    detected: string | undefined;
    recovered: string | undefined;
  }>;
  maxTriggerLatenessMs: number;
  /** The load split by whether a host was being rejuvenated (undefined: no client load). */
  loadDuringRejuvenation: LoadSplit | undefined;
  /** The clients' history checked for linearizability (undefined: no client load). */
  history: HistoryVerdict | undefined;
  promises: Promise_[];
}

export interface HistoryVerdict {
  operations: number;
  linearizable: boolean | undefined;
  checkMs: number;
  /** One line: the verdict, and on a violation the operations that cannot be ordered. */
  detail: string;
}

/** Bound on the linearizability check of a run's history. */
export const HISTORY_CHECK_LIMIT_MS = 30_000;

/** The clients' history, as history.jsonl holds it. */
export function historyText(load: LoadFigures): string {
  return load.history.map(historyLine).join("");
}

export function checkHistory(load: LoadFigures): HistoryVerdict {
  const { operations } = parseHistory(historyText(load), "history.jsonl");
  const v = checkLinearizable(operations, { timeLimitMs: HISTORY_CHECK_LIMIT_MS });
  const ms = Math.round(v.checkMs);
  const head = `${operations.length} operations`;
  if (v.linearizable === true)
    return {
      operations: operations.length,
      linearizable: true,
      checkMs: ms,
      detail: `${head}, linearizable (checked in ${ms} ms)`,
    };
  if (v.linearizable === undefined)
    return {
      operations: operations.length,
      linearizable: undefined,
      checkMs: ms,
      detail: `${head}, undecided: ${v.reason}`,
    };
  const ops = v.operations
    .map(
      (o) =>
        `process ${o.process} ${o.f}${o.f === "get" ? ` -> ${JSON.stringify(o.output)}` : ` ${JSON.stringify(o.input)}`} (${o.outcome}, line ${o.invokeLine})`,
    )
    .join("; ");
  return {
    operations: operations.length,
    linearizable: false,
    checkMs: ms,
    detail: `${head}, NOT linearizable: key ${v.key}: ${ops} cannot be ordered (smw history check history.jsonl)`,
  };
}

export interface SummaryInput {
  title: string;
  testbed: Testbed;
  records: BoardRecords;
  events: readonly StampedEvent[];
  load: LoadFigures | undefined;
  periodsWanted: number;
  /** Promises that do not apply to this run (a drill expects its fail-safe). */
  skip?: readonly string[];
  /** Promises the caller judged itself. */
  more?: readonly Promise_[];
}

/**
 * Hosts down, told apart by who put them down. The schedule's bound (k at a time) is about the
 * rejuvenations: the most hosts down at once counts hosts from when each had first come up,
 * leaving out a host held in reset by its board's fail-safe state (from the instant the board
 * entered it, by the board's own clock). Those are listed on their own.
 */
export function hostsDown(
  events: readonly StampedEvent[],
  testbed: Pick<Testbed, "boards" | "hosts">,
): { maxBySchedule: number; heldByFailsafe: string[] } {
  const boardOf = new Map(testbed.boards.map((b) => [b.guards, b.id]));
  const failsafeAtMs = new Map<string, number>();
  for (const e of events) {
    if (e.kind !== "board" || e.msg !== "FAIL-SAFE" || failsafeAtMs.has(e.board)) continue;
    const at = e.fields.boardTimeMs;
    failsafeAtMs.set(e.board, typeof at === "number" ? at : e.wallMs);
  }
  const seenUp = new Set<string>();
  const down = new Set<string>();
  const held = new Set<string>();
  let max = 0;
  for (const e of events) {
    if (e.kind === "host-up") {
      seenUp.add(e.host);
      down.delete(e.host);
    } else if (e.kind === "host-down" || e.kind === "host-boot-failed") {
      const board = boardOf.get(e.host);
      const failsafeAt = board === undefined ? undefined : failsafeAtMs.get(board);
      if (failsafeAt !== undefined && e.wallMs >= failsafeAt) held.add(e.host);
      else if (seenUp.has(e.host)) down.add(e.host);
    }
    if (seenUp.size === testbed.hosts.length) max = Math.max(max, down.size);
  }
  return { maxBySchedule: max, heldByFailsafe: [...held].sort() };
}

/** Time, and the operations completed in it. */
export interface LoadPart {
  ms: number;
  completed: number;
}

/** The phases of a host's rejuvenation, as the rig sees them (`LoadSplit.phases`). */
export type RejuvenationPhase = "reset" | "booting" | "recovering";

/** Operations completed while some host was being rejuvenated, and while none was. */
export interface LoadSplit {
  rejuvenating: LoadPart;
  otherwise: LoadPart;
  /**
   * The rejuvenating time by phase, while some host was in it: held in reset (its board shutting
   * it down, checking and restoring its code), booting (from reset released until its board's
   * boot step ended: the host agent and the replica starting, on the rig on the same cores as
   * the service), and recovering (until its replica reported its state recovered).
   */
  phases: Record<RejuvenationPhase, LoadPart>;
}

/** The union of `intervals`, clipped to [startMs, endMs), in order. */
function mergedWithin(
  intervals: ReadonlyArray<readonly [number, number]>,
  startMs: number,
  endMs: number,
): Array<[number, number]> {
  const merged: Array<[number, number]> = [];
  for (const [from, to] of [...intervals].sort((a, b) => a[0] - b[0])) {
    const a = Math.max(from, startMs);
    const b = Math.min(to, endMs);
    if (b <= a) continue;
    const last = merged.at(-1);
    if (last !== undefined && a <= last[1]) last[1] = Math.max(last[1], b);
    else merged.push([a, b]);
  }
  return merged;
}

/**
 * The client load split by what the rig was doing: "rejuvenating" from a host going down (held
 * in reset by its board's schedule) until its replica reported its state recovered, or the run
 * ended; "otherwise" the rest of the load's time. What a rejuvenation costs the service is the
 * difference between the two rates; `phases` says in which part of it. A host that goes down
 * again before it recovered starts its reset phase again. `boardOf`: each host's board, whose
 * boot step ends the host's booting phase (without it, booting lasts until recovered).
 */
export function loadDuringRejuvenation(
  events: readonly StampedEvent[],
  load: Pick<LoadFigures, "completedAtWallMs" | "startedAtWallMs" | "durationMs">,
  boardOf: ReadonlyMap<string, string> = new Map(),
): LoadSplit {
  const startMs = load.startedAtWallMs;
  const endMs = startMs + load.durationMs;
  const hostOf = new Map([...boardOf].map(([host, board]) => [board, host]));
  // Per host: since when it was being rejuvenated, and the phase it is in since when.
  const open = new Map<
    string,
    { sinceMs: number; phase: RejuvenationPhase; phaseSinceMs: number }
  >();
  const whole: Array<[number, number]> = [];
  const byPhase: Record<RejuvenationPhase, Array<[number, number]>> = {
    reset: [],
    booting: [],
    recovering: [],
  };
  const enter = (host: string, phase: RejuvenationPhase, atMs: number) => {
    const o = open.get(host);
    if (o === undefined) {
      open.set(host, { sinceMs: atMs, phase, phaseSinceMs: atMs });
      return;
    }
    byPhase[o.phase].push([o.phaseSinceMs, atMs]);
    o.phase = phase;
    o.phaseSinceMs = atMs;
  };
  for (const e of events) {
    if (e.kind === "host-down") enter(e.host, "reset", e.wallMs);
    else if (e.kind === "host-up") {
      if (open.get(e.host)?.phase === "reset") enter(e.host, "booting", e.wallMs);
    } else if (e.kind === "board" && e.msg === "step finished" && e.fields.step === "boot") {
      const host = hostOf.get(e.board);
      if (host !== undefined && open.get(host)?.phase === "booting")
        enter(host, "recovering", e.wallMs);
    } else if (e.kind === "host-state" && e.note.kind === "recovered") {
      const o = open.get(e.host);
      if (o === undefined) continue;
      byPhase[o.phase].push([o.phaseSinceMs, e.wallMs]);
      whole.push([o.sinceMs, e.wallMs]);
      open.delete(e.host);
    }
  }
  for (const o of open.values()) {
    byPhase[o.phase].push([o.phaseSinceMs, endMs]);
    whole.push([o.sinceMs, endMs]);
  }
  const part = (intervals: ReadonlyArray<readonly [number, number]>): LoadPart => {
    const merged = mergedWithin(intervals, startMs, endMs);
    let completed = 0;
    for (const at of load.completedAtWallMs)
      if (merged.some(([a, b]) => at >= a && at < b)) completed++;
    return { ms: merged.reduce((sum, [a, b]) => sum + (b - a), 0), completed };
  };
  const rejuvenating = part(whole);
  return {
    rejuvenating,
    otherwise: {
      ms: Math.max(0, load.durationMs - rejuvenating.ms),
      completed: load.completedAtWallMs.length - rejuvenating.completed,
    },
    phases: {
      reset: part(byPhase.reset),
      booting: part(byPhase.booting),
      recovering: part(byPhase.recovering),
    },
  };
}

/**
 * For each stored state corrupted: what its replica said at its next boot
 * (the checkpoint refused) and when it had its state back from its peers.
 */
function corruptedStates(events: readonly StampedEvent[]): RunSummary["corruptedState"] {
  const found: RunSummary["corruptedState"] = [];
  for (const [i, e] of events.entries()) {
    if (e.kind !== "fault" || e.host === undefined || !/stored state corrupted/.test(e.detail))
      continue;
    const host = e.host;
    let detected: string | undefined;
    let fetched: { partitions: number; sizeBytes: number; seq: number } | undefined;
    let recovered: string | undefined;
    for (const later of events.slice(i + 1)) {
      if (later.kind !== "host-state" || later.host !== host) continue;
      const n = later.note;
      if (n.kind === "checkpoint-rejected" && detected === undefined)
        detected = reasonWithoutFolder(n.why);
      else if (n.kind === "transferred" && detected !== undefined && fetched === undefined)
        fetched = n;
      else if (n.kind === "recovered" && detected !== undefined && recovered === undefined)
        // The state fetched is one checkpoint's; recovery may end at a later one (the replica
        // waits for one made after it restarted): both are named where they differ.
        recovered =
          `at checkpoint ${n.seq}` +
          (fetched === undefined
            ? ""
            : `, ${fetched.partitions} partitions (${fetched.sizeBytes} bytes) fetched${fetched.seq === n.seq ? "" : ` for checkpoint ${fetched.seq}`}`);
    }
    found.push({ host, detected, recovered });
  }
  return found;
}

function corruptedStateText(c: RunSummary["corruptedState"][number]): string {
  return (
    (c.detected === undefined ? "NOT detected" : `detected (${c.detected})`) +
    (c.recovered === undefined ? ", NOT recovered" : `, recovered from peers ${c.recovered}`)
  );
}

export function summarize(input: SummaryInput): RunSummary {
  const { testbed, records, events } = input;
  const r = testbed.rejuvenation;
  const stats = stepStats(records.steps, r.budgets);
  const boardsPerPeriod = new Map<number, Set<string>>();
  for (const p of records.periods) {
    const set = boardsPerPeriod.get(p.period) ?? new Set();
    set.add(p.board);
    boardsPerPeriod.set(p.period, set);
  }
  const periodsCompleted = [...boardsPerPeriod.values()].filter((s) => s.size > 0).length;
  const failsafe: RunSummary["failsafe"] = [];
  for (const e of events) {
    if (e.kind === "board" && e.msg === "FAIL-SAFE")
      failsafe.push({
        board: e.board,
        reason: String(e.fields.reason),
        atWallMs: typeof e.fields.boardTimeMs === "number" ? e.fields.boardTimeMs : e.wallMs,
      });
  }
  const tampered: RunSummary["tampered"] = [];
  for (const e of events) {
    if (e.kind !== "fault" || e.host === undefined) continue;
    const image = /SM code tampered/.test(e.detail)
      ? "SM"
      : /OS image corrupted/.test(e.detail)
        ? "OS"
        : undefined;
    if (image === undefined) continue;
    const board = testbed.boards.find((b) => b.guards === e.host)?.id;
    const after = records.steps.filter((s) => s.board === board && (s.startMs ?? 0) >= e.wallMs);
    const detected = after.some(
      (s) => s.step === `check${image}` && /corrupted/.test(s.detail ?? ""),
    );
    const restored = after.some((s) => s.step === `restore${image}` && s.verdict === "ok");
    tampered.push({
      host: e.host,
      what: `${image} ${image === "SM" ? "code" : "image"}`,
      detected,
      restored,
    });
  }
  const corruptedState = corruptedStates(events);
  const down = hostsDown(events, testbed);
  const maxDown = down.maxBySchedule;
  const maxTriggerLatenessMs = Math.max(0, ...records.triggers.map((t) => t.latenessMs));
  const promises: Promise_[] = [];
  const add = (name: string, held: boolean, detail: string) => {
    if (!input.skip?.includes(name)) promises.push({ name, held, detail });
  };
  add(
    "no fail-safe",
    failsafe.length === 0,
    failsafe.length === 0
      ? "no board entered the fail-safe state"
      : failsafe.map((f) => `${f.board}: ${f.reason}`).join("; "),
  );
  add(
    "periods completed",
    periodsCompleted >= input.periodsWanted,
    `${periodsCompleted} of ${input.periodsWanted} rejuvenation periods completed`,
  );
  add(
    "at most k hosts down at once",
    maxDown <= r.k,
    `at most ${maxDown} down at once for rejuvenation (k = ${r.k})${down.heldByFailsafe.length === 0 ? "" : `; held in reset by the fail-safe state, not counted: ${down.heldByFailsafe.join(", ")}`}`,
  );
  // A step cut short by a fail-safe that came from elsewhere did not break its budget.
  const late = records.steps
    .filter((s) => s.verdict === "over-budget" || s.verdict === "failed")
    .sort((a, b) => stepEndMs(a) - stepEndMs(b));
  add(
    "every step within its budget",
    late.length === 0,
    late.length === 0
      ? `${records.steps.length} steps, all within budget`
      : late.map((s) => `${s.board} ${s.step} period ${s.period}: ${s.verdict}`).join("; "),
  );
  const slow = records.periods.filter((p) => r.tDMs !== undefined && p.endMs - p.startMs > r.tDMs);
  add(
    "every period within T_d",
    slow.length === 0,
    slow.length === 0
      ? `longest period ${formatMs(Math.max(0, ...records.periods.map((p) => p.endMs - p.startMs)))} (T_d = ${formatMs(r.tDMs ?? Number.NaN)})`
      : slow
          .map((p) => `period ${p.period} on ${p.board} took ${formatMs(p.endMs - p.startMs)}`)
          .join("; "),
  );
  for (const t of tampered) {
    add(
      `tampered ${t.what} of ${t.host} detected and restored`,
      t.detected && t.restored,
      `${t.detected ? "detected" : "NOT detected"}, ${t.restored ? "restored" : "NOT restored"}`,
    );
  }
  for (const c of corruptedState) {
    add(
      `corrupted state of ${c.host} detected and recovered from peers`,
      c.detected !== undefined && c.recovered !== undefined,
      corruptedStateText(c),
    );
  }
  const history = input.load === undefined ? undefined : checkHistory(input.load);
  if (input.load !== undefined) {
    add(
      "no client operation failed",
      input.load.failed === 0,
      `${input.load.completed} completed, ${input.load.failed} with no answer in time`,
    );
  }
  if (history !== undefined)
    add("the clients' history is linearizable", history.linearizable === true, history.detail);
  promises.push(...(input.more ?? []));
  return {
    title: input.title,
    periodsWanted: input.periodsWanted,
    periodsCompleted,
    stats,
    load: input.load,
    maxHostsDown: maxDown,
    heldByFailsafe: down.heldByFailsafe,
    failsafe,
    brokenSteps: late,
    tampered,
    corruptedState,
    maxTriggerLatenessMs,
    loadDuringRejuvenation:
      input.load === undefined
        ? undefined
        : loadDuringRejuvenation(
            events,
            input.load,
            new Map(input.testbed.boards.map((b) => [b.guards, b.id])),
          ),
    history,
    promises,
  };
}

/** When a step ended, or would have by its budget (a step that never ended). */
function stepEndMs(s: StepRow): number {
  return s.endMs ?? (s.startMs ?? s.plannedMs) + s.budgetMs;
}

const STEP_LABEL: Record<string, string> = {
  shutdown: "shutdown (T_shutdown)",
  checkOS: "check OS image (T_checkcode)",
  checkSM: "check SM code (T_checkcode)",
  restoreOS: "restore OS image (T_restorecode)",
  restoreSM: "restore SM code (T_restorecode)",
  boot: "boot (T_boot)",
  transfer: "state transfer (T_transfer)",
};

/**
 * What broke first, and why, in one line; undefined when every promise held. A step over its
 * budget (or failed) that came no later than the first fail-safe is the cause; otherwise the
 * first board to fail safe names it (a silent peer, a clock, a late timer); otherwise the
 * first broken promise.
 */
export function firstBroken(s: RunSummary): string | undefined {
  if (s.promises.every((p) => p.held)) return undefined;
  const step = s.brokenSteps[0];
  const failsafe = [...s.failsafe].sort((a, b) => a.atWallMs - b.atWallMs)[0];
  if (step !== undefined && (failsafe === undefined || stepEndMs(step) <= failsafe.atWallMs + 1)) {
    const took =
      step.startMs === undefined || step.endMs === undefined
        ? ""
        : ` after ${formatMs(step.endMs - step.startMs)}`;
    return `${step.board}/${step.host}, period ${step.period}: ${STEP_LABEL[step.step] ?? step.step} ${step.verdict}${took} (budget ${formatMs(step.budgetMs)})${step.detail === undefined ? "" : `: ${step.detail}`}`;
  }
  if (failsafe !== undefined) return `${failsafe.board} failed safe: ${failsafe.reason}`;
  const promise = s.promises.find((p) => !p.held);
  return promise === undefined ? undefined : `${promise.name}: ${promise.detail}`;
}

export function renderSummary(s: RunSummary): string {
  const lines = [`${s.title}`, ""];
  const first = firstBroken(s);
  if (first !== undefined) lines.push(`FIRST BROKEN: ${first}`, "");
  lines.push(renderStepTable(s.stats), "");
  if (s.load !== undefined) {
    const sorted = [...s.load.latenciesMs].sort((a, b) => a - b);
    lines.push(
      `client operations (${s.load.clients} clients, ${s.load.pauseMs} ms pause): ${s.load.completed} completed, ${s.load.failed} unanswered` +
        ` (${(s.load.completed / Math.max(1, s.load.durationMs / 1000)).toFixed(0)} ops/s;` +
        ` latency p50 ${formatMs(percentile(sorted, 50))}, p99 ${formatMs(percentile(sorted, 99))})`,
      `longest client stall: ${formatMs(s.load.longestStallMs)}`,
      `replies the clients refused: ${
        Object.entries(s.load.refused ?? {})
          .map(([why, count]) => `${count} ${why}`)
          .join(", ") || "none"
      }`,
    );
    const split = s.loadDuringRejuvenation;
    if (split !== undefined && split.rejuvenating.ms > 0) {
      const rate = (part: LoadPart) =>
        part.ms > 0 ? `${((part.completed * 1000) / part.ms).toFixed(0)} ops/s` : "-";
      const { reset, booting, recovering } = split.phases;
      // The ratio of the two, which a machine's speed moves less than either (runs compare by it).
      const perMs = (part: LoadPart) => part.completed / part.ms;
      const ratio =
        split.otherwise.ms > 0 && split.otherwise.completed > 0
          ? ` (${(perMs(split.rejuvenating) / perMs(split.otherwise)).toFixed(2)} of the rest's)`
          : "";
      lines.push(
        `client ops/s while a host was being rejuvenated (held in reset until its replica recovered): ${rate(split.rejuvenating)} over ${formatMs(split.rejuvenating.ms)}${ratio}; the rest of the run: ${rate(split.otherwise)} over ${formatMs(split.otherwise.ms)}`,
        `  by phase: held in reset ${rate(reset)} over ${formatMs(reset.ms)}; booting ${rate(booting)} over ${formatMs(booting.ms)}; recovering its state ${rate(recovering)} over ${formatMs(recovering.ms)}`,
      );
    }
    if (s.history !== undefined) lines.push(`history: ${s.history.detail}`);
  }
  for (const t of s.tampered)
    lines.push(
      `tampered ${t.what} of ${t.host}: ${t.detected ? "detected" : "NOT detected"}, ${t.restored ? "restored" : "NOT restored"}`,
    );
  for (const c of s.corruptedState)
    lines.push(`corrupted state of ${c.host}: ${corruptedStateText(c)}`);
  lines.push(
    `most hosts down at once for rejuvenation: ${s.maxHostsDown}`,
    ...(s.heldByFailsafe.length === 0
      ? []
      : [`held in reset by the fail-safe state: ${s.heldByFailsafe.join(", ")}`]),
    `latest period trigger: ${s.maxTriggerLatenessMs.toFixed(1)} ms late`,
    `fail-safe: ${
      s.failsafe.length === 0
        ? "none"
        : [...s.failsafe]
            .sort((a, b) => a.atWallMs - b.atWallMs)
            .map((f) => `${f.board} (${f.reason})`)
            .join("; ")
    }`,
    "",
    "promises:",
    ...s.promises.map((p) => `  ${p.held ? "held  " : "BROKEN"}  ${p.name}: ${p.detail}`),
  );
  return `${lines.join("\n")}\n`;
}

/** The planner's verdict on the testbed with T_localexec replaced by the largest one measured. */
export function measuredPlanText(testbed: Testbed, stats: readonly StepStats[]): string {
  const localexec = stats.find((s) => s.name === "T_localexec");
  if (localexec === undefined || localexec.count === 0)
    return "no complete rejuvenation was measured: no plan from measurements\n";
  const { budgets: _budgets, ...input } = planInputFromTestbed(testbed);
  const measured = plan({ ...input, tLocalexecMs: Math.ceil(localexec.maxMs) });
  return renderPlanText(
    measured,
    `${testbed.name} with the measured T_localexec = ${Math.ceil(localexec.maxMs)} ms (largest of ${localexec.count} rejuvenations)`,
  );
}

export function writeReportFolder(
  dir: string,
  input: SummaryInput,
  summary: RunSummary,
  extra: Record<string, string> = {},
): string[] {
  mkdirSync(dir, { recursive: true });
  const t = input.testbed;
  const boardOf = new Map(t.boards.map((b) => [b.guards, b.id]));
  const files: Record<string, string> = {
    "timings.csv": stepsCsv(input.records.steps),
    "events.jsonl": `${input.events.map((e) => JSON.stringify(e)).join("\n")}\n`,
    "timeline.svg": renderTimelineSvg({
      title: `${t.name}: rejuvenations as measured (paper Figure 3)`,
      groups: t.rejuvenation.groups,
      boardOf,
      steps: input.records.steps,
      triggers: input.records.triggers,
      periods: input.records.periods,
      tPMs: t.rejuvenation.tPMs ?? 0,
      tDMs: t.rejuvenation.tDMs ?? 0,
      tLocalexecMs: summary.stats.find((s) => s.name === "T_localexec")?.budgetMs ?? 0,
    }),
    "plan.txt": measuredPlanText(t, summary.stats),
    "summary.txt": renderSummary(summary),
    ...(input.load === undefined ? {} : { "history.jsonl": historyText(input.load) }),
    ...extra,
  };
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text);
  return Object.keys(files).map((name) => path.join(dir, name));
}
