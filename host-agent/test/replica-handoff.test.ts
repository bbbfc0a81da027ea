/** The planned hand-off of a primary whose host is about to be rejuvenated, on the real core. */
import { describe, expect, it } from "vitest";
import { parseEnvelope, sealEnvelope } from "../src/replica/messages.js";
import { replicaCluster } from "./replica-cluster.js";
import { fourReplicas, statusBody } from "./replica-harness.js";

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

  it("a view made fresh for a rejuvenated replica is led by the group before it, so the next group's shutdown hands nothing off", () => {
    // The boards rejuvenate r3, r1, r4, r2 in that order; r1 comes back with a new key and says
    // it lost its memory. The fresh view must be led by r3 (view 2), not by r2 (view 1): r4 goes
    // down next, then r2, and a view led by r2 would be handed off again within a period.
    const order = [["r3"], ["r1"], ["r4"], ["r2"]];
    const { core, crypto, cert } = fourReplicas("r4", { rejuvenationGroups: order });
    const fresh = crypto.newSigner("r1-e5");
    const say = (body: Parameters<typeof sealEnvelope>[2]) =>
      sealEnvelope("r1", 5, body, (b) => fresh.sign(b));
    core.onMessage(say({ type: "NEW_KEY", certificate: cert("r1", 5, fresh) }), 1);
    const sent = core.onMessage(say(statusBody({ recovering: true, amnesic: true })), 2);
    expect(handedTo(sent)).toBe(2);
  });

  it("in id order, to the replica k places before", () => {
    const { core } = fourReplicas("r1");
    // r1 goes first; the group before it (cyclically) is r4's: view 3.
    expect(handedTo(core.prepareShutdown(10))).toBe(3);
  });

  it("is followed by every replica to the view the departing primary asks for", () => {
    // n = 6, groups of one in id order: r1's hand-off goes to r6 (view 5). A follower that read
    // the view off its own group asked for another (r2 for view 6, led by r1 again), refused the
    // NEW_VIEW the others formed as below its own VIEW_CHANGE, and stayed out of the view.
    const c = replicaCluster(6, 1, 1);
    for (const id of c.ids) c.boot(id, { recovering: false });
    c.deliver(() => true);
    c.run(300, () => true);
    const before = new Map(c.ids.map((id) => [id, (c.sent.get(id) ?? []).length]));
    c.shutDown("r1");
    c.run(300, () => true);
    for (const id of c.ids) {
      const actions = (c.sent.get(id) ?? []).slice(before.get(id));
      const asked = actions.flatMap((a) => {
        if (a.type !== "broadcast") return [];
        const body = parseEnvelope(a.message)?.body;
        return body?.type === "VIEW_CHANGE" ? [body.newView] : [];
      });
      expect(asked, id).toEqual([5]);
      expect(
        actions.filter((a) => a.type === "problem"),
        id,
      ).toEqual([]);
      expect(c.cores.get(id)?.currentView, id).toBe(5);
    }
  });
});
