import { describe, expect, it } from "vitest";
import { DeadlineTimer } from "../src/board/deadline-timer.js";

const now = (): number => performance.now();

describe("DeadlineTimer", () => {
  it("fires at or after its instant, never early", async () => {
    const timer = new DeadlineTimer(now);
    for (let i = 0; i < 20; i++) {
      const atMs = now() + 3 + (i % 7) * 0.37;
      const firedMs = await new Promise<number>((resolve) => timer.arm(atMs, resolve));
      expect(firedMs).toBeGreaterThanOrEqual(atMs);
    }
  });

  it("fires at the first reading of its clock past the instant, not a timer tick later", async () => {
    // A clock that moves 0.01 ms per reading: setTimeout alone would fire readings off the mark.
    let clockMs = 1_000;
    const timer = new DeadlineTimer(() => {
      clockMs += 0.01;
      return clockMs;
    });
    const atMs = clockMs + 1.5;
    const firedMs = await new Promise<number>((resolve) => timer.arm(atMs, resolve));
    expect(firedMs).toBeGreaterThanOrEqual(atMs);
    expect(firedMs - atMs).toBeLessThan(0.011);
  });

  it("never fires from inside arm, even for an instant already past", async () => {
    const timer = new DeadlineTimer(now);
    let fired = false;
    const done = new Promise<void>((resolve) =>
      timer.arm(now() - 10, () => {
        fired = true;
        resolve();
      }),
    );
    expect(fired).toBe(false);
    await done;
    expect(fired).toBe(true);
  });

  it("a new arming replaces the old, and cancel stops it", async () => {
    const timer = new DeadlineTimer(now);
    const fired: string[] = [];
    timer.arm(now() + 5, () => fired.push("first"));
    timer.arm(now() + 8, () => fired.push("second"));
    expect(timer.armedForMs).toBeDefined();
    timer.arm(now() + 1, () => fired.push("third"));
    timer.cancel();
    expect(timer.armedForMs).toBeUndefined();
    timer.arm(now() + 2, () => fired.push("fourth"));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(fired).toEqual(["fourth"]);
  });
});
