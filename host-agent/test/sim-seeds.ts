/** A range of simulation seeds as one test: every seed must keep every check. */
import { expect, it } from "vitest";
import { runSeed } from "../src/sim/run-seeds.js";

/** Seeds the default run covers (the full count is `npm run sim`); split over two files. */
export const CI_SEEDS = Number(process.env.SMW_SIM_SEEDS ?? 60);

export function checkSeeds(from: number, to: number): void {
  it(`keeps agreement, linearizability, recovery and liveness on seeds ${from}..${to}`, () => {
    const failed: string[] = [];
    let completed = 0;
    let rejuvenations = 0;
    let transfers = 0;
    let views = 0;
    const count = to - from + 1;
    for (let seed = from; seed <= to; seed++) {
      const r = runSeed(seed);
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
  }, 600_000);
}
