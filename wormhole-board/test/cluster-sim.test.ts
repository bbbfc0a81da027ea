import { runClusterSim, type SimConfig, type SimResult } from "@smw/wormhole-board";
import { describe, expect, it } from "vitest";
import { base, boards } from "./sim-config.js";

const SEEDS = Number(process.env.SMW_SIM_SEEDS ?? 30);
const ONLY_SEED =
  process.env.SMW_SIM_SEED === undefined ? undefined : Number(process.env.SMW_SIM_SEED);
const seeds =
  ONLY_SEED !== undefined ? [ONLY_SEED] : Array.from({ length: SEEDS }, (_, i) => i + 1);

function expectCleanRun(result: SimResult, config: SimConfig): void {
  const replay = `replay with SMW_SIM_SEED=${result.seed}`;
  expect(result.failsafe, replay).toEqual({});
  expect(result.invariantViolations, replay).toEqual([]);
  expect(result.maxHostsDown, replay).toBeLessThanOrEqual(config.k);
  expect(result.periodsCompleted, replay).toBe(config.periods);
  // Groups in order; within a group the boards start together, in any order.
  for (const order of result.recoveryOrder) {
    let at = 0;
    for (const group of config.groups) {
      expect(new Set(order.slice(at, at + group.length)), replay).toEqual(new Set(group));
      at += group.length;
    }
  }
  // Definition 2.4, on every board's actual trigger instants.
  for (const board of config.boards) {
    const triggers = result.triggers[board] ?? [];
    expect(triggers.length, replay).toBeGreaterThanOrEqual(config.periods);
    for (let i = 1; i < triggers.length; i++) {
      const spacing = (triggers[i]?.actualMs as number) - (triggers[i - 1]?.actualMs as number);
      expect(spacing, replay).toBeGreaterThan(config.tDMs);
      expect(spacing, replay).toBeLessThanOrEqual(config.tPMs);
    }
    for (const t of triggers)
      expect(t.latenessMs, replay).toBeLessThanOrEqual(config.latenessBoundMs);
  }
  for (const period of result.periods)
    expect(period.endMs - period.startMs, replay).toBeLessThanOrEqual(config.tDMs);
}

describe("the distributed wormhole, simulated from a seed", () => {
  it(`6 boards, k = 1: every period rejuvenates the groups in order, one host down at most (${seeds.length} seeds)`, () => {
    for (const seed of seeds) expectCleanRun(runClusterSim({ ...base, seed }), base);
  });

  it("n = 7, k = 2, a configured order: at most two hosts down, groups in order", () => {
    const seven = [...boards, "b7"];
    const config: SimConfig = {
      ...base,
      boards: seven,
      groups: [["b7", "b1"], ["b2", "b3"], ["b4", "b5"], ["b6"]],
      k: 2,
    };
    for (const seed of seeds.slice(0, 10)) {
      const result = runClusterSim({ ...config, seed });
      expectCleanRun(result, config);
      expect(result.maxHostsDown).toBe(2);
      for (const order of result.recoveryOrder) {
        expect(new Set(order.slice(0, 2))).toEqual(new Set(["b7", "b1"]));
      }
    }
  });

  it("every board revokes a group's keys as the group begins, the group's own boards included", () => {
    const result = runClusterSim({ ...base, seed: 7 });
    expectCleanRun(result, base);
    const revoked = new Set(
      result.trace.filter((t) => t.what.startsWith("revoke")).map((t) => `${t.board} ${t.what}`),
    );
    const periods = [
      ...new Set(
        result.trace
          .filter((t) => t.what.startsWith("revoke"))
          .map((t) => /period (\d+)/.exec(t.what)?.[1]),
      ),
    ];
    expect(periods.length).toBeGreaterThanOrEqual(result.periodsCompleted);
    for (const period of periods)
      for (const board of base.boards)
        for (let g = 1; g <= base.groups.length; g++)
          expect(revoked).toContain(`${board} revoke the keys of group ${g} (period ${period})`);
  });

  it("replays exactly from its seed", () => {
    const a = runClusterSim({ ...base, seed: 42 });
    const b = runClusterSim({ ...base, seed: 42 });
    const c = runClusterSim({ ...base, seed: 43 });
    expect(b.trace).toEqual(a.trace);
    expect(c.trace).not.toEqual(a.trace);
  });

  it("runs a restore only when the check finds the code corrupted", () => {
    const result = runClusterSim({
      ...base,
      faults: [{ kind: "corrupted", board: "b3", period: 1, step: "checkSM" }],
    });
    expectCleanRun(result, base);
    const restores = result.trace.filter((t) => t.what.startsWith("run restore"));
    expect(restores).toEqual([
      expect.objectContaining({ board: "b3", what: "run restoreSM (period 1)" }),
    ]);
  });
});

interface Drill {
  name: string;
  config: Partial<SimConfig>;
  reason: RegExp;
  /** Bound on the time from the fault to the last board in fail-safe. */
  boundMs: number;
}

