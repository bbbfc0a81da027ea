/**
 * The wormhole through start-up, restarts, clears and lost frames, simulated from seeds: boards
 * join as the daemon does, and the fail-safe state reaches every board whatever frames are lost.
 */
import { runClusterSim, type SimConfig, type SimResult } from "@smw/wormhole-board";
import { describe, expect, it } from "vitest";
import { base, boards } from "./sim-config.js";

const SEEDS = Number(process.env.SMW_SIM_SEEDS ?? 20);
const seeds = Array.from({ length: SEEDS }, (_, i) => i + 1);
const replay = (seed: number) => `seed ${seed}: replay with runClusterSim({ ..., seed: ${seed} })`;

/** The periods completed by b1 that began after `afterMs`. */
const periodsAfter = (result: SimResult, afterMs: number) =>
  result.periods.filter((p) => p.startMs > afterMs).length;

describe("start-up: boards join as the daemon does", () => {
  it("boards started up to three seconds apart agree on one schedule and run it", () => {
    for (const seed of seeds) {
      const startMs = Object.fromEntries(
        boards.map((b, i) => [b, ((seed * 7919 * (i + 1)) % 3_000) + 1]),
      );
      const result = runClusterSim({ ...base, seed, join: { startMs } });
      expect(result.failsafe, replay(seed)).toEqual({});
      const schedules = new Set(
        boards.flatMap((b) => (result.joins[b] ?? []).map((j) => j.schedule)),
      );
      expect(schedules.size, replay(seed)).toBe(1);
      for (const b of boards) expect(result.joins[b]?.[0]?.firstIndex, replay(seed)).toBe(0);
      expect(result.periodsCompleted, replay(seed)).toBe(base.periods);
      expect(result.invariantViolations, replay(seed)).toEqual([]);
    }
  });

  it("hosts that take a minute to boot: period 0 begins once every first boot can be over, and runs", () => {
    // A Raspberry Pi lab's budgets (wiring/examples/pi-lab.yaml): image checks that take longer
    // than T_shutdown, so a step waiting behind a board's start-up check would miss its budget.
    const pi: SimConfig = {
      ...base,
      budgets: {
        tShutdownMs: 10_000,
        tCheckcodeMs: 30_000,
        tRestorecodeMs: 90_000,
        tBootMs: 60_000,
        tTransferMs: 120_000,
      },
      tPMs: 4 * 3_600_000,
      tDMs: 3_000_000,
      // Heartbeats sparser than the lab's 200 ms: the same protocol, fewer events to simulate.
      heartbeatMs: 1_000,
      silenceBoundMs: 3_000,
      keyLeaseMs: 1_000,
      periods: 1,
    };
    const firstBootMs = 3_000 + 1_000 + 2 * 30_000 + 2 * 60_000;
    let shortFailedSafe = 0;
    for (const seed of seeds.slice(0, 3)) {
      const startMs = Object.fromEntries(
        boards.map((b, i) => [b, ((seed * 7919 * (i + 1)) % 3_000) + 1]),
      );
      const result = runClusterSim({ ...pi, seed, join: { startMs } });
      expect(result.failsafe, replay(seed)).toEqual({});
      expect(result.periodsCompleted, replay(seed)).toBe(1);
      for (const b of boards) {
        const join = result.joins[b]?.[0];
        expect(join?.firstIndex, replay(seed)).toBe(0);
        expect(join?.schedule, replay(seed)).toBeGreaterThanOrEqual(
          (startMs[b] as number) + firstBootMs,
        );
      }
      // The lead of four silence bounds alone: where the first group's board checks its images
      // for longer than that and T_shutdown, its first step misses its budget.
      const short = runClusterSim({ ...pi, seed, join: { startMs, leadMs: 4 * 3_000 } });
      const reason = Object.values(short.failsafe)[0]?.reason;
      if (reason !== undefined) {
        expect(reason, replay(seed)).toBe(
          "step shutdown of period 0 is over its budget of 10000 ms",
        );
        shortFailedSafe++;
      }
    }
    expect(shortFailedSafe).toBeGreaterThan(0);
  });

  it("a board restarted with its fail-safe latched proposes nothing: the others fail safe at their join deadline", () => {
    const result = runClusterSim({
      ...base,
      join: { deadlineMs: 20_000 },
      restoredFailsafe: { b4: { sinceMs: 0, reason: "drill", origin: "b4" } },
    });
    for (const b of boards) expect(result.joins[b]).toEqual([]);
    expect(result.recoveryOrder).toEqual([]);
    for (const b of boards.filter((x) => x !== "b4")) {
      expect(result.failsafe[b]?.reason).toBe(
        "joining did not complete within 20000 ms: b4 in fail-safe",
      );
      expect(result.failsafe[b]?.atMs).toBeLessThanOrEqual(20_000 + 3);
    }
  });

  it("a fail-safe triggered while others still join reaches them at once, not at their deadline", () => {
    for (const seed of seeds.slice(0, 10)) {
      // b3's clock runs 400 ms ahead: it commits first, runs, and finds the clocks off.
      const result = runClusterSim({
        ...base,
        seed,
        join: {},
        faults: [{ kind: "clockSkew", board: "b3", skewMs: 400 }],
      });
      for (const b of boards) {
        expect(result.failsafe[b]?.reason, replay(seed)).toMatch(/clock of board/);
        expect(result.failsafe[b]?.atMs, replay(seed)).toBeLessThan(5_000);
      }
    }
  });

  it("a board whose peers never answer fails safe at its join deadline", () => {
    const late = Object.fromEntries(boards.map((b) => [b, b === "b1" ? 0 : 10_000_000]));
    const result = runClusterSim({
      ...base,
      join: { startMs: late, deadlineMs: 5_000 },
      horizonMs: 8_000,
    });
    expect(result.failsafe.b1?.reason).toMatch(
      /^joining did not complete within 5000 ms: nothing heard from b2, b3, b4, b5, b6$/,
    );
  });
});

