/**
 * What a batch digest stands for (finding 2): every byte that decides execution. Hand-delivered
 * messages to the real core: a Byzantine VIEW_CHANGE cannot swap a prepared batch's body, and a
 * forged copy of a request the replica has seen is not the same request.
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
    const digest = batchDigest([put]);
    // r1 and r3 prepared [put] at seq 1 in view 0 (r2 missed it); r4 lies that its body is empty.
    const honest = viewChangeBody(1, genesis, {
      prepared: [{ seq: 1, view: 0, digest }],
      prePrepared: [{ seq: 1, view: 0, digest }],
      batches: [{ digest, requests: [put] }],
    });
    const lying = viewChangeBody(1, genesis, {
      prepared: [{ seq: 1, view: 0, digest }],
      prePrepared: [{ seq: 1, view: 0, digest }],
      batches: [{ digest, requests: [] }],
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

describe("a request and a forged copy of it", () => {
  it("are two requests: a PRE_PREPARE carrying the forged copy is refused even after the genuine one was verified", () => {
    const { core, from, request, signers } = fourReplicas("r2");
    const genuine = request(1);
    const forged = request(1, genuine.op, signers.get("r1"));
    expect(forged.sig).not.toBe(genuine.sig);
    expect(batchDigest([forged])).not.toBe(batchDigest([genuine]));
    // r2 verifies the genuine request (the client sent it to every replica).
    core.onClientMessage("c1", encodeClientMessage({ type: "REQUEST", request: genuine }), 1);
    // The Byzantine primary r1 proposes the copy whose signature is its own.
    const actions = core.onMessage(
      from("r1", {
        type: "PRE_PREPARE",
        view: 0,
        seq: 1,
        digest: batchDigest([forged]),
        requests: [forged],
      } as ReplicaBody),
      2,
    );
    expect(problems(actions)).toContain("bad-signature");
    expect(problems(actions)).toContain("bad-pre-prepare");
    expect(broadcasts(actions, "PREPARE")).toHaveLength(0);
  });
});