const drills: Drill[] = [
  {
    name: "a step over its budget",
    config: { faults: [{ kind: "stepOverBudget", board: "b3", period: 1, step: "boot" }] },
    reason: /step boot of period 1 is over its budget of 400 ms/,
    boundMs: 2 + 20 + 2,
  },
  {
    name: "a golden image failing verification",
    config: {
      faults: [
        {
          kind: "stepFails",
          board: "b4",
          period: 0,
          step: "checkOS",
          reason: "golden os image: chunk 3 does not match its manifest",
        },
      ],
    },
    reason: /step checkOS of period 0 failed: golden os image/,
    boundMs: 20,
  },
  {
    name: "a silent peer board (crashed)",
    config: { faults: [{ kind: "boardDies", board: "b5", atMs: 20_000 }] },
    reason: /board b5 silent for/,
    boundMs: 100 + 500 + 20 + 2 + 2,
  },
  {
    name: "a cut control link",
    config: { faults: [{ kind: "cutLink", a: "b2", b: "b6", atMs: 20_000 }] },
    reason: /board b[26] silent for/,
    boundMs: 100 + 500 + 20 + 2 + 2,
  },
  {
    name: "timer lateness over the promised bound",
    config: { faults: [{ kind: "lateTimer", board: "b2", atMs: 16_000, lateMs: 5 }] },
    reason: /ms late, over the promised 2 ms/,
    boundMs: 5 + 20,
  },
  {
    name: "a board's clock beyond the offset bound",
    config: { faults: [{ kind: "clockSkew", board: "b4", skewMs: 60 }] },
    reason:
      /the clock of board b4 is at least .* ms (behind|ahead of) ours, over the bound of 10 ms|ahead of ours|behind ours/,
    boundMs: 100 + 20 + 2 + 20 + 60,
  },
  {
    name: "a board's clock drifting faster than two promised drifts allow",
    config: {
      clockOffsetBoundMs: 1_000,
      faults: [{ kind: "clockDrift", board: "b5", ppm: 3_000 }],
    },
    reason: /the clock of board b\d drifts -?\d+ ppm from ours, over twice the promised 100 ppm/,
    // The drift check needs ten seconds of baseline, then a few heartbeats.
    boundMs: 16_000,
  },
  {
    name: "repeated authentication failures from one peer",
    config: { faults: [{ kind: "forgedFrames", from: "b6", to: "b1", atMs: 5_000, count: 5 }] },
    reason: /5 frames claiming to be from b6 failed authentication/,
    boundMs: 4 + 20,
  },
  {
    name: "a group not done by its deadline (its board died mid-recovery, heard as silence first)",
    config: { faults: [{ kind: "boardDies", board: "b2", atMs: 1_000 + 2_020 + 500 }] },
    reason: /silent|not done by its deadline/,
    boundMs: 100 + 500 + 20 + 2 + 2,
  },
];

describe("every fail-safe trigger takes every board to fail-safe within its bound", () => {
  for (const drill of drills) {
    it(drill.name, () => {
      for (const seed of seeds.slice(0, 10)) {
        const result = runClusterSim({ ...base, ...drill.config, seed });
        const replay = `replay with SMW_SIM_SEED=${seed}`;
        const dead = (drill.config.faults ?? []).flatMap((f) =>
          f.kind === "boardDies" ? [f.board] : [],
        );
        const live = boards.filter((b) => !dead.includes(b));
        for (const board of live)
          expect(result.failsafe[board], `${board}: ${replay}`).toBeDefined();
        const origins = live.map((b) => result.failsafe[b]?.reason ?? "");
        expect(
          origins.every((reason) => drill.reason.test(reason)),
          `${origins.join(" | ")}: ${replay}`,
        ).toBe(true);
        const lastMs = Math.max(
          ...live.map((b) => result.failsafe[b]?.atMs ?? Number.POSITIVE_INFINITY),
        );
        expect(result.firstFaultMs, replay).toBeDefined();
        expect(lastMs - (result.firstFaultMs as number), replay).toBeLessThanOrEqual(drill.boundMs);
        expect(result.maxHostsDown, replay).toBeLessThanOrEqual(1);
      }
    });
  }

  it("a rejuvenation cut short is recorded up to the step that broke, or the one under way", () => {
    for (const seed of seeds.slice(0, 10)) {
      const replay = `replay with SMW_SIM_SEED=${seed}`;
      const over = runClusterSim({
        ...base,
        faults: [{ kind: "stepOverBudget", board: "b3", period: 1, step: "boot" }],
        seed,
      });
      // Only b3 was rejuvenating: its run ends with the boot over budget, nothing after it.
      expect(Object.keys(over.interrupted), replay).toEqual(["b3"]);
      const run = over.interrupted.b3;
      expect(run?.period, replay).toBe(1);
      expect(
        run?.steps.map((s) => s.step),
        replay,
      ).toEqual(["shutdown", "checkOS", "restoreOS", "checkSM", "restoreSM", "boot"]);
      expect(run?.steps.at(-1)?.verdict, replay).toBe("over-budget");
      expect(
        run?.steps.slice(0, -1).every((s) => s.verdict === "ok" || s.verdict === "skipped"),
        replay,
      ).toBe(true);
    }
  });

  it("a board whose rejuvenation is under way when a peer falls silent records it as interrupted", () => {
    let interrupted = 0;
    for (const seed of seeds.slice(0, 10)) {
      for (const atMs of [1_300, 2_300, 3_300]) {
        const replay = `replay with SMW_SIM_SEED=${seed} (b6 dies at ${atMs} ms)`;
        const result = runClusterSim({
          ...base,
          faults: [{ kind: "boardDies", board: "b6", atMs }],
          seed,
        });
        // Under way: its shutdown began in period 0 and it never reported recovered.
        const recovered = new Set(
          result.trace.filter((t) => t.what === "recovered (period 0)").map((t) => t.board),
        );
        const underWay = (result.recoveryOrder[0] ?? []).filter(
          (b) => b !== "b6" && !recovered.has(b),
        );
        expect(Object.keys(result.interrupted).sort(), replay).toEqual(underWay.sort());
        for (const run of Object.values(result.interrupted)) {
          expect(run.period, replay).toBe(0);
          expect(run.steps[0]?.step, replay).toBe("shutdown");
          expect(run.steps.at(-1)?.verdict, replay).toBe("interrupted");
          interrupted += 1;
        }
      }
    }
    // The instants were chosen to catch some runs mid-way.
    expect(interrupted).toBeGreaterThan(0);
  });

  it("a board restarted in a latched fail-safe state keeps every board from starting a rejuvenation", () => {
    const result = runClusterSim({
      ...base,
      restoredFailsafe: { b4: { sinceMs: 0, reason: "drill", origin: "b4" } },
    });
    for (const board of boards)
      expect(result.failsafe[board] ?? (board === "b4" ? {} : undefined)).toBeDefined();
    expect(result.recoveryOrder).toEqual([]);
    expect(result.periodsCompleted).toBe(0);
  });
});

