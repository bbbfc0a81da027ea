/**
 * A timing campaign on a running testbed, real or simulated: the boards are
 * asked for their status (signed with the operator's key over the network, or
 * over their local sockets) four times a second, and every completed rejuvenation
 * they report is collected, with its steps' instants on the board's clock,
 * until every board has completed N periods that began after the campaign
 * started (or a board is in fail-safe, or the time is up).
 */
import type { KeyObject } from "node:crypto";
import path from "node:path";
import type { Testbed } from "@smw/wiring";
import { askBoardStatus } from "@smw/wormhole-board/cli";
import { deriveBounds, renderBoundsYaml } from "../report/derived-bounds.js";
import { type RunSummary, summarize, writeReportFolder } from "../report/run-report.js";
import type { BoardRecords, StepRow } from "../report/step-records.js";
import { RigEventStream } from "../rig/rig-events.js";

/** Boards that all stop answering for this long are gone (the testbed was taken down). */
const GONE_MS = 15_000;

export interface ObserveOptions {
  testbed: Testbed;
  operatorKey?: KeyObject;
  cycles: number;
  marginPercent: number;
  outDir: string;
  say: (line: string) => void;
  pollMs?: number;
}

export interface ObserveResult {
  summary: RunSummary;
  files: string[];
  boundsText: string;
}

