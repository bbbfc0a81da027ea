/**
 * What a batch digest stands for (finding 2): every byte that decides execution. Hand-delivered
 * messages to the real core: a Byzantine VIEW_CHANGE cannot swap a prepared batch's body, and a
 * request no client sent gets no vote.
 */
import { describe, expect, it } from "vitest";
import {
  batchDigest,
  type ClientRequest,
  encodeClientMessage,
  type ReplicaBody,
} from "../src/replica/messages.js";
import type { ReplicaAction } from "../src/replica/replica-core.js";
import { fourReplicas, viewChangeBody } from "./replica-harness.js";

const problems = (actions: ReplicaAction[]) =>
  actions.filter((a) => a.type === "problem").map((a) => (a as { kind: string }).kind);
const broadcasts = (actions: ReplicaAction[], type: string) =>
  actions.filter(
    (a) => a.type === "broadcast" && a.message.toString("utf8").includes(`"type":"${type}"`),
  );

describe("a VIEW_CHANGE carrying a prepared batch", () => {
  it("with a body that is not the batch its digest names is refused: the new view executes what was agreed", () => {
    const { core, from, request } = fourReplicas("r2");
    const genesis = core.stableCheckpoint;
    const put = request(1);
    const digest = batchDigest("r1@0", [put]);
    // r1 and r3 prepared [put] at seq 1 in view 0 (r2 missed it); r4 lies that its body is empty.
    const honest = viewChangeBody(1, genesis, {
      prepared: [{ seq: 1, view: 0, digest }],
      prePrepared: [{ seq: 1, view: 0, digest }],
      batches: [{ digest, origin: "r1@0", requests: [put] }],
    });
    const lying = viewChangeBody(1, genesis, {
      prepared: [{ seq: 1, view: 0, digest }],
      prePrepared: [{ seq: 1, view: 0, digest }],
      batches: [{ digest, origin: "r1@0", requests: [] }],
    });
    let now = 0;
    const seen: ReplicaAction[] = [];
    seen.push(...core.onMessage(from("r1", honest), ++now));
    const refused = core.onMessage(from("r4", lying), ++now);
    expect(problems(refused)).toEqual(["bad-view-change"]);
    seen.push(...refused, ...core.onMessage(from("r3", honest), ++now));
    // r2, the primary of view 1, formed it from r1, r3 and itself.
    expect(broadcasts(seen, "NEW_VIEW")).toHaveLength(1);
    expect(core.currentView).toBe(1);
    for (const peer of ["r1", "r3"])
      seen.push(...core.onMessage(from(peer, { type: "PREPARE", view: 1, seq: 1, digest }), ++now));
    for (const peer of ["r1", "r3"])
      seen.push(...core.onMessage(from(peer, { type: "COMMIT", view: 1, seq: 1, digest }), ++now));
    const executed = seen.filter((a) => a.type === "executed");
    expect(executed).toHaveLength(1);
    expect((executed[0] as { requests: readonly ClientRequest[] }).requests).toEqual([put]);
    expect(core.readValue("x")).toBe("1");
  });
});

describe("a request no client sent", () => {
  it("in a Byzantine primary's PRE_PREPARE gets no PREPARE, even once the genuine request with that number came from its client", () => {
    const { core, from, request, clientCopy } = fourReplicas("r2");
    const genuine = request(1);
    // Requests carry no signature: nothing in the fabricated one tells it apart but that its
    // client never sent it to r2.
    const fabricated = request(1, { op: "put", key: "x", value: "fabricated" });
    expect(batchDigest("r1@0", [fabricated])).not.toBe(batchDigest("r1@0", [genuine]));
    // c1 sent r2 its genuine request, MAC'd under their session.
    core.onClientMessage("c1", clientCopy(genuine), 1);
    // The Byzantine primary r1 proposes the fabricated one at seq 1.
    const actions = core.onMessage(
      from("r1", {
        type: "PRE_PREPARE",
        view: 0,
        seq: 1,
        digest: batchDigest("r1@0", [fabricated]),
        origin: "r1@0",
        requests: [fabricated],
      } as ReplicaBody),
      2,
    );
    expect(broadcasts(actions, "PREPARE")).toHaveLength(0);
    expect(core.counters.get("votes.awaiting-client")).toBe(1);
    // A copy of it without a MAC (the primary passing it off on the client's connection, or the
    // network) changes nothing.
    const unmacd = core.onClientMessage(
      "c1",
      encodeClientMessage({ type: "REQUEST", request: fabricated }),
      3,
    );
    expect(broadcasts(unmacd, "PREPARE")).toHaveLength(0);
    // k' = 1: one more word for it (a second Byzantine replica) is beyond the fault model; the
    // primary's PRE_PREPARE alone is k' words, not k' + 1.
    expect(core.executedUpTo).toBe(0);
  });

  it("gets no PREPARE on the words of replicas compromised one after the other: a revoked host's stored word no longer vouches", () => {
    // The mobile adversary at a reset, k' = 1. First r1, the Byzantine primary, proposes a
    // request c1 never sent, and is taken down (its key revoked); then the adversary holds r3,
    // which PREPAREs it.
    const revokedPrimary = fourReplicas("r2");
    const fabricated = revokedPrimary.request(1, { op: "put", key: "x", value: "fabricated" });
    const digest = batchDigest("r1@0", [fabricated]);
    const prePrepare = (h: ReturnType<typeof fourReplicas>) =>
      h.from("r1", {
        type: "PRE_PREPARE",
        view: 0,
        seq: 1,
        digest,
        origin: "r1@0",
        requests: [fabricated],
      } as ReplicaBody);
    revokedPrimary.core.onMessage(prePrepare(revokedPrimary), 1);
    revokedPrimary.core.revokeKeys(["r1"], 1, 2);
    const afterPrimary = revokedPrimary.core.onMessage(
      revokedPrimary.from("r3", { type: "PREPARE", view: 0, seq: 1, digest }),
      3,
    );
    expect(broadcasts(afterPrimary, "PREPARE")).toHaveLength(0);
    // Or first r3 PREPAREs it and is taken down, then the adversary holds r1, the primary.
    const revokedBackup = fourReplicas("r2");
    revokedBackup.core.onMessage(
      revokedBackup.from("r3", { type: "PREPARE", view: 0, seq: 1, digest }),
      1,
    );
    revokedBackup.core.revokeKeys(["r3"], 1, 2);
    const afterBackup = revokedBackup.core.onMessage(prePrepare(revokedBackup), 3);
    expect(broadcasts(afterBackup, "PREPARE")).toHaveLength(0);
    expect(revokedBackup.core.counters.get("votes.attested") ?? 0).toBe(0);
    // Without a revocation the same two words attest it (k' + 1 = 2): both cases above are the
    // revocation's doing.
    const control = fourReplicas("r2");
    control.core.onMessage(prePrepare(control), 1);
    const attested = control.core.onMessage(
      control.from("r3", { type: "PREPARE", view: 0, seq: 1, digest }),
      3,
    );
    expect(broadcasts(attested, "PREPARE")).toHaveLength(1);
  });
});
