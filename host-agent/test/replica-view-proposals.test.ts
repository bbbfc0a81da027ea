/**
 * A replica that entered a view while it was still fetching its state keeps what that view's
 * NEW_VIEW fixed above the state it then installs: the batches a new primary re-proposed under
 * their first proposer's origin. Installing a state clears its slots; without this it refused
 * the primary's retransmitted PRE_PREPARE of such a batch (the origin is not the primary's) and
 * waited for peers' reports instead. Real cores, n = 4, k' = 1.
 */
import { describe, expect, it } from "vitest";
import { batchDigest } from "../src/replica/messages.js";
import type { ReplicaAction } from "../src/replica/replica-core.js";
import { replicaCluster } from "./replica-cluster.js";

const typeOf = (message: Buffer) =>
  (JSON.parse(message.toString("utf8").split("\n")[1] as string) as { type: string }).type;

const problems = (actions: readonly ReplicaAction[], kind: string) =>
  actions.filter((a) => a.type === "problem" && a.kind === kind);

describe("a NEW_VIEW's re-proposals, at a replica that installs its state after entering the view", () => {
  // Also with VIEW_CHANGEs that carry no bodies: r4 then enters the view lacking the batch's body,
  // and installing its state forgot the slot whose digest the NEW_VIEW fixed.
  it.each([
    ["with the bodies in the VIEW_CHANGEs", {}],
    ["while it still fetches their bodies", { viewChangeBodyBytes: 0 }],
  ])(
    "are kept through the state it installs, and the primary's retransmission is taken, %s",
    (_, overrides) => {
      const c = replicaCluster(4, 1, 0, overrides);
      for (const id of c.ids) c.boot(id, { recovering: false });
      c.deliver(() => true);
      // r4 is rejuvenated; its new key reaches everyone, nothing else of it or to it yet.
      const r4 = c.rejuvenate("r4", { recovering: true });
      const sentBefore = c.sent.get("r4")?.length ?? 0;
      c.deliver((m) => m.from === "r4" && typeOf(m.message) === "NEW_KEY");
      // r1 proposes c1's write at seq 1; r1, r2 and r3 prepare it, and no COMMIT arrives.
      const request = c.request(1, { op: "put", key: "x", value: "1" });
      for (const id of ["r1", "r2", "r3"]) c.fromClient(id, request);
      const notR4 = (m: { from: string; to: string }) => m.from !== "r4" && m.to !== "r4";
      c.deliver((m) => notR4(m) && typeOf(m.message) !== "COMMIT");
      // No COMMIT arrives: the backups time the write and change views, and r2, primary of view
      // 1, re-proposes the batch under r1's origin. r4 takes the NEW_VIEW while it still has no
      // state of its own, and nothing else.
      const phase2 = (m: { from: string; to: string; message: Buffer }) =>
        notR4(m)
          ? typeOf(m.message) !== "COMMIT"
          : m.to === "r4" && typeOf(m.message) === "NEW_VIEW";
      for (let step = 0; step < 300 && r4.currentView === 0; step++) c.run(10, phase2);
      expect(c.cores.get("r2")?.currentView).toBe(1);
      expect(r4.currentView).toBe(1);
      expect(r4.status).toBe("recovering");
      // Each peer sends the NEW_VIEW on to a replica whose STATUS shows an older view: a copy that
      // comes once it is in the view is not checked and entered again while it fetches its state.
      const newView = (c.sent.get("r2") ?? []).find(
        (a) => a.type === "broadcast" && typeOf(a.message) === "NEW_VIEW",
      ) as { message: Buffer } | undefined;
      expect(newView).toBeDefined();
      const again = r4.onMessage(newView?.message as Buffer, c.nowMs);
      expect(again.filter((a) => a.type === "view")).toEqual([]);
      // Now all but COMMITs flow: r4 installs the state at checkpoint 0; the batch, not yet
      // executed anywhere, reaches it again only as r2's retransmitted PRE_PREPARE.
      // (300 ms: within view 1's timeout, which the stalled batch would otherwise run out.)
      c.run(300, (m) => typeOf(m.message) !== "COMMIT");
      expect(r4.status).toBe("normal");
      const since = () => (c.sent.get("r4") ?? []).slice(sentBefore);
      expect(problems(since(), "bad-pre-prepare")).toEqual([]);
      // And then everything: the view goes on, r4 with it.
      c.run(2_000, () => true);
      const digest = batchDigest(c.originOf("r1"), [request]);
      expect(problems(since(), "bad-pre-prepare")).toEqual([]);
      const executed = since().filter((a) => a.type === "executed");
      expect(executed.map((a) => (a as { seq: number; digest: string }).digest)).toContain(digest);
      expect(r4.readValue("x")).toBe("1");
    },
  );
});

describe("a request a NEW_VIEW re-proposes", () => {
  it("is timed again in the new view: a slot that stalls there too brings the next view change", () => {
    // No COMMIT and no HOLD ever arrives. The write stalls in view 0; view 1 re-proposes it and
    // it stalls again; the backups must time it there as well (the simulation, seed 887: timed
    // while the view was entered, it armed no deadline, and the service stopped for good).
    const c = replicaCluster(4, 1, 0);
    for (const id of c.ids) c.boot(id, { recovering: false });
    c.deliver(() => true);
    const request = c.request(1, { op: "put", key: "x", value: "1" });
    for (const id of c.ids) c.fromClient(id, request);
    const neither = (m: { message: Buffer }) => !["COMMIT", "HOLD"].includes(typeOf(m.message));
    c.run(5_000, neither);
    expect(Math.min(...[...c.cores.values()].map((core) => core.currentView))).toBeGreaterThan(1);
  });
});