export async function observeTestbed(options: ObserveOptions): Promise<ObserveResult> {
  const t = options.testbed;
  const events = new RigEventStream();
  events.on((e) => {
    if (e.kind === "rig") options.say(`[${(e.atMs / 1000).toFixed(1).padStart(6)} s] ${e.detail}`);
  });
  const tPMs = t.rejuvenation.tPMs ?? 0;
  const spacingMs = tPMs - t.timeliness.procMaxMs;
  const deadline = Date.now() + (options.cycles + 1) * tPMs + (t.rejuvenation.tDMs ?? 0) + 60_000;
  /** Per board: the first period that began after the campaign started, once known. */
  const firstPeriod = new Map<string, number>();
  const collected = new Map<string, StepRow[]>();
  const schedules = new Map<string, number>();
  const reachable = new Set<string>();
  let failsafe: string | undefined;
  /** When the campaign started, on the wall clock the boards' clocks keep to. */
  const startedAtMs = Date.now();
  events.emit({
    kind: "rig",
    detail: `observing ${t.boards.length} boards of ${t.name} until each completes ${options.cycles} period(s)`,
  });
  const done = () =>
    t.boards.every((b) => {
      const first = firstPeriod.get(b.id);
      if (first === undefined) return false;
      const periods = new Set((collected.get(b.id) ?? []).map((r) => r.period));
      return [...Array(options.cycles).keys()].every((i) => periods.has(first + i));
    });
  let lastHeardMs = Date.now();
  let everHeard = false;
  // After a fail-safe, one more whole sweep collects the runs every board cut short.
  let sweepsSinceFailsafe = 0;
  while (Date.now() < deadline && !done() && sweepsSinceFailsafe < 2) {
    if (reachable.size > 0) {
      lastHeardMs = Date.now();
      everHeard = true;
    } else if (everHeard && Date.now() - lastHeardMs > GONE_MS) {
      events.emit({
        kind: "rig",
        detail: `no board has answered for ${GONE_MS / 1000} s: the testbed is gone`,
      });
      break;
    }
    for (const board of t.boards) {
      let status: Awaited<ReturnType<typeof askBoardStatus>>;
      try {
        status = await askBoardStatus(board, options.operatorKey);
      } catch (error) {
        if (reachable.delete(board.id))
          events.emit({ kind: "rig", detail: `${board.id}: ${(error as Error).message}` });
        continue;
      }
      if (!reachable.has(board.id)) {
        reachable.add(board.id);
        events.emit({ kind: "rig", detail: `${board.id}: ${status.phase}` });
      }
      if (status.failsafe !== undefined) {
        // The rest of this sweep still runs: each board's run cut short is worth keeping.
        if (failsafe === undefined) {
          failsafe = `${board.id} is in fail-safe: ${status.failsafe.reason}`;
          events.emit({
            kind: "board",
            board: board.id,
            msg: "FAIL-SAFE",
            fields: { reason: status.failsafe.reason },
          });
        }
      } else if (status.phase !== "running" || status.schedule === undefined) continue;
      else schedules.set(board.id, status.schedule);
      // The first period that began after the campaign started counts first: the one last
      // reported if it did (a sweep slowed down by a loaded machine may first see a board once
      // that run has ended, or been cut short by a fail-safe), else the one under way, reported
      // whole when it ends, or the next.
      if (!firstPeriod.has(board.id)) {
        const reported = status.lastSteps[0];
        if (reported?.startMs !== undefined && reported.startMs >= startedAtMs)
          firstPeriod.set(board.id, reported.period);
        else if (status.failsafe !== undefined) continue;
        else {
          const current = status.period ?? 0;
          firstPeriod.set(
            board.id,
            reported !== undefined && reported.period >= current ? reported.period + 1 : current,
          );
        }
      }
      const last = status.lastSteps;
      const period = last[0]?.period;
      const first = firstPeriod.get(board.id) as number;
      if (period === undefined || period < first) continue;
      const rows = collected.get(board.id) ?? [];
      if (rows.some((r) => r.period === period)) continue;
      for (const s of last) {
        rows.push({
          board: board.id,
          host: board.guards,
          period: s.period,
          step: s.step,
          plannedMs: s.plannedMs,
          startMs: s.startMs,
          endMs: s.endMs,
          budgetMs: s.budgetMs,
          verdict: s.verdict,
          detail: undefined,
        });
      }
      collected.set(board.id, rows);
      const took = last.reduce((sum, s) => sum + (s.tookMs ?? 0), 0);
      const broke = last.find((s) => s.verdict !== "ok" && s.verdict !== "skipped");
      events.emit({
        kind: "rig",
        detail:
          broke === undefined
            ? `${board.id}/${board.guards}: period ${period} rejuvenation measured, ${Math.round(took)} ms`
            : `${board.id}/${board.guards}: period ${period} rejuvenation cut short at ${broke.step} (${broke.verdict}), ${Math.round(took)} ms`,
      });
    }
    if (failsafe !== undefined) sweepsSinceFailsafe += 1;
    await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 250));
  }
  if (failsafe !== undefined) events.emit({ kind: "rig", detail: failsafe });
  else if (!done())
    events.emit({ kind: "rig", detail: "the time is up before every board completed its periods" });
  const steps = [...collected.values()].flat();
  const records: BoardRecords = { steps, triggers: [], periods: [], unreadable: [] };
  // Triggers from each board's schedule; a period lasts from its trigger to its last transfer.
  const periods = [...new Set(steps.map((s) => s.period))].sort((a, b) => a - b);
  for (const board of t.boards) {
    const schedule = schedules.get(board.id);
    if (schedule === undefined) continue;
    for (const p of periods) {
      const plannedMs = schedule + p * spacingMs;
      records.triggers.push({
        board: board.id,
        period: p,
        plannedMs,
        actualMs: plannedMs,
        latenessMs: 0,
      });
    }
  }
  const complete = periods.filter((p) =>
    t.boards.every((b) => (collected.get(b.id) ?? []).some((r) => r.period === p)),
  );
  // Observed from outside: a period counts when every board reported it.
  for (const p of complete) {
    const ends = steps
      .filter((s) => s.period === p && s.endMs !== undefined)
      .map((s) => s.endMs as number);
    const start = records.triggers.find((x) => x.period === p)?.plannedMs;
    if (start !== undefined && ends.length > 0)
      records.periods.push({ board: "all", period: p, startMs: start, endMs: Math.max(...ends) });
  }
  const input = {
    title: `timing campaign on ${t.name}: ${options.cycles} period(s) observed`,
    testbed: t,
    records,
    events: events.all,
    load: undefined,
    periodsWanted: options.cycles,
  };
  const summary = summarize(input);
  const bounds = deriveBounds(summary.stats, options.marginPercent);
  const boundsText = renderBoundsYaml(bounds, options.marginPercent, complete.length);
  const files = writeReportFolder(options.outDir, input, summary, { "bounds.yaml": boundsText });
  return { summary, files: files.map((f) => path.resolve(f)), boundsText };
}
