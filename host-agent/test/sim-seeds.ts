/**
 * The simulation's seeds as `npm test` runs them (project "sim", two files side by side): the
 * first `CI_SEEDS` seeds with the scenario tests that look into the same runs
 * (cluster-sim.test.ts), and every seed that once failed (cluster-sim-seeds.test.ts). A seed's
 * run is made once per file (`seedRun`), however many tests look at it.
 */
import { expect, it } from "vitest";
import { runSeed } from "../src/sim/run-seeds.js";

/** Seeds the default run covers (the full count is `npm run sim`). */
export const CI_SEEDS = Number(process.env.SMW_SIM_SEEDS ?? 30);

// Seeds that once failed. 274: every replica rejuvenated in turn while the service was stalled
// forgot a committed batch (agreement lost); the others: a replica declared recovered before the stable
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
// completed requests into their connections after a restart, and they were executed again;
// 7374: a cold start while two replicas lagged at 28 and two disks were forged found no
// checkpoint on k' + k + 1 disks while each kept only its newest three; 49, 213 (the aimed
// mobile adversary): a revoked host's stored PREPAREs and COMMITs for two batches and the next
// primary's equivocation on them gave two halves commit certificates for different batches.
// 1150 (a faulty client sending to the primary alone, after a cold start): a batch holding its
// request alone stalled everything behind it, no backup having a request of its own to time;
// 887: a request a NEW_VIEW re-proposed was timed with no deadline armed, and stalled again;
// 299: a Byzantine primary showed a rejuvenated replica a NEW_VIEW not fresh for it (its own
// VIEW_CHANGE claiming the replica's old key) and the others the real one: it never voted again.
// 2658 (the checker's): a Byzantine primary's two NEW_VIEWs for a cold start's first view had
// correct replicas settle on checkpoints 48 and 32; the checker took the last reported (32) as
// the era's start, and called the era's executions from 49 on a gap at 33.
// 142, 535, 568 (clients judging votes under leases): a replica rejuvenated after its reply to a
// write, its former vote lapsed, answered the retransmission under its new key, and the client
// dropped that as a repeat: the write never completed.
/**
 * The simulation's tests run at idle priority beside the rest of npm test (`scripts/run-tests.mjs`)
 * and take only the CPU the others leave: their timeout catches a hang, not a slow run (a 120 s
 * one timed out while the unit tests and the rig had the cores).
 */
export const SIM_TEST_TIMEOUT_MS = 600_000;

export const SEEDS_THAT_ONCE_FAILED: readonly number[] = [
  13, 15, 49, 159, 185, 203, 213, 246, 274, 299, 588, 775, 887, 900, 1137, 1150, 1783, 2684, 2725,
  2658, 3096, 3204, 5007, 5049, 5120, 5385, 5705, 6424, 6441, 7374, 7834, 9146, 142, 535, 568,
];

const runs = new Map<number, ReturnType<typeof runSeed>>();

/** A seed's run, made once: a run is a pure function of its seed, and tests only read it. */
export function seedRun(seed: number): ReturnType<typeof runSeed> {
  let run = runs.get(seed);
  if (run === undefined) {
    run = runSeed(seed);
    runs.set(seed, run);
  }
  return run;
}

/** Every seed that once failed, as one test. */
export function checkOnceFailed(): void {
  it(
    `keeps the seeds that once failed passing (${SEEDS_THAT_ONCE_FAILED.join(", ")})`,
    () => {
      const failed: string[] = [];
      for (const seed of SEEDS_THAT_ONCE_FAILED) {
        const r = seedRun(seed);
        if (!r.passed)
          failed.push(`seed ${seed}: ${r.violations[0]} (replay: npm run sim -- --trace ${seed})`);
      }
      expect(failed, failed.join("\n")).toEqual([]);
    },
    SIM_TEST_TIMEOUT_MS,
  );
}

/** A range of simulation seeds as one test: every seed must keep every check. */
export function checkSeeds(from: number, to: number): void {
  it(
    `keeps agreement, linearizability, recovery and liveness on seeds ${from}..${to}`,
    () => {
      const failed: string[] = [];
      let completed = 0;
      let rejuvenations = 0;
      let transfers = 0;
      let views = 0;
      const count = to - from + 1;
      for (let seed = from; seed <= to; seed++) {
        const r = seedRun(seed);
        completed += r.completed;
        rejuvenations += r.rejuvenations;
        transfers += r.stateTransfers;
        views += r.viewChanges;
        if (!r.passed)
          failed.push(`seed ${seed}: ${r.violations[0]} (replay: npm run sim -- --trace ${seed})`);
      }
      expect(failed, failed.join("\n")).toEqual([]);
      // The runs did what they are for: load, rejuvenations, transfers, view changes.
      expect(completed).toBeGreaterThan(count * 50);
      expect(rejuvenations).toBeGreaterThan(count);
      expect(transfers).toBeGreaterThan(count / 2);
      expect(views).toBeGreaterThan(count);
    },
    SIM_TEST_TIMEOUT_MS,
  );
}
