/**
 * A revoked host's stored votes (`forgetUnsettledWordsOf` in keys.ts). Under a mobile adversary
 * the host compromised before a reset can leave PREPAREs and COMMITs behind at its peers; once its
 * key is revoked, they must not join the votes of the replica compromised next in a certificate
 * that had not formed yet: that would be k' + 1 Byzantine voices in one quorum. Each case runs
 * twice, the same messages in the same order, with and without the revocation between them.
 */
import { describe, expect, it } from "vitest";
import { batchDigest, type ReplicaBody } from "../src/replica/messages.js";
import type { ReplicaAction } from "../src/replica/replica-core.js";
import { fourReplicas } from "./replica-harness.js";

const sent = (actions: ReplicaAction[], type: string) =>
  actions.some(
    (a) => a.type === "broadcast" && a.message.toString("utf8").includes(`"type":"${type}"`),
  );

/** r2 of four (q = 3), c1's request in hand; r3's `early` vote comes first, then `rest` in turn. */
function run(revokeR3: boolean, early: "PREPARE" | "COMMIT", rest: Array<[string, string]>) {
  const { core, from, request, clientCopy } = fourReplicas("r2");
  let now = 0;
  const put = request(1);
  const digest = batchDigest("r1@0", [put]);
  const vote = (type: string): ReplicaBody =>
    ({ type, view: 0, seq: 1, digest }) as unknown as ReplicaBody;
  core.onClientMessage("c1", clientCopy(put), ++now);
  core.onMessage(from("r3", vote(early)), ++now);
  if (revokeR3) core.revokeKeys(["r3"], 1, ++now);
  const actions: ReplicaAction[] = [];
  for (const [peer, type] of rest)
    actions.push(
      ...core.onMessage(
        from(
          peer,
          type === "PRE_PREPARE"
            ? { type: "PRE_PREPARE", view: 0, seq: 1, digest, origin: "r1@0", requests: [put] }
            : vote(type),
        ),
        ++now,
      ),
    );
  return { actions, executed: actions.some((a) => a.type === "executed") };
}

describe("a revoked host's stored votes", () => {
  it("its PREPARE makes no prepared certificate with the votes that come after its revocation", () => {
    // r1's PRE_PREPARE, r2's own PREPARE and r3's: q - 1 PREPAREs, prepared, r2 commits.
    const kept = run(false, "PREPARE", [["r1", "PRE_PREPARE"]]);
    expect(sent(kept.actions, "PREPARE")).toBe(true);
    expect(sent(kept.actions, "COMMIT")).toBe(true);
    const revoked = run(true, "PREPARE", [["r1", "PRE_PREPARE"]]);
    expect(sent(revoked.actions, "PREPARE")).toBe(true);
    expect(sent(revoked.actions, "COMMIT")).toBe(false);
    // r4's PREPARE, a live vote, completes it.
    const completed = run(true, "PREPARE", [
      ["r1", "PRE_PREPARE"],
      ["r4", "PREPARE"],
    ]);
    expect(sent(completed.actions, "COMMIT")).toBe(true);
  });

  it("its COMMIT makes no commit certificate with the votes that come after its revocation", () => {
    const order: Array<[string, string]> = [
      ["r1", "PRE_PREPARE"],
      ["r4", "PREPARE"],
      ["r4", "COMMIT"],
    ];
    // COMMITs from r3 (early), r2 and r4: q, executed.
    expect(run(false, "COMMIT", order).executed).toBe(true);
    const revoked = run(true, "COMMIT", order);
    expect(sent(revoked.actions, "COMMIT")).toBe(true);
    expect(revoked.executed).toBe(false);
    // r1's COMMIT, a live vote, completes it.
    expect(run(true, "COMMIT", [...order, ["r1", "COMMIT"]]).executed).toBe(true);
  });

  it("a replay of its vote's bytes does not put it back", () => {
    const replayed = (revokeR3: boolean) => {
      const { core, from, request, clientCopy } = fourReplicas("r2");
      let now = 0;
      const put = request(1);
      const digest = batchDigest("r1@0", [put]);
      core.onClientMessage("c1", clientCopy(put), ++now);
      const vote = from("r3", { type: "PREPARE", view: 0, seq: 1, digest });
      core.onMessage(vote, ++now);
      if (revokeR3) core.revokeKeys(["r3"], 1, ++now);
      // The same bytes again (the network replays, or the adversary resends them).
      const again = core.onMessage(vote, ++now);
      const actions = core.onMessage(
        from("r1", {
          type: "PRE_PREPARE",
          view: 0,
          seq: 1,
          digest,
          origin: "r1@0",
          requests: [put],
        }),
        ++now,
      );
      return { again, actions };
    };
    expect(sent(replayed(false).actions, "COMMIT")).toBe(true);
    const revoked = replayed(true);
    expect(revoked.again.some((a) => a.type === "problem" && a.kind === "revoked-key")).toBe(true);
    expect(sent(revoked.actions, "COMMIT")).toBe(false);
  });

  it("its EXECUTED report does not join another's to make a batch executed", () => {
    const reported = (revokeR3: boolean) => {
      const { core, from, request } = fourReplicas("r2");
      let now = 0;
      // A batch no client sent, reported executed at seq 1 by r3, then by r4 (the next host).
      const made = request(1, { op: "put", key: "x", value: "made up" });
      const entry = {
        seq: 1,
        view: 0,
        digest: batchDigest("r1@0", [made]),
        origin: "r1@0",
        requests: [made],
      };
      core.onMessage(from("r3", { type: "EXECUTED", entries: [entry] }), ++now);
      if (revokeR3) core.revokeKeys(["r3"], 1, ++now);
      const actions = core.onMessage(from("r4", { type: "EXECUTED", entries: [entry] }), ++now);
      return actions.some((a) => a.type === "executed");
    };
    expect(reported(false)).toBe(true);
    expect(reported(true)).toBe(false);
  });

  it("its CHECKPOINT vote does not join another's to start a state transfer", () => {
    const vouched = (revokeR3: boolean) => {
      const { core, from } = fourReplicas("r2");
      let now = 0;
      // A checkpoint two intervals ahead with a digest no correct replica computed.
      const vote: ReplicaBody = { type: "CHECKPOINT", seq: 8, digest: "ab".repeat(32) };
      core.onMessage(from("r3", vote), ++now);
      if (revokeR3) core.revokeKeys(["r3"], 1, ++now);
      const actions = core.onMessage(from("r4", vote), ++now);
      return actions.some((a) => a.type === "transfer-started");
    };
    expect(vouched(false)).toBe(true);
    expect(vouched(true)).toBe(false);
  });
});
