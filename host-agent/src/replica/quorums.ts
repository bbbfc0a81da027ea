/**
 * Quorum sizes for hybrid faults (paper section 3.1): n replicas tolerate k'
 * Byzantine replicas while k more are silent, being rejuvenated, which needs
 * n >= 3k' + 2k + 1. A quorum q must
 *   - intersect any other quorum in at least one correct replica: 2q - n >= k' + 1;
 *   - be reachable with k' + k replicas absent: q <= n - k' - k.
 * The least such q is ceil((n + k' + 1) / 2). With n = 3f + 1 and k = 0 this
 * is PBFT's 2f + 1; with k = k' = 1, n = 6 it is 4, not 2f + 1 = 5.
 */

export interface Quorums {
  n: number;
  /** Byzantine replicas tolerated between rejuvenations. */
  kPrime: number;
  /** Replicas silent at once for rejuvenation. */
  k: number;
  /** Matching messages that make a certificate (prepared, committed, stable, new view). */
  quorum: number;
  /** Matching messages that include at least one correct replica (client replies, joining a view change). */
  weak: number;
  /**
   * Matching answers an unordered read takes (SAFETY.md, "Reads without ordering": "A read across
   * a move"): q. A client counts a reply only under a lease on its key, and a board resets its
   * host (where the adversary may leave it) only once the last lease lapsed, so the answers one
   * read counts hold at most k' lies, and those of a completed write at most k': a read's q
   * answers meet a write's q in k' + 1 replicas, one of them correct and holding the write.
   */
  unorderedRead: number;
}

/** A service too small for the faults it is asked to tolerate: the configuration's fault, not a bug. */
export class QuorumError extends RangeError {}

export function quorumsFor(n: number, kPrime: number, k: number): Quorums {
  if (!Number.isInteger(n) || !Number.isInteger(kPrime) || !Number.isInteger(k))
    throw new RangeError("n, k' and k are whole numbers");
  if (kPrime < 0 || k < 0) throw new RangeError("k' and k are at least 0");
  if (n < 3 * kPrime + 2 * k + 1)
    throw new QuorumError(
      `n = ${n} replicas cannot tolerate k' = ${kPrime} Byzantine plus k = ${k} recovering: n >= 3k' + 2k + 1 = ${3 * kPrime + 2 * k + 1}`,
    );
  const quorum = Math.ceil((n + kPrime + 1) / 2);
  return { n, kPrime, k, quorum, weak: kPrime + 1, unorderedRead: quorum };
}
