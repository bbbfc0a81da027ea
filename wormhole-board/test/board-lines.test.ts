import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Board, Line } from "@smw/wiring";
import {
  acquireLineLock,
  BoardLines,
  LineError,
  LineReadBackError,
  SimulatedLines,
} from "@smw/wormhole-board";
import { afterEach, describe, expect, it } from "vitest";

const line = (
  role: Line["role"],
  offset: number,
  activeLow: boolean,
  initial: Line["initial"],
  safe: Line["safe"],
): Line => ({
  role,
  chip: "sim-b1",
  offset,
  activeLow,
  initial,
  safe,
});

const board = {
  id: "b1",
  guards: "h1",
  lines: [
    line("reset", 0, true, "inactive", "active"),
    line("power", 1, false, "active", "active"),
    line("write-protect", 2, false, "active", "active"),
    line("alarm", 3, false, "inactive", "active"),
  ],
} as unknown as Board;

describe("board lines on the simulated backend", () => {
  it("claims every line at its initial level, with active-low wiring inverted on the wire", () => {
    const sim = new SimulatedLines();
    const lines = BoardLines.claim(board, sim);
    expect(sim.isHigh("sim-b1", 0)).toBe(true); // reset inactive, active-low: high
    expect(sim.isHigh("sim-b1", 1)).toBe(true);
    expect(sim.isHigh("sim-b1", 2)).toBe(true);
    expect(sim.isHigh("sim-b1", 3)).toBe(false);
    expect(lines.get("reset")).toBe("inactive");
    expect(sim.history.filter((e) => e.kind === "claim")).toHaveLength(4);
    lines.releaseAll();
  });

  it("can start at the safe levels (a latched fail-safe holds the host in reset from the first instant)", () => {
    const sim = new SimulatedLines();
    const lines = BoardLines.claim(board, sim, { levels: "safe" });
    expect(lines.get("reset")).toBe("active");
    expect(sim.isHigh("sim-b1", 0)).toBe(false);
    // Exactly one change per line: no glitch through another level.
    expect(sim.history.map((e) => e.level)).toEqual(["active", "active", "active", "active"]);
    lines.releaseAll();
  });

  it("reads back every write and refuses a line that does not follow", () => {
    const sim = new SimulatedLines();
    const lines = BoardLines.claim(board, sim);
    lines.set("reset", "active");
    expect(sim.isHigh("sim-b1", 0)).toBe(false);
    sim.stick("sim-b1", 2, true);
    expect(() => lines.set("write-protect", "inactive")).toThrow(LineReadBackError);
    expect(() => lines.set("write-protect", "inactive")).toThrow(
      "was set inactive but reads back active",
    );
    lines.releaseAll();
  });

  it("drives every line to its safe level on release, once, and refuses use afterwards", () => {
    const sim = new SimulatedLines();
    const lines = BoardLines.claim(board, sim);
    lines.set("alarm", "inactive");
    expect(lines.releaseAll()).toEqual([]);
    expect(sim.isHigh("sim-b1", 0)).toBe(false); // reset held
    expect(sim.isHigh("sim-b1", 3)).toBe(true); // alarm raised
    expect(sim.history.filter((e) => e.kind === "release").map((e) => [e.role, e.level])).toEqual([
      ["reset", "active"],
      ["power", "active"],
      ["write-protect", "active"],
      ["alarm", "active"],
    ]);
    lines.releaseAll();
    expect(sim.history.filter((e) => e.kind === "release")).toHaveLength(4);
    expect(() => lines.set("reset", "inactive")).toThrow(LineError);
  });

  it("claims only the roles asked for, and refuses a pin claimed twice", () => {
    const sim = new SimulatedLines();
    const wp = BoardLines.claim(board, sim, { roles: ["write-protect"] });
    expect(wp.roles()).toEqual(["write-protect"]);
    expect(sim.isClaimed("sim-b1", 0)).toBe(false);
    expect(() => BoardLines.claim(board, sim)).toThrow(
      "is already claimed as the write-protect line",
    );
    // The failed claim released what it had claimed before failing.
    expect(sim.isClaimed("sim-b1", 0)).toBe(false);
    wp.releaseAll();
  });
});

describe("the line lock", () => {
  let dir = "";
  afterEach(() => {
    if (dir !== "") rmSync(dir, { recursive: true, force: true });
  });

  it("refuses a second owner while the first lives, and takes over a lock left by a dead process", () => {
    dir = mkdtempSync(path.join(tmpdir(), "smw-lock-"));
    const lockPath = path.join(dir, "lines.lock");
    // PID 1 always runs: a live owner.
    writeFileSync(lockPath, "1\n");
    expect(() => acquireLineLock(lockPath)).toThrow("the lines are owned by process 1");
    // A PID that cannot exist: a stale lock.
    writeFileSync(lockPath, "4194305\n");
    const lock = acquireLineLock(lockPath);
    expect(readFileSync(lockPath, "utf8").trim()).toBe(String(process.pid));
    lock.release();
    expect(() => readFileSync(lockPath)).toThrow();
  });
});

describe("the safe exit with a stop first (the board daemon's, on SIGTERM)", () => {
  const child = path.join(
    path.dirname(fileURLToPath(import.meta.url)),
    "fixtures/safe-exit-child.mjs",
  );

  /** Runs the child, sends it `signals` (the second 100 ms after the first): what it said, when. */
  async function run(stop: string, graceMs: number, signals: number) {
    const proc = spawn(process.execPath, [child, stop, String(graceMs)], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    const said: Array<{ atMs: number; what: string }> = [];
    let ready: () => void = () => {};
    const isReady = new Promise<void>((resolve) => {
      ready = resolve;
    });
    let buffered = "";
    proc.stdout.on("data", (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split("\n");
      buffered = lines.pop() ?? "";
      for (const l of lines) {
        const [at, what] = l.split(" ");
        said.push({ atMs: Number(at), what: what ?? "" });
        if (what === "ready") ready();
      }
    });
    const exited = new Promise<number | string>((resolve) =>
      proc.on("exit", (code, signal) => resolve(code ?? (signal as string))),
    );
    try {
      await isReady;
      proc.kill("SIGTERM");
      if (signals > 1) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        proc.kill("SIGTERM");
      }
      const code = await exited;
      const stopping = said.findIndex((s) => s.what === "stopping");
      const held = said.slice(stopping).find((s) => s.what === "reset=active");
      return { code, stopping: said[stopping]?.atMs, held: held?.atMs };
    } finally {
      if (proc.exitCode === null) proc.kill("SIGKILL");
    }
  }

  it("holds the host only once the stop has ended, then exits as the signal would", async () => {
    const r = await run("400", 5_000, 1);
    expect(r.code).toBe(143);
    expect(r.stopping).toBeDefined();
    expect(r.held).toBeGreaterThanOrEqual((r.stopping as number) + 390);
  });

  it("a stop that never ends: held once the grace is over", async () => {
    const r = await run("never", 500, 1);
    expect(r.code).toBe(143);
    expect(r.held).toBeGreaterThanOrEqual((r.stopping as number) + 490);
  });

  it("a second signal holds the host at once", async () => {
    const r = await run("5000", 10_000, 2);
    expect(r.code).toBe(143);
    expect(r.held).toBeLessThan((r.stopping as number) + 2_000);
  });
});
