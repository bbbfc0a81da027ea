/**
 * Messages a Byzantine replica sends to crash or stall its peers, delivered by hand to the real
 * replica core: every one is a counted rejection, never an exception.
 */
import { describe, expect, it } from "vitest";
import {
  batchDigest,
  encodeClientMessage,
  holdOf,
  type ReplicaBody,
} from "../src/replica/messages.js";
import type { ReplicaAction } from "../src/replica/replica-core.js";
import { fourReplicas } from "./replica-harness.js";

const problems = (actions: ReplicaAction[]) =>
  actions.filter((a) => a.type === "problem").map((a) => (a as { kind: string }).kind);

describe("a Byzantine replica's hostile numbers", () => {
  it("a NEW_VIEW for view 2^53-1 is refused and counted, not fatal", () => {
    const { core, from } = fourReplicas();
    const view = Number.MAX_SAFE_INTEGER;
    // The primary of that view is ids[view mod 4] = r4.
    const newView = from("r4", {
      type: "NEW_VIEW",
      view,
      viewChanges: [],
      checkpoint: { seq: 0, digest: "0".repeat(64) },
      proposals: [],
    } as unknown as ReplicaBody);
    let actions: ReplicaAction[] = [];
    try {
      actions = core.onMessage(newView, 1);
    } catch (error) {
      throw new Error(`onMessage threw: ${(error as Error).stack}`);
    }
    expect(problems(actions).length).toBeGreaterThan(0);
    expect(problems(actions)).toEqual(["malformed"]);
    // Within the numbers that parse, far ahead, with no quorum of VIEW_CHANGEs behind it.
    const far = from("r4", {
      type: "NEW_VIEW",
      view: 4 * 10_000 + 3,
      viewChanges: [],
      checkpoint: { seq: 0, digest: "0".repeat(64) },
      proposals: [],
    } as unknown as ReplicaBody);
    expect(problems(core.onMessage(far, 2))).toEqual(["bad-new-view"]);
    expect(core.currentView).toBe(0);
    // Still a working replica: time passes, nothing throws.
    expect(() => core.tick(10_000)).not.toThrow();
  });

  it("numbers beyond 2^50 do not even parse; a bad NEW_VIEW for a view it is not changing to moves nothing", () => {
    const { core, from } = fourReplicas();
    const prepare = from("r1", { type: "PREPARE", view: 2 ** 51, seq: 1, digest: "a".repeat(64) });
    expect(problems(core.onMessage(prepare, 1))).toEqual(["malformed"]);
    // View 7 is r4's (7 mod 4 = 3): a NEW_VIEW with no VIEW_CHANGE behind it.
    const bogus = from("r4", {
      type: "NEW_VIEW",
      view: 7,
      viewChanges: [],
      checkpoint: { seq: 0, digest: "0".repeat(64) },
      proposals: [],
    } as unknown as ReplicaBody);
    const actions = core.onMessage(bogus, 2);
    expect(problems(actions)).toEqual(["bad-new-view"]);
    // No VIEW_CHANGE to view 8 went out: one Byzantine replica cannot make it skip views.
    expect(actions.some((a) => a.type === "broadcast")).toBe(false);
  });
});

/** A VIEW_CHANGE body of a replica with nothing prepared, from the start. */
const viewChange = (newView: number): ReplicaBody =>
  ({
    type: "VIEW_CHANGE",
    newView,
    stable: { seq: 0, digest: "" },
    checkpoints: [],
    prepared: [],
    prePrepared: [],
    batches: [],
    keyEpochs: [0, 0, 0, 0],
  }) as unknown as ReplicaBody;

describe("one replica flooding VIEW_CHANGEs", () => {
  it("cannot crowd out the others' VIEW_CHANGEs: view 1 still forms", () => {
    const { core, from } = fourReplicas("r2");
    // r2 is the primary of view 1. The genesis stable checkpoint's digest, as r2 states it.
    const own = core.onMessage(from("r1", { type: "KEY_QUERY" } as ReplicaBody), 0);
    expect(own).toBeDefined();
    let now = 1;
    const stable = core.stableCheckpoint;
    const vc = (view: number) =>
      ({ ...(viewChange(view) as object), stable: { ...stable } }) as unknown as ReplicaBody;
    // r4 floods views 100..130 first (far more than the VIEW_CHANGEs kept of any one peer).
    for (let v = 100; v <= 130; v++)
      expect(problems(core.onMessage(from("r4", vc(v)), ++now))).toEqual([]);
    // r1 and r3 want view 1: r2 joins, and as its primary forms it with a quorum of three.
    core.onMessage(from("r1", vc(1)), ++now);
    const actions = core.onMessage(from("r3", vc(1)), ++now);
    const sent = actions
      .filter((a) => a.type === "broadcast")
      .map((a) => (a as { message: Buffer }).message.toString("utf8"));
    expect(sent.some((m) => m.includes('"type":"NEW_VIEW"') && m.includes('"view":1'))).toBe(true);
    expect(core.currentView).toBe(1);
  });
});