describe("the fail-safe state reaches every board", () => {
  it("within one silence bound (plus delivery and lateness) with 30% of control frames lost", () => {
    const boundMs = base.silenceBoundMs + base.deliveryBoundMs + base.latenessBoundMs + 1;
    let heardByHeartbeat = 0;
    for (const seed of seeds) {
      const result = runClusterSim({
        ...base,
        seed,
        faults: [
          { kind: "dropFrames", fraction: 0.3, fromMs: 0 },
          { kind: "stepFails", board: "b3", period: 1, step: "checkOS", reason: "drill" },
        ],
      });
      const states = boards.map((b) => result.failsafe[b]);
      expect(
        states.every((s) => s !== undefined),
        replay(seed),
      ).toBe(true);
      const times = states.map((s) => s?.atMs as number);
      expect(Math.max(...times) - Math.min(...times), replay(seed)).toBeLessThanOrEqual(boundMs);
      expect(result.maxHostsDown, replay(seed)).toBeLessThanOrEqual(1);
      heardByHeartbeat += result.trace.filter((t) => /FAILSAFE: .*\(from b3\)/.test(t.what)).length;
    }
    // Not all through the FAILSAFE frame itself: the heartbeats carried it where that was lost.
    expect(heardByHeartbeat).toBeGreaterThan(0);
  });
});

describe("restarts and clears", () => {
  it("a board restarted within the silence bound, once its group is done, runs the schedule again from the next period", () => {
    for (const seed of seeds.slice(0, 10)) {
      const first = runClusterSim({ ...base, seed });
      const period1 = first.periods.find((p) => p.period === 1);
      expect(period1, replay(seed)).toBeDefined();
      // b6 is the last group: restart it just after period 1 completes, for 300 ms.
      const atMs = (period1?.endMs as number) + 50;
      const result = runClusterSim({
        ...base,
        seed,
        periods: 4,
        faults: [{ kind: "boardRestarts", board: "b6", atMs, downMs: 300 }],
      });
      expect(result.failsafe, replay(seed)).toEqual({});
      expect(result.joins.b6, replay(seed)).toEqual([
        expect.objectContaining({ schedule: 1_000, firstIndex: 2 }),
      ]);
      expect(result.periodsCompleted, replay(seed)).toBe(4);
      expect(result.recoveryOrder[3], replay(seed)).toEqual(boards);
    }
  });

  it("a board killed: every board fails safe; restarted and cleared, the testbed runs again", () => {
    for (const seed of seeds.slice(0, 10)) {
      const clearMs = 12_000;
      const result = runClusterSim({
        ...base,
        seed,
        join: {},
        horizonMs: 60_000,
        faults: [
          { kind: "boardRestarts", board: "b3", atMs: 5_000, downMs: 4_000 },
          // The operator clears the boards one after another.
          ...boards.map((board, i) => ({
            kind: "operatorClears" as const,
            board,
            atMs: clearMs + 300 * i,
          })),
        ],
      });
      for (const b of boards.filter((x) => x !== "b3"))
        expect(result.failsafeHistory[b]?.[0]?.reason, replay(seed)).toMatch(/b3 silent/);
      // Cleared, every board is running one fresh schedule, and periods complete again.
      expect(result.failsafe, replay(seed)).toEqual({});
      const after = boards.map((b) => (result.joins[b] ?? []).filter((j) => j.atMs > clearMs));
      expect(new Set(after.flatMap((js) => js.map((j) => j.schedule))).size, replay(seed)).toBe(1);
      expect(periodsAfter(result, clearMs), replay(seed)).toBeGreaterThanOrEqual(2);
      // Not asserted here: the hosts the fail-safe state held in reset. They stay held after a
      // clear until their group's turn comes (a cold start of the service is not modelled).
    }
  });
});
