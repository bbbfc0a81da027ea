/** The first half of the default run's seeds (project "sim"; the second half is in cluster-sim-regressions.test.ts). */
import { describe } from "vitest";
import { CI_SEEDS, checkSeeds } from "./sim-seeds.js";

describe("the deterministic cluster simulation, seeds", () => {
  checkSeeds(1, Math.floor(CI_SEEDS / 2));
});