describe("frames failing authentication", () => {
  it("counted in a window: the same number spread over a long run (line noise) adds up to nothing", () => {
    const faults = Array.from({ length: 10 }, (_, i) => ({
      kind: "forgedFrames" as const,
      from: "b6",
      to: "b1",
      atMs: 5_000 + 16_000 * i,
      count: 1,
    }));
    const result = runClusterSim({ ...base, periods: 10, faults });
    expect(result.failsafe).toEqual({});
    expect(result.periodsCompleted).toBe(10);
  });

  it("under the alarm policy, a burst raises an alarm and the testbed runs on", () => {
    const result = runClusterSim({
      ...base,
      onAuthFailures: "alarm",
      faults: [{ kind: "forgedFrames", from: "b6", to: "b1", atMs: 5_000, count: 12 }],
    });
    expect(result.failsafe).toEqual({});
    expect(result.periodsCompleted).toBe(base.periods);
    // Twelve frames: one alarm at the fifth; the rest are counted into the next alarm, if any.
    expect(result.alarms.b1?.map((a) => a.reason)).toEqual([
      "5 frames claiming to be from b6 failed authentication within 60000 ms",
    ]);
  });

  it("under the alarm policy, a storm of forged frames raises one alarm per window and claimed sender", () => {
    // 1000 frames claiming b6 and 1000 claiming b5 within a second, 1000 more of b6 ten
    // seconds later, then five of b6 once the window since its alarm has passed.
    const storm = (from: string, atMs: number, count: number) => ({
      kind: "forgedFrames" as const,
      from,
      to: "b1",
      atMs,
      count,
    });
    const result = runClusterSim({
      ...base,
      periods: 5,
      onAuthFailures: "alarm",
      faults: [
        storm("b6", 5_000, 1_000),
        storm("b5", 5_500, 1_000),
        storm("b6", 15_000, 1_000),
        storm("b6", 66_000, 5),
      ],
    });
    expect(result.failsafe).toEqual({});
    expect(result.periodsCompleted).toBe(5);
    expect(result.alarms.b1?.map((a) => a.reason)).toEqual([
      "5 frames claiming to be from b6 failed authentication within 60000 ms",
      "5 frames claiming to be from b5 failed authentication within 60000 ms",
      "5 frames claiming to be from b6 failed authentication within 60000 ms, after 1995 more in the 61 s since the last alarm for it",
    ]);
  });
});

describe("the clock check", () => {
  it("is not switched off by delaying heartbeats: no sample that counts for 8 silence bounds is a fail-safe", () => {
    for (const seed of seeds.slice(0, 10)) {
      // Every frame 25 ms slower: still within the silence bound, but no round trip within 40 ms.
      const result = runClusterSim({
        ...base,
        seed,
        faults: [{ kind: "slowFrames", extraMs: 25, fromMs: 3_000 }],
      });
      const replay = `replay with SMW_SIM_SEED=${seed}`;
      for (const board of boards) {
        expect(result.failsafe[board]?.reason, replay).toMatch(
          /^no clock sample from board b\d for \d+ ms/,
        );
        expect(result.failsafe[board]?.atMs, replay).toBeLessThanOrEqual(3_000 + 8 * 500 + 200);
      }
    }
  });
});
