import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { ReplayGuard } from "@smw/wiring";
import { BoardStateFiles } from "@smw/wormhole-board";
import { afterEach, describe, expect, it } from "vitest";

let dir: string | undefined;
afterEach(() => {
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});
const stateDir = () => {
  dir = mkdtempSync(path.join(tmpdir(), "smw-state-"));
  return dir;
};

describe("a board's boot epoch", () => {
  const nowMs = 1_796_000_000_000;

  it("goes up at every start, at least to the wall clock's seconds", () => {
    const state = new BoardStateFiles(stateDir());
    expect(state.nextEpoch(nowMs)).toBe(1_796_000_000);
    // Two starts in one second: one more than the last.
    expect(state.nextEpoch(nowMs)).toBe(1_796_000_001);
    expect(state.nextEpoch(nowMs + 60_000)).toBe(1_796_000_060);
    // A clock set back: still one more than the last.
    expect(state.nextEpoch(nowMs - 3_600_000)).toBe(1_796_000_061);
    expect(state.epochProblem).toBeUndefined();
  });

  it("after a damaged epoch file, still above every earlier boot's, and says what was wrong", () => {
    const folder = stateDir();
    const state = new BoardStateFiles(folder);
    let last = 0;
    for (let boot = 0; boot < 40; boot++) last = state.nextEpoch(nowMs + boot * 1_000);
    // A peer that heard the 40th boot refuses anything not above it.
    const peer = new ReplayGuard(64, new Map([["b1", last]]));
    writeFileSync(path.join(folder, "epoch"), "\u0000\u0000\n");
    const next = state.nextEpoch(nowMs + 40_000);
    expect(next).toBeGreaterThan(last);
    expect(state.epochProblem).toBe(
      `${path.join(folder, "epoch")} holds "\\u0000\\u0000", not a boot epoch`,
    );
    expect(peer.accept("b1", next, 1)).toBe(true);
    // Read back whole at the next start.
    expect(state.nextEpoch(nowMs + 40_000)).toBe(next + 1);
    expect(state.epochProblem).toBeUndefined();
  });
});
