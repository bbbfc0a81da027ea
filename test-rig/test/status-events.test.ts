/** Two successive statuses of a board, as the events the live page draws. */
import type { BoardStatus } from "@smw/wormhole-board";
import { describe, expect, it } from "vitest";
import { statusEvents, statusWhenGone } from "../src/live/status-events.js";

const base: BoardStatus = {
  board: "b2",
  host: "h2",
  phase: "joining",
  updatedAtMs: 1_000,
  lastSteps: [],
  link: {} as BoardStatus["link"],
  maxTimerLatenessMs: 0,
};
const msgs = (before: BoardStatus | undefined, now: BoardStatus) =>
  statusEvents(before, now).map((e) => (e.kind === "board" ? e.msg : e.kind));

describe("a board's statuses as events", () => {
  it("says each change once: joined, the period, a step, a rejuvenation, the fail-safe state, stopped", () => {
    expect(msgs(undefined, base)).toEqual([]);
    const running: BoardStatus = { ...base, phase: "running", period: 3, schedule: 1 };
    expect(msgs(base, running)).toEqual(["period triggered", "joined its peers"]);
    expect(msgs(running, { ...running, updatedAtMs: 2_000 })).toEqual([]);
    const shutdown: BoardStatus = {
      ...running,
      group: 1,
      step: { name: "shutdown", startedAtMs: 5_000 },
    };
    expect(statusEvents(running, shutdown)).toEqual([
      { kind: "board", board: "b2", msg: "step started", fields: { step: "shutdown", period: 3 } },
    ]);
    expect(msgs(shutdown, { ...shutdown, updatedAtMs: 5_100 })).toEqual([]);
    const boot: BoardStatus = { ...shutdown, step: { name: "boot", startedAtMs: 5_300 } };
    expect(msgs(shutdown, boot)).toEqual(["step started"]);
    const step = (name: "shutdown" | "boot", verdict: "ok" | "failed") => ({
      period: 3,
      step: name,
      plannedMs: 5_000,
      startMs: 5_000,
      endMs: 6_000,
      budgetMs: 1_000,
      verdict,
      tookMs: 1_000,
    });
    const done: BoardStatus = {
      ...running,
      lastSteps: [step("shutdown", "ok"), step("boot", "ok")],
    };
    const rejuvenated = statusEvents(boot, done);
    expect(rejuvenated).toEqual([
      {
        kind: "board",
        board: "b2",
        msg: "host rejuvenated",
        fields: {
          period: 3,
          steps: [
            { step: "shutdown", tookMs: 1_000, verdict: "ok" },
            { step: "boot", tookMs: 1_000, verdict: "ok" },
          ],
        },
      },
    ]);
    expect(msgs(done, { ...done, period: 4 })).toEqual(["period triggered"]);
    const failsafe: BoardStatus = {
      ...done,
      phase: "failsafe",
      period: 4,
      lastSteps: [{ ...step("shutdown", "failed"), period: 4 }],
      failsafe: { sinceMs: 9_000, reason: "step shutdown of period 4 failed", origin: "b5" },
    };
    expect(statusEvents({ ...done, period: 4 }, failsafe)).toEqual([
      expect.objectContaining({ msg: "rejuvenation cut short by fail-safe" }),
      {
        kind: "board",
        board: "b2",
        msg: "FAIL-SAFE",
        fields: { reason: "step shutdown of period 4 failed", origin: "b5" },
      },
    ]);
    expect(msgs(failsafe, { ...failsafe, updatedAtMs: 10_000 })).toEqual([]);
    expect(msgs(running, { ...running, phase: "stopped" })).toEqual(["stopped"]);
    // A stop under way: said once, with when the running host is held.
    const stopping: BoardStatus = {
      ...running,
      keyLease: { renewing: false, lapsesAtMs: 12_000 },
      stopping: { sinceMs: 11_000 },
    };
    expect(statusEvents(running, stopping)).toEqual([
      { kind: "board", board: "b2", msg: "stopping", fields: { hostHeldAtMs: 12_000 } },
    ]);
    expect(msgs(stopping, { ...stopping, updatedAtMs: 11_500 })).toEqual([]);
    expect(msgs(stopping, { ...running, phase: "stopped" })).toEqual(["stopped"]);
    // A stopping board that stops answering has stopped (its daemon closed its sockets);
    // one that was not stopping could be anything.
    const gone = statusWhenGone(stopping);
    expect(gone?.phase).toBe("stopped");
    expect(gone?.stopping).toBeUndefined();
    expect(msgs(stopping, gone as BoardStatus)).toEqual(["stopped"]);
    expect(statusWhenGone(running)).toBeUndefined();
    expect(statusWhenGone(undefined)).toBeUndefined();
    // Started again: joining its peers once more, then running.
    expect(msgs({ ...running, phase: "stopped" }, base)).toEqual(["joining"]);
  });

  it("a board first seen mid-run: its period, its step, its last rejuvenation", () => {
    const now: BoardStatus = {
      ...base,
      phase: "running",
      period: 7,
      step: { name: "transfer", startedAtMs: 1 },
      lastSteps: [
        {
          period: 6,
          step: "boot",
          plannedMs: 0,
          startMs: 0,
          endMs: 1,
          budgetMs: 9,
          verdict: "ok",
          tookMs: 1,
        },
      ],
    };
    expect(msgs(undefined, now)).toEqual([
      "period triggered",
      "joined its peers",
      "host rejuvenated",
      "step started",
    ]);
  });
});
