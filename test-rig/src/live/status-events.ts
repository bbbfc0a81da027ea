/**
 * Running boards seen as the live page sees a rig: two successive statuses of one board (as
 * `smw status` gets them, signed over the network or from its local socket) turned into the
 * events that happened in between: joined, a period triggered, a step started, a rejuvenation
 * done or cut short, the fail-safe state, the board stopped. A pure function: no I/O, no clock.
 */
import type { BoardStatus } from "@smw/wormhole-board";
import type { RigEvent } from "../rig/rig-events.js";

export function statusEvents(before: BoardStatus | undefined, now: BoardStatus): RigEvent[] {
  const board = now.board;
  const out: RigEvent[] = [];
  const say = (msg: string, fields: Record<string, unknown> = {}) =>
    out.push({ kind: "board", board, msg, fields });
  if (before === undefined || before.period !== now.period) {
    if (now.period !== undefined) say("period triggered", { period: now.period });
  }
  if (now.phase !== before?.phase) {
    if (now.phase === "running") say("joined its peers");
    else if (now.phase === "stopped") say("stopped");
    // Started again (after a stop, or a clear): agreeing on a schedule once more.
    else if (now.phase === "joining" && before !== undefined) say("joining");
  }
  if (now.stopping !== undefined && before?.stopping === undefined)
    say("stopping", {
      ...(now.keyLease?.lapsesAtMs === undefined ? {} : { hostHeldAtMs: now.keyLease.lapsesAtMs }),
    });
  const lastPeriod = now.lastSteps[0]?.period;
  const lastEnd = now.lastSteps[now.lastSteps.length - 1]?.endMs;
  if (
    lastPeriod !== undefined &&
    (before === undefined ||
      before.lastSteps[0]?.period !== lastPeriod ||
      before.lastSteps[before.lastSteps.length - 1]?.endMs !== lastEnd)
  ) {
    const cut = now.lastSteps.some((s) => s.verdict !== "ok" && s.verdict !== "skipped");
    say(
      cut && now.failsafe !== undefined
        ? "rejuvenation cut short by fail-safe"
        : "host rejuvenated",
      {
        period: lastPeriod,
        steps: now.lastSteps.map((s) => ({ step: s.step, tookMs: s.tookMs, verdict: s.verdict })),
      },
    );
  }
  if (
    now.step !== undefined &&
    (before?.step?.name !== now.step.name || before.step.startedAtMs !== now.step.startedAtMs)
  )
    say("step started", { step: now.step.name, period: now.period });
  if (now.failsafe !== undefined && before?.failsafe === undefined)
    say("FAIL-SAFE", { reason: now.failsafe.reason, origin: now.failsafe.origin });
  return out;
}

/**
 * What a board that no longer answers is taken to be: one that was stopping has stopped (the
 * daemon closes its sockets as its stop ends); of any other nothing is known, and undefined.
 */
export function statusWhenGone(before: BoardStatus | undefined): BoardStatus | undefined {
  if (before?.stopping === undefined) return undefined;
  const { stopping: _over, ...rest } = before;
  return { ...rest, phase: "stopped" };
}
