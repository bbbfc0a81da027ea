/**
 * A backup votes only for requests their own clients sent it since it started (SAFETY.md,
 * "Validity before agreement"): a validly signed request that a Byzantine primary proposes again
 * (one executed before a cold start and lost with it, which the client will never send again)
 * gathers no PREPARE from a correct replica, while a request its client did send is voted for as
 * soon as it arrives, whichever came first, the client's copy or the PRE_PREPARE. Four real
 * cores, n = 4, k' = 1: r1 is the Byzantine primary of view 0.
 */
import { describe, expect, it } from "vitest";
import { KvStore } from "../src/kv/kv-store.js";
import { batchDigest, parseEnvelope, requestDigest } from "../src/replica/messages.js";
import type { ReplicaAction } from "../src/replica/replica-core.js";
import { bodiesOf, replicaCluster } from "./replica-cluster.js";

const executed = (actions: readonly ReplicaAction[]) =>
  actions.filter((a) => a.type === "executed") as Array<
    Extract<ReplicaAction, { type: "executed" }>
  >;

/** Each of `ids` executed batch 1 since `since` began counting, and holds `value` at `key`. */
function expectExecutedFirst(
  c: ReturnType<typeof replicaCluster>,
  ids: readonly string[],
  since: (id: string) => readonly ReplicaAction[],
  key: string,
  value: string,
): void {
  for (const id of ids) {
    expect(
      executed(since(id)).map((e) => e.seq),
      id,
    ).toEqual([1]);
    expect(c.cores.get(id)?.readValue(key), id).toBe(value);
  }
}

