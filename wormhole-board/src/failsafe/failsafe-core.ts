/**
 * The fail-safe state S: latched on the first trigger, from this board or
 * heard from another, and cleared only by an operator. What to do about it
 * (hold reset, power off, alarm, webhook, command) comes from the testbed's
 * policy; this core decides once, and the driver acts.
 */
import type { FailsafeAction } from "@smw/wiring";

export interface FailsafeState {
  /** When the fail-safe state was entered (board clock, ms). */
  sinceMs: number;
  reason: string;
  /** The board whose trigger it was. */
  origin: string;
}

export type FailsafeOutput =
  | { kind: "enter"; state: FailsafeState; actions: readonly FailsafeAction[]; broadcast: boolean }
  | { kind: "cleared" };

export class FailsafeCore {
  private latched: FailsafeState | undefined;

  constructor(
    private readonly self: string,
    private readonly policy: readonly FailsafeAction[],
    restored?: FailsafeState,
  ) {
    this.latched = restored;
  }

  get state(): FailsafeState | undefined {
    return this.latched;
  }

  /** A trigger this board detected itself: enter, act, and tell every peer. */
  trigger(reason: string, nowMs: number): FailsafeOutput[] {
    return this.enter({ sinceMs: nowMs, reason, origin: this.self }, true);
  }

  /** FAILSAFE heard from a peer: enter and act; it has told everyone already. */
  heard(origin: string, reason: string, nowMs: number): FailsafeOutput[] {
    return this.enter({ sinceMs: nowMs, reason, origin }, false);
  }

  clear(): FailsafeOutput[] {
    if (this.latched === undefined) return [];
    this.latched = undefined;
    return [{ kind: "cleared" }];
  }

  private enter(state: FailsafeState, broadcast: boolean): FailsafeOutput[] {
    if (this.latched !== undefined) return [];
    this.latched = state;
    return [{ kind: "enter", state, actions: this.policy, broadcast }];
  }
}
