import { ClockMonitor } from "@smw/wormhole-board";
import { describe, expect, it } from "vitest";

/** Two boards exchanging heartbeats; B's clock = A's + offset (+ drift). */
function exchange(
  monitorA: ClockMonitor,
  monitorB: ClockMonitor,
  offsetMs: number,
  tA: number,
  there: number,
  back: number,
  driftPpm = 0,
) {
  const clockB = (a: number) => a + offsetMs + a * driftPpm * 1e-6;
  const hbAtoB = { sentAtMs: tA, ...(monitorA.echoFor("b", tA) ?? {}) };
  const arrivalB = clockB(tA + there);
  monitorB.heard("a", hbAtoB, arrivalB);
  const replyAt = tA + there + 1;
  const hbBtoA = { sentAtMs: clockB(replyAt), ...(monitorB.echoFor("a", clockB(replyAt)) ?? {}) };
  return monitorA.heard("b", hbBtoA, replyAt + back);
}

describe("the clock monitor", () => {
  it("estimates the peer's offset within half the round trip and accepts it within the bound", () => {
    const a = new ClockMonitor(10, 100, 20);
    const b = new ClockMonitor(10, 100, 20);
    for (let i = 0; i < 5; i++) expect(exchange(a, b, 7, 1_000 + i * 100, 2, 9)).toBeUndefined();
    const sample = a.latest("b");
    expect(sample).toBeDefined();
    expect(Math.abs((sample?.offsetMs ?? 0) - 7)).toBeLessThanOrEqual((sample?.rttMs ?? 0) / 2);
  });

  it("reports an offset beyond the bound", () => {
    const a = new ClockMonitor(10, 100, 20);
    const b = new ClockMonitor(10, 100, 20);
    let verdict: ReturnType<ClockMonitor["heard"]>;
    for (let i = 0; i < 5 && verdict === undefined; i++)
      verdict = exchange(a, b, 25, 1_000 + i * 100, 3, 3);
    expect(verdict).toMatchObject({ kind: "offset", peer: "b" });
  });

  it("a first heartbeat arriving later than the two bounds allow is reported with how late it came", () => {
    const a = new ClockMonitor(10, 100, 20);
    // Within delivery (20) + offset (10) of its stamp: nothing to say yet.
    expect(a.heard("b", { sentAtMs: 1_000 }, 1_030)).toBeUndefined();
    const b = new ClockMonitor(10, 100, 20);
    expect(b.heard("c", { sentAtMs: 1_000 }, 1_035)).toEqual({
      kind: "offset",
      peer: "c",
      offsetMs: -15,
      arrivedAfterMs: 35,
    });
  });

  it("allows a first heartbeat a processing delay at each end, as P1 bounds them", () => {
    // procMax 50 ms: stamped up to 50 ms before it left, handled up to 50 ms after it came.
    const a = new ClockMonitor(10, 100, 20, 50);
    expect(a.heard("b", { sentAtMs: 1_000 }, 1_130)).toBeUndefined();
    const b = new ClockMonitor(10, 100, 20, 50);
    expect(b.heard("c", { sentAtMs: 1_000 }, 1_135)).toEqual({
      kind: "offset",
      peer: "c",
      offsetMs: -15,
      arrivedAfterMs: 135,
    });
    // A clock ahead is not excused by any delay.
    expect(new ClockMonitor(10, 100, 20, 50).heard("d", { sentAtMs: 1_000 }, 989)).toMatchObject({
      kind: "offset",
      offsetMs: 11,
    });
  });

  it("reports a drift faster than twice the promised rate, and not a slower one", () => {
    const run = (ppm: number) => {
      const a = new ClockMonitor(1_000, 100, 20);
      const b = new ClockMonitor(1_000, 100, 20);
      for (let i = 0; i < 300; i++) {
        const verdict = exchange(a, b, 0, 1_000 + i * 100, 1, 1, ppm);
        if (verdict !== undefined) return verdict;
      }
      return undefined;
    };
    expect(run(150)).toBeUndefined();
    expect(run(1_000)).toMatchObject({ kind: "drift", peer: "b" });
  });

  it("ignores samples whose round trip exceeds twice the delivery bound", () => {
    const a = new ClockMonitor(10, 100, 20);
    const b = new ClockMonitor(10, 100, 20);
    exchange(a, b, 0, 1_000, 5, 5);
    expect(exchange(a, b, 500, 1_100, 30, 30)).toBeUndefined();
  });
});
