/** The planned hand-off of a primary whose host is about to be rejuvenated, on the real core. */
import { describe, expect, it } from "vitest";
import { fourReplicas } from "./replica-harness.js";

const handedTo = (
  actions: ReturnType<ReturnType<typeof fourReplicas>["core"]["prepareShutdown"]>,
) =>
  actions
    .filter((a) => a.type === "broadcast")
    .map((a) =>
      JSON.parse((a as { message: Buffer }).message.toString("utf8").split("\n")[1] as string),
    )
    .find((b: { type: string }) => b.type === "VIEW_CHANGE")?.newView as number | undefined;

describe("a planned hand-off", () => {
  it("goes to the replica rejuvenated just before, in the testbed's order, not the next to go", () => {
    // The boards rejuvenate r3, r1, r4, r2 in that order (k = 1): r1's hand-off must go to r3
    // (view 2), not to r4 (view 3, the id-order choice), which goes down right after r1.
    const { core } = fourReplicas("r1", { rejuvenationGroups: [["r3"], ["r1"], ["r4"], ["r2"]] });
    expect(core.currentView).toBe(0);
    expect(handedTo(core.prepareShutdown(10))).toBe(2);
  });

  it("in id order, to the replica k places before", () => {
    const { core } = fourReplicas("r1");
    // r1 goes first; the group before it (cyclically) is r4's: view 3.
    expect(handedTo(core.prepareShutdown(10))).toBe(3);
  });
});
