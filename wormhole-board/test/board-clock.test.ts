import { BoardClock } from "@smw/wormhole-board";
import { describe, expect, it } from "vitest";

describe("the board's clock", () => {
  it("advances with the monotonic clock, whatever the wall clock does", () => {
    let wall = 1_000_000;
    let mono = 50;
    const clock = new BoardClock(
      () => wall,
      () => mono,
    );
    mono += 1_000;
    wall -= 3_600_000; // an NTP step back by an hour
    expect(clock.now()).toBe(1_001_000);
  });

  it("says when the wall clock moved from it by more than the promised drift allows, once per move", () => {
    let wall = 0;
    let mono = 0;
    const clock = new BoardClock(
      () => wall,
      () => mono,
    );
    // 100 ppm over 100 s is 10 ms, plus 2 ms tolerance.
    mono = 100_000;
    wall = 100_011;
    expect(clock.wallClockMoved(100, 2)).toBeUndefined();
    wall = 100_500;
    expect(clock.wallClockMoved(100, 2)).toBe(500);
    expect(clock.wallClockMoved(100, 2)).toBeUndefined();
    wall = 99_000;
    expect(clock.wallClockMoved(100, 2)).toBe(-1_000);
  });
});
