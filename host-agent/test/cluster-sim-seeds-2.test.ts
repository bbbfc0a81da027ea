/** One half of the seeds `npm test` runs (project "sim"); the other is in cluster-sim-seeds-1.test.ts. */
import { describe } from "vitest";
import { checkHalf } from "./sim-seeds.js";

describe("the deterministic cluster simulation, seeds (second half)", () => {
  checkHalf(1);
});
