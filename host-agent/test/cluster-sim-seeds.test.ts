/** The second half of the default run's seeds: a file of its own, so it runs on the other core. */
import { describe } from "vitest";
import { CI_SEEDS, checkSeeds } from "./sim-seeds.js";

describe("the deterministic cluster simulation, more seeds", () => {
  checkSeeds(Math.floor(CI_SEEDS / 2) + 1, CI_SEEDS);
});
