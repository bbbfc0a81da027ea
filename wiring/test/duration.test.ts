import {
  DurationError,
  formatDurationMs,
  parseDurationMs,
  parseExhaustionModel,
} from "@smw/wiring";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

describe("parseDurationMs", () => {
  it.each([
    ["150ms", 150],
    ["20s", 20_000],
    ["5m", 300_000],
    ["2h", 7_200_000],
    ["30d", 2_592_000_000],
    ["1.5s", 1_500],
    ["1h30m", 5_400_000],
    ["1d 2h 3m 4.5s", 93_784_500],
    ["0s", 0],
    [" 10ms ", 10],
  ])("%s is %d ms", (text, ms) => {
    expect(parseDurationMs(text)).toBe(ms);
  });

  it.each([
    ["", "empty duration"],
    ["10", "has no unit"],
    ["10 minutes", "is not a duration"],
    ["5x", "is not a duration"],
    ["-5s", "is not a duration"],
    ["30m2h", "largest to smallest"],
    ["1s1s", "largest to smallest"],
    [`${"9".repeat(400)}d`, "too large"],
  ])("%j is refused: %s", (text, message) => {
    expect(() => parseDurationMs(text)).toThrow(DurationError);
    expect(() => parseDurationMs(text)).toThrow(message);
  });
});

describe("formatDurationMs", () => {
  it.each([
    [0, "0s"],
    [150, "150ms"],
    [1_500, "1.5s"],
    [60_000, "1m"],
    [5_400_000, "1h 30m"],
    [172_800_000 - 240_000, "1d 23h 56m"],
    [60_120, "1m 0.12s"],
  ])("%d ms is %s", (ms, text) => {
    expect(formatDurationMs(ms)).toBe(text);
  });

  it("prints what parses back to the same value", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 400 * 86_400_000 }), (ms) => {
        expect(parseDurationMs(formatDurationMs(ms))).toBe(ms);
      }),
      { numRuns: 5_000 },
    );
  });
});

describe("parseExhaustionModel", () => {
  it("reads the three forms", () => {
    expect(parseExhaustionModel("sequential:2d")).toEqual({
      kind: "sequential",
      perReplicaMs: 172_800_000,
    });
    expect(parseExhaustionModel("parallel:12h")).toEqual({ kind: "parallel", allMs: 43_200_000 });
    const table = parseExhaustionModel("table:1=1d,2=36h,3=2d");
    expect(table.kind === "table" && [...table.byCountMs]).toEqual([
      [1, 86_400_000],
      [2, 129_600_000],
      [3, 172_800_000],
    ]);
  });

  it.each([
    ["exponential:2d", "expected sequential:T"],
    ["sequential:", "empty duration"],
    ["sequential:0s", "longer than zero"],
    ["table:1=1d,1=2d", "twice"],
    ["table:1=2d,2=1d", "cannot take less time"],
    ["table:2=1d", "missing 1"],
    ["table:x=1d", "is not x=T"],
  ])("%s is refused: %s", (text, message) => {
    expect(() => parseExhaustionModel(text)).toThrow(message);
  });
});
