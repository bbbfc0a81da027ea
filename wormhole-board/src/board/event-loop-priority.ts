/**
 * The board's event loop runs its timers, links and steps: it goes before anything else the
 * board's CPU does (the media workers lower their own priority, `yieldToTheBoard`). Raised once
 * at start, for the calling thread only (Linux: a thread has a nice value of its own); not
 * permitted without root or CAP_SYS_NICE, then it says so and the board runs at normal priority.
 */
import { getPriority, setPriority } from "node:os";

export const EVENT_LOOP_NICE = -10;

export function raiseEventLoopPriority(): { nice: number } | { notPermitted: string } {
  try {
    setPriority(0, EVENT_LOOP_NICE);
    return { nice: getPriority(0) };
  } catch (error) {
    return { notPermitted: (error as Error).message };
  }
}