describe("where a backup's vote for a request comes from", () => {
  it("never votes for a request its client did not send it, and votes once the client does", () => {
    const c = replicaCluster(4, 1, 0);
    const correct = ["r2", "r3", "r4"];
    for (const id of correct) c.boot(id, { recovering: false });
    c.deliver(() => false);
    const replayed = [c.request(5, { op: "put", key: "x", value: "old" })];
    const origin = c.originOf("r1");
    const slot = { view: 0, seq: 1, digest: batchDigest(origin, replayed) };
    const sentBefore = new Map(correct.map((id) => [id, c.sent.get(id)?.length ?? 0]));
    const since = (id: string) => (c.sent.get(id) ?? []).slice(sentBefore.get(id));

    // r1 proposes a request no client sent this era, and commits it itself.
    const prePrepare = c.speakAs("r1", {
      type: "PRE_PREPARE",
      ...slot,
      origin,
      requests: replayed,
    });
    for (const id of correct) c.hand(id, prePrepare);
    for (const id of correct) c.hand(id, c.speakAs("r1", { type: "COMMIT", ...slot }));
    c.deliver((m) => m.to !== "r1");
    for (const id of correct) {
      expect(bodiesOf(since(id), "PREPARE"), id).toEqual([]);
      expect(bodiesOf(since(id), "COMMIT"), id).toEqual([]);
      expect(executed(since(id)), id).toEqual([]);
      expect(c.cores.get(id)?.readValue("x")).toBeNull();
    }

    // A Byzantine backup's word added to the primary's is still only k' + 1 with the primary
    // counted twice: nothing. (r1 speaking as a backup is refused; its PREPARE is its PRE_PREPARE.)
    for (const id of correct) c.hand(id, c.speakAs("r1", { type: "PREPARE", ...slot }));
    c.deliver((m) => m.to !== "r1");
    for (const id of correct) expect(bodiesOf(since(id), "PREPARE"), id).toEqual([]);

    // The client does send it (it is still waiting for it): r2 and r3 vote as it arrives, r4
    // votes on the word of k' + 1 others, and all three execute it.
    c.fromClient("r2", replayed[0] as (typeof replayed)[number]);
    expect(bodiesOf(since("r2"), "PREPARE")).toEqual([{ type: "PREPARE", ...slot }]);
    c.fromClient("r3", replayed[0] as (typeof replayed)[number]);
    c.deliver((m) => m.to !== "r1");
    expectExecutedFirst(c, correct, since, "x", "old");
    expect(bodiesOf(since("r4"), "PREPARE")).toEqual([{ type: "PREPARE", ...slot }]);
    expect(bodiesOf(since("r4"), "COMMIT")).toEqual([{ type: "COMMIT", ...slot }]);
  });

  it("takes no vote from a copy the network replays into the client's connection after the replica started again: only a copy MAC'd under its new session counts", () => {
    const c = replicaCluster(4, 1, 0);
    const correct = ["r2", "r3", "r4"];
    for (const id of correct) c.boot(id, { recovering: false });
    c.deliver(() => false);
    const request = c.request(5, { op: "put", key: "x", value: "old" });
    // The client's copies of a request it sent before the replicas started again (and saw
    // completed), as the network saw them go by.
    const seen = new Map(correct.map((id) => [id, c.clientCopy(id, request)]));
    for (const id of correct) c.rejuvenate(id, { recovering: false });
    c.deliver((m) => m.to !== "r1" && m.from !== "r1");
    const sentBefore = new Map(correct.map((id) => [id, c.sent.get(id)?.length ?? 0]));
    const since = (id: string) => (c.sent.get(id) ?? []).slice(sentBefore.get(id));
    const origin = c.originOf("r1");
    const slot = { view: 0, seq: 1, digest: batchDigest(origin, [request]) };

    // The Byzantine r1 proposes it again and commits it; the network replays the client's old
    // copies into the client's connections to every correct replica.
    for (const id of correct) {
      c.hand(id, c.speakAs("r1", { type: "PRE_PREPARE", ...slot, origin, requests: [request] }));
      c.hand(id, c.speakAs("r1", { type: "COMMIT", ...slot }));
      const core = c.cores.get(id);
      const replayed = core?.onClientMessage("c1", seen.get(id) as Buffer, c.nowMs) ?? [];
      c.sent.set(id, [...(c.sent.get(id) ?? []), ...replayed]);
      expect(core?.counters.get("requests.not-fresh"), id).toBe(1);
    }
    c.deliver((m) => m.to !== "r1");
    for (const id of correct) {
      expect(bodiesOf(since(id), "PREPARE"), id).toEqual([]);
      expect(executed(since(id)), id).toEqual([]);
      expect(c.cores.get(id)?.readValue("x"), id).toBeNull();
    }
  });

  it("votes on the word of k' + 1 others: a request sent to the primary and one backup alone still executes", () => {
    const c = replicaCluster(4, 1, 0);
    const ids = ["r1", "r2", "r3", "r4"];
    for (const id of ids) c.boot(id, { recovering: false });
    c.deliver(() => false);
    const request = c.request(7, { op: "put", key: "y", value: "partial" });
    const sentBefore = new Map(ids.map((id) => [id, c.sent.get(id)?.length ?? 0]));
    const since = (id: string) => (c.sent.get(id) ?? []).slice(sentBefore.get(id));
    // A faulty client sends it to the primary r1 and to r2 only. Before, r3 and r4 waited for it
    // from the client and the batch never prepared: every request behind it waited for a view
    // change.
    c.fromClient("r1", request);
    c.fromClient("r2", request);
    c.deliver(() => true);
    expectExecutedFirst(c, ids, since, "y", "partial");
    for (const id of ["r3", "r4"])
      expect(c.cores.get(id)?.counters.get("votes.attested"), id).toBe(1);
  });

  it("answers a request again from its client table only once its state is known good", () => {
    const c = replicaCluster(4, 1, 0);
    const request = c.request(7, { op: "put", key: "x", value: "lost" });
    // A disk that records the request executed at seq 8 (a state no quorum vouched for: a
    // cold start may have gone back before it, or an intruder may have written it).
    const store = new KvStore();
    store.apply({ op: "put", key: "x", value: "lost" });
    const stored = {
      seq: 8,
      snapshot: store.snapshot(),
      clients: [
        {
          client: "c1",
          ts: 7,
          result: { op: "put" as const, previous: null },
          seq: 8,
          op: requestDigest(request),
        },
      ],
    };
    const replies = (id: string) =>
      (c.sent.get(id) ?? []).filter(
        (a) =>
          a.type === "reply" &&
          a.client === "c1" &&
          parseEnvelope(a.message)?.body.type === "REPLY",
      ).length;
    c.boot("r2", { recovering: true, checkpoint: stored });
    c.boot("r3", { recovering: false, checkpoint: stored });
    c.fromClient("r2", request);
    c.fromClient("r3", request);
    // r2 is recovering: its table is what its disk says, not yet the service's state.
    expect(replies("r2")).toBe(0);
    // r3 started from a state it trusts (an ordinary restart): it answers the retransmission.
    expect(replies("r3")).toBe(1);
  });
});
