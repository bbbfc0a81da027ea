import { TimelyCore } from "@smw/wormhole-board";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

const config = { tPMs: 10_000, tDMs: 6_000, latenessBoundMs: 2, firstTriggerMs: 1_000 };

describe("the periodic timely execution core (Definition 2.4)", () => {
  it("plans triggers at absolute instants T_p − L apart and reports each with its lateness", () => {
    const core = new TimelyCore(config);
    expect(core.nextWakeupMs()).toBe(1_000);
    expect(core.tick(999)).toEqual([]);
    expect(core.tick(1_001.5)).toEqual([
      { kind: "trigger", index: 0, plannedMs: 1_000, actualMs: 1_001.5, latenessMs: 1.5 },
    ]);
    expect(core.nextWakeupMs()).toBe(1_001.5 + 6_000);
    expect(core.done(0, 5_000)).toEqual([]);
    expect(core.nextWakeupMs()).toBe(1_000 + 9_998);
    expect(core.tick(10_998)).toMatchObject([{ kind: "trigger", index: 1, plannedMs: 10_998 }]);
  });

  it("keeps T_d < t_i − t_{i−1} <= T_p for any lateness within the bound", () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: 0, max: 2, noNaN: true }), { minLength: 2, maxLength: 30 }),
        (lateness) => {
          const core = new TimelyCore(config);
          let previous: number | undefined;
          lateness.forEach((lateMs, i) => {
            const out = core.tick(core.plannedMs(i) + lateMs);
            expect(out).toHaveLength(1);
            expect(out[0]?.kind).toBe("trigger");
            const actual = core.plannedMs(i) + lateMs;
            if (previous !== undefined) {
              expect(actual - previous).toBeGreaterThan(config.tDMs);
              expect(actual - previous).toBeLessThanOrEqual(config.tPMs);
            }
            previous = actual;
            expect(core.done(i, actual + 100)).toEqual([]);
          });
        },
      ),
    );
  });

  it("reports a trigger later than the promised bound", () => {
    const core = new TimelyCore(config);
    expect(core.tick(1_003)).toEqual([
      { kind: "violation", reason: "trigger 0 fired 3.000 ms late, over the promised 2 ms" },
    ]);
    expect(core.nextWakeupMs()).toBeUndefined();
  });

  it("reports F not ended within T_d, whether it ends late or not at all", () => {
    const late = new TimelyCore(config);
    late.tick(1_000);
    expect(late.done(0, 7_001)[0]).toMatchObject({
      kind: "violation",
      reason: expect.stringContaining("over T_d"),
    });
    const never = new TimelyCore(config);
    never.tick(1_000);
    expect(never.tick(7_000)).toEqual([]);
    expect(never.tick(7_001)[0]).toMatchObject({
      kind: "violation",
      reason: "F of period 0 did not end within T_d (6000 ms) of its trigger",
    });
  });

  it("refuses a configuration where Definition 2.4 cannot hold", () => {
    expect(() => new TimelyCore({ ...config, tDMs: 9_997 })).toThrow("T_d");
  });
});
