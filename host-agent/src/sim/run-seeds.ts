/**
 * Runs a range of seeds and reports. Used by `npm run sim` (in worker
 * threads, one per core) and by the tests.
 */
import { runSimulation, type SimResult } from "./cluster-sim.js";
import { scenarioFor } from "./sim-scenario.js";

export function runSeed(seed: number): SimResult {
  try {
    return runSimulation(scenarioFor(seed));
  } catch (error) {
    // A crash is a failure of that seed like any other: report it with the seed.
    return {
      seed,
      passed: false,
      violations: [`crash: ${(error as Error).stack ?? String(error)}`],
      completed: 0,
      executedSeqs: 0,
      coldStarts: 0,
      lostToColdStart: 0,
      viewChanges: 0,
      rejuvenations: 0,
      stateTransfers: 0,
      rejected: 0,
      simulatedMs: 0,
      byzantineActions: {},
      rejectedFromByzantine: {},
      replicaCounters: {},
    };
  }
}

/** The counts of every run added up, and the runs that failed. */
export type SeedSummary = Omit<SimResult, "seed" | "passed" | "violations"> & {
  seeds: number;
  failed: SimResult[];
};

export function summarize(results: readonly SimResult[]): SeedSummary {
  const sum = (f: (r: SimResult) => number) => results.reduce((t, r) => t + f(r), 0);
  return {
    seeds: results.length,
    failed: results.filter((r) => !r.passed),
    completed: sum((r) => r.completed),
    executedSeqs: sum((r) => r.executedSeqs),
    coldStarts: sum((r) => r.coldStarts),
    lostToColdStart: sum((r) => r.lostToColdStart),
    viewChanges: sum((r) => r.viewChanges),
    rejuvenations: sum((r) => r.rejuvenations),
    stateTransfers: sum((r) => r.stateTransfers),
    rejected: sum((r) => r.rejected),
    simulatedMs: sum((r) => r.simulatedMs),
    byzantineActions: addUp(results.map((r) => r.byzantineActions)),
    rejectedFromByzantine: addUp(results.map((r) => r.rejectedFromByzantine)),
    replicaCounters: addUp(results.map((r) => r.replicaCounters)),
  };
}

function addUp(counts: ReadonlyArray<Record<string, number>>): Record<string, number> {
  const total: Record<string, number> = {};
  for (const c of counts) for (const [k, n] of Object.entries(c)) total[k] = (total[k] ?? 0) + n;
  return total;
}
