/**
 * One timer for an absolute instant on a monotonic clock, neither early nor a millisecond late.
 *
 * `setTimeout` counts whole milliseconds from the event loop's cached time: alone it fires up to
 * a millisecond late (the timely core's bound is 2 ms) and, measured against `performance.now`,
 * often a fraction early (p50 0.2 ms early, measured). So the timer wakes `finishMs` ahead and
 * polls the clock once per event-loop turn (`setImmediate`, which keeps serving I/O) until the
 * instant has come. The cost is a loop spinning for about `finishMs` per instant, and a board has
 * a few instants a period.
 */
export class DeadlineTimer {
  private coarse: NodeJS.Timeout | undefined;
  private fine: NodeJS.Immediate | undefined;
  private atMs: number | undefined;

  constructor(
    private readonly now: () => number,
    private readonly finishMs = 1,
  ) {}

  /** The instant armed for, if any. */
  get armedForMs(): number | undefined {
    return this.atMs;
  }

  /**
   * Calls `fire(nowMs)` at the first reading of the clock at or after `atMs`, never from inside
   * this call (an instant already past fires on the next turn); replaces any earlier arming.
   */
  arm(atMs: number, fire: (nowMs: number) => void): void {
    this.cancel();
    this.atMs = atMs;
    const wait = (nowMs: number): void => {
      if (atMs - nowMs > this.finishMs)
        this.coarse = setTimeout(poll, atMs - nowMs - this.finishMs);
      else this.fine = setImmediate(poll);
    };
    const poll = (): void => {
      this.coarse = undefined;
      this.fine = undefined;
      const nowMs = this.now();
      if (nowMs < atMs) {
        wait(nowMs);
        return;
      }
      this.atMs = undefined;
      fire(nowMs);
    };
    wait(this.now());
  }

  cancel(): void {
    if (this.coarse !== undefined) clearTimeout(this.coarse);
    if (this.fine !== undefined) clearImmediate(this.fine);
    this.coarse = undefined;
    this.fine = undefined;
    this.atMs = undefined;
  }
}
