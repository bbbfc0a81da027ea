/**
 * Delays between dials of a peer that is down: doubling from `initial` up to
 * `max`, each shortened by up to a fifth at random so that nodes restarted
 * together do not dial in lockstep. Jitter only shortens, so `max` is a bound.
 */

export interface ReconnectDelayMs {
  initial: number;
  max: number;
}

export const DEFAULT_RECONNECT_DELAY_MS: Readonly<ReconnectDelayMs> = Object.freeze({
  initial: 50,
  max: 2_000,
});
const JITTER_FRACTION = 0.2;

export function assertReconnectDelayMs(delayMs: ReconnectDelayMs): void {
  const { initial, max } = delayMs;
  if (!Number.isFinite(initial) || !Number.isFinite(max) || initial <= 0 || max < initial)
    throw new RangeError(
      `reconnectDelayMs needs 0 < initial <= max, not initial ${initial}, max ${max}`,
    );
}

export class ReconnectBackoff {
  private attempts = 0;

  constructor(
    private readonly delayMs: ReconnectDelayMs,
    private readonly random: () => number = Math.random,
  ) {
    assertReconnectDelayMs(delayMs);
  }

  next(): number {
    const base = Math.min(this.delayMs.max, this.delayMs.initial * 2 ** this.attempts);
    // Stop counting at the cap: 2 ** attempts must not overflow on a peer down for days.
    if (base < this.delayMs.max) this.attempts++;
    return Math.round(base * (1 - JITTER_FRACTION * this.random()));
  }

  reset(): void {
    this.attempts = 0;
  }
}
