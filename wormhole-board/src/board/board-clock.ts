/**
 * The board's clock: the wall clock read once, at start, and advanced from then on by the
 * monotonic clock. Every timer, budget and schedule instant is on it, so an NTP step of the wall
 * clock (backwards, making an over-budget step look within budget; or forwards, firing a trigger
 * early) moves nothing. Boards still agree on instants: each reads the wall clock at its start,
 * and the clock check between boards (`ClockMonitor`) holds their clocks within the bound.
 *
 * The wall clock is still watched: `wallClockMoved` says when it has moved away from this clock
 * by more than the promised drift (P2) allows, a sign of a clock being stepped or slewed that an
 * operator should hear of.
 */
export class BoardClock {
  private readonly wallAtStartMs: number;
  private readonly monoAtStartMs: number;
  /** How far the wall clock had moved when it was last reported. */
  private reportedMs = 0;

  constructor(
    private readonly wall: () => number = Date.now,
    private readonly mono: () => number = () => performance.now(),
  ) {
    this.wallAtStartMs = wall();
    this.monoAtStartMs = mono();
  }

  now(): number {
    return this.wallAtStartMs + (this.mono() - this.monoAtStartMs);
  }

  /**
   * How far (ms) the wall clock has moved from this clock since the last report, when that is
   * more than `driftMaxPpm` over the time elapsed plus `toleranceMs`; undefined otherwise.
   */
  wallClockMoved(driftMaxPpm: number, toleranceMs: number): number | undefined {
    const elapsedMs = this.mono() - this.monoAtStartMs;
    const movedMs = this.wall() - this.wallAtStartMs - elapsedMs;
    const allowedMs = driftMaxPpm * 1e-6 * elapsedMs + toleranceMs;
    if (Math.abs(movedMs - this.reportedMs) <= allowedMs) return undefined;
    this.reportedMs = movedMs;
    return movedMs;
  }
}
