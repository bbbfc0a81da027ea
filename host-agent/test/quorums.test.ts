import { describe, expect, it } from "vitest";
import { quorumsFor } from "../src/replica/quorums.js";

describe("hybrid-fault quorums", () => {
  it("gives the paper's figures", () => {
    expect(quorumsFor(4, 1, 0)).toMatchObject({ quorum: 3, weak: 2 });
    expect(quorumsFor(6, 1, 1)).toMatchObject({ quorum: 4, weak: 2 });
    expect(quorumsFor(7, 1, 1)).toMatchObject({ quorum: 5, weak: 2 });
    expect(quorumsFor(8, 1, 2)).toMatchObject({ quorum: 5, weak: 2 });
    expect(quorumsFor(11, 2, 2)).toMatchObject({ quorum: 7, weak: 3 });
  });

  it("is PBFT's 2f+1 when nothing recovers (n = 3f + 1, k = 0)", () => {
    for (let f = 1; f <= 10; f++) expect(quorumsFor(3 * f + 1, f, 0).quorum).toBe(2 * f + 1);
  });

  it("intersects in a correct replica and stays reachable with k' + k absent, for every valid n, k', k", () => {
    for (let kPrime = 0; kPrime <= 5; kPrime++)
      for (let k = 0; k <= 5; k++)
        for (let n = 3 * kPrime + 2 * k + 1; n <= 3 * kPrime + 2 * k + 6; n++) {
          const { quorum } = quorumsFor(n, kPrime, k);
          expect(2 * quorum - n, `n=${n} k'=${kPrime} k=${k}`).toBeGreaterThanOrEqual(kPrime + 1);
          expect(quorum, `n=${n} k'=${kPrime} k=${k}`).toBeLessThanOrEqual(n - kPrime - k);
        }
  });

  it("makes an unordered read meet a write's quorum in k' + 1, and be reachable with k' + k absent", () => {
    expect(quorumsFor(4, 1, 0).unorderedRead).toBe(3);
    expect(quorumsFor(6, 1, 1).unorderedRead).toBe(4);
    expect(quorumsFor(8, 1, 2).unorderedRead).toBe(5);
    expect(quorumsFor(9, 2, 1).unorderedRead).toBe(6);
    for (let kPrime = 0; kPrime <= 5; kPrime++)
      for (let k = 0; k <= 5; k++)
        for (let n = 3 * kPrime + 2 * k + 1; n <= 3 * kPrime + 2 * k + 6; n++) {
          const { quorum, unorderedRead } = quorumsFor(n, kPrime, k);
          const at = `n=${n} k'=${kPrime} k=${k}`;
          // At most k' lies among the answers a client counts at once (leases end before a
          // reset): a correct replica of every write's quorum is left among them.
          expect(unorderedRead + quorum - n, at).toBeGreaterThanOrEqual(kPrime + 1);
          expect(unorderedRead, at).toBeLessThanOrEqual(n - kPrime - k);
        }
  });

  it("refuses too few replicas, naming the bound", () => {
    expect(() => quorumsFor(5, 1, 1)).toThrow(/n >= 3k' \+ 2k \+ 1 = 6/);
    expect(() => quorumsFor(3, 1, 0)).toThrow(/= 4/);
  });
});