describe("a Byzantine primary that starves a client", () => {
  it("executing empty batches does not keep a backup from suspecting it: the request's own timer runs on", () => {
    const { core, from, request, clientCopy } = fourReplicas("r2");
    let now = 0;
    // r2 holds c1's request; r1, the primary of view 0, never proposes it. c1 sent it to every
    // replica, and r3 and r4 say they hold it too: enough for a correct primary to propose it.
    core.onClientMessage("c1", clientCopy(request(1)), now);
    for (const peer of ["r3", "r4"]) core.onMessage(from(peer, holdOf(request(1))), now);
    const empty = batchDigest("", []);
    let viewChangeAt: number | undefined;
    // An empty batch every 400 ms, each within the 500 ms view-change timeout of the last.
    for (let seq = 1; seq <= 50 && viewChangeAt === undefined; seq++) {
      now += 400;
      const actions = [
        ...core.onMessage(
          from("r1", {
            type: "PRE_PREPARE",
            view: 0,
            seq,
            digest: empty,
            origin: "",
            requests: [],
          }),
          now,
        ),
        ...core.onMessage(from("r3", { type: "PREPARE", view: 0, seq, digest: empty }), now),
        ...core.onMessage(from("r4", { type: "PREPARE", view: 0, seq, digest: empty }), now),
        ...core.onMessage(from("r3", { type: "COMMIT", view: 0, seq, digest: empty }), now),
        ...core.onMessage(from("r4", { type: "COMMIT", view: 0, seq, digest: empty }), now),
        ...core.tick(now),
      ];
      if (
        actions.some(
          (a) => a.type === "broadcast" && a.message.toString("utf8").includes('"VIEW_CHANGE"'),
        )
      )
        viewChangeAt = now;
    }
    // The empty batches did execute: the primary was "making progress".
    expect(core.executedUpTo).toBeGreaterThanOrEqual(1);
    // Suspected once the request had waited the view-change timeout (500 ms), not never.
    expect(viewChangeAt).toBeDefined();
    expect(viewChangeAt).toBeLessThanOrEqual(500 + 400);
  });
});

describe("the bounds on numbers leave room for real ones", () => {
  it("takes a request stamped as real clients stamp them (the wall clock in microseconds)", () => {
    const { core, request } = fourReplicas("r2");
    const ts = Date.now() * 1000;
    const accepted = core.onClientMessage(
      "c1",
      encodeClientMessage({ type: "REQUEST", request: request(ts) }),
      1,
    );
    expect(problems(accepted)).toEqual([]);
    const beyond = core.onClientMessage(
      "c1",
      encodeClientMessage({ type: "REQUEST", request: request(Number.MAX_SAFE_INTEGER) }),
      2,
    );
    expect(problems(beyond)).toEqual(["malformed"]);
  });
});

describe("a replica whose state diverged", () => {
  it("fetches the quorum's state when a quorum's checkpoint differs from its own", () => {
    const { core, from } = fourReplicas("r2");
    const empty = batchDigest("", []);
    let now = 0;
    // Four batches executed: r2 takes its checkpoint at 4 (the interval).
    for (let seq = 1; seq <= 4; seq++) {
      now += 10;
      core.onMessage(
        from("r1", { type: "PRE_PREPARE", view: 0, seq, digest: empty, origin: "", requests: [] }),
        now,
      );
      for (const peer of ["r3", "r4"]) {
        core.onMessage(from(peer, { type: "PREPARE", view: 0, seq, digest: empty }), now);
        core.onMessage(from(peer, { type: "COMMIT", view: 0, seq, digest: empty }), now);
      }
    }
    expect(core.executedUpTo).toBe(4);
    // A quorum (three of four) has another state at 4: r2's is the odd one out.
    const theirs = "d".repeat(64);
    const actions = ["r1", "r3", "r4"].flatMap((peer) =>
      core.onMessage(from(peer, { type: "CHECKPOINT", seq: 4, digest: theirs }), now + 10),
    );
    expect(problems(actions)).toContain("diverged");
    expect(actions.some((a) => a.type === "transfer-started" && a.seq === 4)).toBe(true);
  });
});
