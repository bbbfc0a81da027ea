/**
 * Every seed of the simulation that once failed (project "sim"); the first seeds run beside it,
 * in cluster-sim.test.ts.
 */
import { describe } from "vitest";
import { checkOnceFailed } from "./sim-seeds.js";

describe("the deterministic cluster simulation, seeds that once failed", () => {
  checkOnceFailed();
});
