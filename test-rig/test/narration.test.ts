/**
 * The rig's narration says a host booted only after its board's code check, though the board's
 * log line and its reset line reach the rig by different channels and may come in either order.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { BOOTED_HOLD_MS, Narration } from "../src/rig/narrator.js";
import type { RigEvent, StampedEvent } from "../src/rig/rig-events.js";

const at = (event: RigEvent, atMs: number): StampedEvent =>
  ({ ...event, atMs, wallMs: 1_800_000_000_000 + atMs }) as StampedEvent;
const step = (board: string, name: string, tookMs: number, corrupted = false) =>
  at(
    {
      kind: "board",
      board,
      msg: "step finished",
      fields: { step: name, tookMs, ...(corrupted ? { corrupted: true, detail: "1 chunk" } : {}) },
    },
    15_000,
  );
const booted = (host: string) =>
  at({ kind: "host-up", host, detail: "booted the host agent" }, 15_000);

describe("the rig's narration", () => {
  let said: string[];
  let narration: Narration;
  beforeEach(() => {
    vi.useFakeTimers();
    said = [];
    narration = new Narration(
      { hostOf: (board) => board.replace("b", "h"), firstBoard: "b1" },
      (line) => said.push(line),
    );
  });
  afterEach(() => vi.useRealTimers());

  it("says the board's code check before the boot it allowed, whichever reached the rig first", () => {
    narration.tell(step("b4", "checkOS", 12));
    narration.tell(booted("h4"));
    narration.tell({ ...step("b4", "checkSM", 3), atMs: 15_100 });
    // The boot bears the check's time: it came after it, though the rig heard of it first.
    expect(said).toEqual([
      "[  15.0 s] b4/h4: check OS image 12 ms",
      "[  15.1 s] b4/h4: check SM code 3 ms",
      "[  15.1 s] h4: booted the host agent",
    ]);
  });

  it("after a restore, waits for the restore, not the check that found the damage", () => {
    narration.tell(booted("h3"));
    narration.tell(step("b3", "checkSM", 4, true));
    expect(said).toHaveLength(1);
    narration.tell(step("b3", "restoreSM", 8));
    expect(said[0]).toMatch(/b3\/h3: check SM code: CORRUPTED/);
    expect(said[1]).toMatch(/b3\/h3: restore SM code: .*8 ms/);
    expect(said[2]).toBe("[  15.0 s] h3: booted the host agent");
  });

  it("says a boot with no check behind it (the first start) after a short wait, and in order with the host's other news", () => {
    narration.tell(booted("h1"));
    narration.tell(step("b2", "checkSM", 1));
    expect(said).toEqual(["[  15.0 s] b2/h2: check SM code 1 ms"]);
    vi.advanceTimersByTime(BOOTED_HOLD_MS);
    expect(said[1]).toBe("[  15.0 s] h1: booted the host agent");

    narration.tell(booted("h5"));
    narration.tell(at({ kind: "host-down", host: "h5", detail: "held in reset" }, 15_100));
    expect(said.slice(2)).toEqual([
      "[  15.0 s] h5: booted the host agent",
      "[  15.1 s] h5: held in reset",
    ]);

    narration.tell(booted("h6"));
    narration.flush();
    expect(said.at(-1)).toBe("[  15.0 s] h6: booted the host agent");
  });
});
