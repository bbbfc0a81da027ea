/**
 * How a replica moves between views when a view change does not complete: never back below a
 * view it asked for, and on to the least view that can still form.
 */
import { describe, expect, it } from "vitest";
import { parseEnvelope } from "../src/replica/messages.js";
import type { ReplicaAction } from "../src/replica/replica-core.js";
import { replicaCluster } from "./replica-cluster.js";
import { fourReplicas, newViewBody, viewChangeBody } from "./replica-harness.js";

const viewChangesSent = (actions: ReplicaAction[]) =>
  actions
    .filter((a) => a.type === "broadcast" && a.message.includes('"type":"VIEW_CHANGE"'))
    .map((a) => JSON.parse((a as { message: Buffer }).message.toString().split("\n")[1] as string))
    .map((b: { newView: number }) => b.newView);

describe("a replica changing views", () => {
  it("does not enter a view below one it sent a VIEW_CHANGE for (its VIEW_CHANGE would not know what it did there)", () => {
    const { core, from } = fourReplicas("r2");
    const genesis = core.stableCheckpoint;
    // r1 and r3 ask for view 3: r2 joins them.
    core.onMessage(from("r1", viewChangeBody(3, genesis)), 1);
    expect(viewChangesSent(core.onMessage(from("r3", viewChangeBody(3, genesis)), 2))).toEqual([3]);
    // A NEW_VIEW for view 2 (r3's), valid in itself, formed without r2.
    const vcs = ["r1", "r3", "r4"].map((id) => from(id, viewChangeBody(2, genesis)));
    const newView = from("r3", newViewBody(2, vcs, genesis));
    const refused = core.onMessage(newView, 3);
    expect(core.currentView).toBe(0);
    expect(core.counters.get("new-view.below-own-view-change")).toBe(1);
    // And it says so, for its console.
    expect(refused).toContainEqual(
      expect.objectContaining({ type: "problem", kind: "below-own-view-change", from: "r3" }),
    );
  });

  it("when its view does not form, moves to the least view that still can: a quorum not past it, its primary among them", () => {
    const { core, from } = fourReplicas("r2");
    const genesis = core.stableCheckpoint;
    core.onMessage(from("r1", viewChangeBody(6, genesis)), 1);
    expect(viewChangesSent(core.onMessage(from("r3", viewChangeBody(6, genesis)), 2))).toEqual([6]);
    // r4 alone is already asking for view 9: view 7, whose primary is r4, cannot form.
    core.onMessage(from("r4", viewChangeBody(9, genesis)), 3);
    // View 6's NEW_VIEW never comes; its timeout (500 ms) passes.
    const next = viewChangesSent(core.tick(10_000));
    expect(next).toEqual([8]);
  });

  it("alone, waits at the view it asked for instead of climbing away from its peers' views", () => {
    // n = 6. r4 alone follows a hand-off to view 5 that none of the others hears of (r1's HANDOFF
    // reaches r4 only, and r1 stays on). Climbing one view per timeout, r4 was at view 9 or more
    // ten seconds later, and refused every view its peers formed below that, as below its own
    // VIEW_CHANGE. Waiting (and sending its VIEW_CHANGE again), it joins the next view its peers
    // change to: here r1's real hand-off, to view 5.
    const c = replicaCluster(6, 1, 1);
    for (const id of c.ids) c.boot(id, { recovering: false });
    c.deliver(() => true);
    c.run(300, () => true);
    c.hand("r4", c.speakAs("r1", { type: "HANDOFF", view: 0 }));
    c.run(10_000, () => true);
    expect(c.cores.get("r1")?.currentView).toBe(0);
    const asked = (c.sent.get("r4") ?? []).flatMap((a) => {
      const body = a.type === "broadcast" ? parseEnvelope(a.message)?.body : undefined;
      return body?.type === "VIEW_CHANGE" ? [body.newView] : [];
    });
    expect(new Set(asked)).toEqual(new Set([5]));
    expect(asked.length).toBeGreaterThan(1);
    expect(c.cores.get("r4")?.counters.get("view-change.waiting")).toBeGreaterThan(0);
    c.shutDown("r1");
    c.run(1_000, () => true);
    for (const id of c.ids) expect(c.cores.get(id)?.currentView, id).toBe(5);
    const refused = (c.sent.get("r4") ?? []).filter(
      (a) => a.type === "problem" && a.kind === "below-own-view-change",
    );
    expect(refused).toEqual([]);
  });

  it("does not wait on what a peer that has since gone down said: only recent STATUS counts", () => {
    // n = 6: r1 hands off to view 5, led by r6, Byzantine, which sends its NEW_VIEW to r1 only.
    // r1 enters view 5, says so in a STATUS, and goes down for its rejuvenation. r6 says view 5
    // too: k' + 1 peers "in" the view. Counted for ever, that kept r2 to r5, a quorum, waiting
    // in a view change for as long as r1 was down.
    const c = replicaCluster(6, 1, 1);
    for (const id of c.ids) c.boot(id, { recovering: false });
    c.deliver(() => true);
    c.run(300, () => true);
    const typeOf = (m: Buffer) => parseEnvelope(m)?.body.type;
    const r6Withholds = (m: { from: string; to: string; message: Buffer }) =>
      !(m.from === "r6" && m.to !== "r1" && typeOf(m.message) === "NEW_VIEW");
    c.shutDown("r1");
    c.run(150, (m) =>
      m.from === "r1" && c.cores.get("r1")?.currentView === 5
        ? typeOf(m.message) === "STATUS"
        : r6Withholds(m),
    );
    expect(c.cores.get("r1")?.currentView).toBe(5);
    c.run(10_000, (m) => m.from !== "r1" && m.to !== "r1" && r6Withholds(m));
    const views = ["r2", "r3", "r4", "r5"].map((id) => c.cores.get(id)?.currentView ?? 0);
    expect(new Set(views).size).toBe(1);
    expect(views[0]).toBeGreaterThan(5);
  });
});
