/**
 * Which older checkpoints a replica keeps on disk beside its newest. A cold start agrees on a
 * checkpoint that k' + k + 1 disks hold, and replicas stop at different points: one that lagged,
 * or was still fetching state when the fail-safe came, holds older checkpoints than the rest. Kept
 * only the newest three, two laggards and k' + k forged disks left no checkpoint on enough disks
 * (the simulation, seed 7374: three disks at 40, 36, 32, two at 28, 24, 20).
 *
 * So besides the two before the newest, at every level j (1 … RETENTION_LEVELS) the last two
 * checkpoints whose number is a multiple of 2^j intervals are kept. Two replicas that both wrote
 * every checkpoint on their way, one at N and one at L < N with N − L ≤ 2^j intervals, then share
 * one: the newest multiple m of 2^j intervals not above L is kept by the laggard, and since
 * N − 2^(j+1) intervals < m ≤ N it is one of the last two the other keeps. What is lost in going
 * back to it is under twice the lag. About log2(lag) + 3 files are kept, each pinning its segments.
 */

/** Levels of doubling distance: replicas up to 2^RETENTION_LEVELS intervals apart share one. */
export const RETENTION_LEVELS = 6;
/** The most older checkpoints the rule can keep (and a reader looks at). */
export const MAX_OLDER_CHECKPOINTS = 2 + 2 * RETENTION_LEVELS;

/**
 * The sequence numbers among `olderSeqs` kept beside `newestSeq` (those at or above it are not:
 * after a cold start went back, they are of a state no longer agreed on). Without an interval,
 * only the two newest below it.
 */
export function keptCheckpointSeqs(
  newestSeq: number,
  olderSeqs: Iterable<number>,
  intervalSeqs?: number,
): Set<number> {
  const below = [...new Set(olderSeqs)].filter((s) => s < newestSeq).sort((a, b) => b - a);
  const kept = new Set(below.slice(0, 2));
  if (intervalSeqs === undefined || !(intervalSeqs > 0)) return kept;
  const present = new Set(below);
  for (let level = 1; level <= RETENTION_LEVELS; level++) {
    const stepSeqs = intervalSeqs * 2 ** level;
    const last = Math.floor(newestSeq / stepSeqs) * stepSeqs;
    for (const seq of [last, last - stepSeqs]) if (present.has(seq)) kept.add(seq);
  }
  return kept;
}
