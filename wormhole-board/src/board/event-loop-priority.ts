/**
 * The board's event loop runs its timers, links and steps: it goes before anything else the
 * board's CPU does. Raised once at start, for the calling thread only (Linux: a thread has a
 * nice value and a scheduling policy of its own), before the media threads start.
 *
 * A nice value of -10; and unless declined (`smw board run --no-realtime`), where `chrt` is
 * present and the process may (root or CAP_SYS_NICE), the real-time policy SCHED_FIFO at
 * priority 10 with reset-on-fork. Under unrelated CPU load a nice value alone leaves a timer
 * waking up to ~2 ms late (the scheduler lets the running task finish its slice); a real-time
 * thread runs as soon as it wakes (p99 0.2 ms, measured). Reset-on-fork keeps it to this thread:
 * processes and threads started later (tools, media workers) run at the normal policy, and the
 * media workers then keep nice 0 rather than lowering it (lowered, another task could starve one
 * while it holds a lock the event loop waits on: `yieldToTheBoard`). The kernel's real-time
 * throttling (95% of each second by default) bounds what a runaway loop could take. Not
 * permitted: it says so and the board runs at nice -10, or at normal priority.
 */
import { spawnSync } from "node:child_process";
import { getPriority, setPriority } from "node:os";

export const EVENT_LOOP_NICE = -10;
export const EVENT_LOOP_FIFO_PRIORITY = 10;

export type EventLoopPriority =
  | { nice: number; realtime?: { fifoPriority: number } | { notPermitted: string } }
  | { notPermitted: string };

export function raiseEventLoopPriority(options: { realtime?: boolean } = {}): EventLoopPriority {
  try {
    setPriority(0, EVENT_LOOP_NICE);
  } catch (error) {
    return { notPermitted: (error as Error).message };
  }
  const nice = getPriority(0);
  return options.realtime === true ? { nice, realtime: makeRealtime() } : { nice };
}

function makeRealtime(): { fifoPriority: number } | { notPermitted: string } {
  // The main thread's id is the process id: chrt -p sets that thread alone.
  const chrt = spawnSync(
    "chrt",
    ["--reset-on-fork", "--fifo", "--pid", String(EVENT_LOOP_FIFO_PRIORITY), String(process.pid)],
    { encoding: "utf8", timeout: 5_000 },
  );
  if (chrt.error !== undefined)
    return { notPermitted: `chrt (util-linux) could not run: ${chrt.error.message}` };
  if (chrt.status !== 0)
    return { notPermitted: `chrt: ${chrt.stderr.trim() || `exit ${chrt.status}`}` };
  return { fifoPriority: EVENT_LOOP_FIFO_PRIORITY };
}
