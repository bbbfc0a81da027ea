import type { ReplicaState } from "./replica-state.js";

/**
 * How long a request may wait before its primary is suspected, growing after views that
 * brought no progress (PBFT's rule: a view change that executes nothing new doubles the timer).
 *
 * With a fixed timeout, work that takes longer than it in every view never completes: writes of
 * 1 MiB on a starved CPU took each new primary longer than the timeout to get through, so the
 * replicas left every view before its first execution, and each new view proposed the batch
 * afresh (four replicas beside six busy loops: three writes in 60 s, with a view change every
 * few seconds). The first view change started while requests waited leaves the timeout as it
 * is (as PBFT's first view change does), each further one doubles it, up to
 * `MAX_PROGRESS_DOUBLINGS`; the first request executed sets it back. A view change with nothing
 * waiting (a planned hand-off on an idle service) leaves it as it is.
 */

/** At most 16 times the configured timeout: 16 s at the default 1 s. */
export const MAX_PROGRESS_DOUBLINGS = 4;

export function progressTimeoutMs(r: ReplicaState): number {
  const doublings = Math.min(Math.max(r.stalledViewChanges - 1, 0), MAX_PROGRESS_DOUBLINGS);
  return r.config.viewChangeTimeoutMs * 2 ** doublings;
}

/** A view change starts from the normal case: it counts as stalled if anything was waiting. */
export function noteViewChangeStarted(r: ReplicaState): void {
  if (r.pendingSinceMs.size > 0 || r.awaitingSinceMs.size > 0) r.stalledViewChanges++;
}

/** A client's request executed: the views are making progress again. */
export function noteProgress(r: ReplicaState): void {
  r.stalledViewChanges = 0;
}
