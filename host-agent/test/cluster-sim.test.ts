import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { runSimulation } from "../src/sim/cluster-sim.js";
import { runSeed } from "../src/sim/run-seeds.js";
import { scenarioFor } from "../src/sim/sim-scenario.js";
import { CI_SEEDS, checkSeeds } from "./sim-seeds.js";

describe("the deterministic cluster simulation", () => {
  // The other half of the seeds runs in cluster-sim-seeds.test.ts, on the other core.
  checkSeeds(1, Math.floor(CI_SEEDS / 2));

  it("keeps the seeds that once failed passing", () => {
    // 274: every replica rejuvenated in turn while the service was stalled forgot a committed
    // batch (agreement lost); the others: a replica declared recovered before the stable
    // checkpoint covered what its peers had prepared; 5049: a recovering primary that did not
    // pad to the checkpoint it was waiting for; 1137, 6424, 6441: checkpoint votes lost in a
    // partition and never sent again; 5705: a retransmitted PRE_PREPARE dropped as a duplicate
    // of a copy that had come while the replica could not use it; 159 (found by the aiming
    // adversary): a correct replica's VIEW_CHANGE lacked the body of a batch it had prepared,
    // pruned at a checkpoint after a view change had closed its slot, so no view formed; 5007:
    // a formerly compromised replica's stored view flood and a current one's moved every
    // correct replica past the view window of a rebooted one; 5385: an amnesic primary of the
    // next view could not form it, and with two silent Byzantine primaries among nine the view
    // changes never met; 2725: replicas ahead after a partition and those behind kept a
    // constant gap of views once their view-change timeouts reached the same cap; 3096: with a
    // recovering replica's padding proposed past the window, no view formed after a cold start;
    // 203: a request executed again after a cold start could not outvote its lost result; 3204:
    // replies from both sides of a cold start completed a write an unordered read then missed;
    // 588: a silent Byzantine replica's new key, known to the next primary only, kept every
    // other VIEW_CHANGE out of its view; 1783: a request executed and lost in a cold start,
    // proposed again by a Byzantine primary, took effect twice; 2684: a replica settling a cold
    // start by transfer answered a retransmission from its disk's client table; 7834: a cold
    // start found no checkpoint on k' + k + 1 disks while each kept only its last two; 9146:
    // a cold start before two lagging replicas had written any checkpoint, when the starting
    // state was not written down as one; 13, 15: the network replayed clients' old copies of
    // completed requests into their connections after a restart, and they were executed again.
    for (const seed of [
      13, 15, 159, 185, 203, 246, 274, 588, 775, 900, 1137, 1783, 2684, 2725, 3096, 3204, 5007,
      5049, 5120, 5385, 5705, 6424, 6441, 7834, 9146,
    ]) {
      const r = runSeed(seed);
      expect(r.violations, `seed ${seed}`).toEqual([]);
    }
  }, 120_000);

  it("aims requests at the primary and too few backups, and every operation still completes", () => {
    // The partial-send adversary: a request's first copy reaches the primary and fewer than
    // q - 1 backups; the others vote on the word of k' + 1, or a view change settles it.
    const seeds: number[] = [];
    for (let seed = 1; seed <= 200 && seeds.length < 3; seed++)
      if (scenarioFor(seed).partialSends !== undefined) seeds.push(seed);
    expect(seeds).toHaveLength(3);
    for (const seed of seeds) {
      const r = runSeed(seed);
      expect(r.violations, `seed ${seed}`).toEqual([]);
      expect(r.byzantineActions["partial-send"], `seed ${seed}`).toBeGreaterThan(0);
    }
  }, 60_000);

  it("replays clients' old copies into their connections after restarts, and none counts as the client's", () => {
    // The replay adversary: copies of requests the network saw go to a replica, replayed into
    // the clients' connections once it started again; only a copy MAC'd under its new session
    // may be held, proposed or voted for.
    const seeds: number[] = [];
    for (let seed = 1; seed <= 200 && seeds.length < 3; seed++)
      if (scenarioFor(seed).replayClientCopies === true) seeds.push(seed);
    expect(seeds).toHaveLength(3);
    for (const seed of seeds) {
      const r = runSeed(seed);
      expect(r.violations, `seed ${seed}`).toEqual([]);
      expect(r.byzantineActions["client-replay"], `seed ${seed}`).toBeGreaterThan(0);
    }
  }, 60_000);

  it("replays a seed exactly", () => {
    const digest = (seed: number) => {
      const hash = createHash("sha256");
      const result = runSimulation(scenarioFor(seed), { trace: (line) => hash.update(line) });
      return { result, trace: hash.digest("hex") };
    };
    const a = digest(12);
    const b = digest(12);
    expect(b.trace).toBe(a.trace);
    expect(b.result).toEqual(a.result);
    expect(digest(13).trace).not.toBe(a.trace);
  });

  it("catches a protocol run with quorums too small to intersect (the checks can fail)", () => {
    const caught: string[] = [];
    for (let seed = 1; seed <= 60 && caught.length === 0; seed++) {
      const scenario = scenarioFor(seed);
      if (scenario.n < 6 || scenario.byzantine.length === 0) continue;
      const r = runSimulation(scenario, { unsafeQuorum: 2 });
      if (!r.passed) caught.push(`${seed}: ${r.violations[0]}`);
    }
    expect(caught.length, "no seed caught a quorum of 2").toBeGreaterThan(0);
    expect(caught[0]).toMatch(/agreement|linearizability|recovery/);
  }, 120_000);
});
