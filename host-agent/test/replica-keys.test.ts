/**
 * Keys stop speaking for a replica when its rejuvenation begins (finding 6), not when its new key
 * arrives: the board tells its host, the host's replica revokes them at once.
 */
import { encodeHostLine, parseBoardToHost } from "@smw/wiring";
import { describe, expect, it } from "vitest";
import { encodeClientMessage, parseEnvelope, sealEnvelope } from "../src/replica/messages.js";
import type { ReplicaAction } from "../src/replica/replica-core.js";
import { bodiesOf, replicaCluster } from "./replica-cluster.js";
import { fourReplicas, newViewBody, statusBody, viewChangeBody } from "./replica-harness.js";

const problems = (actions: ReplicaAction[]) =>
  actions.filter((a) => a.type === "problem").map((a) => (a as { kind: string }).kind);

const status = statusBody();

describe("a replica's keys once its rejuvenation began", () => {
  it("are refused at once, an old certificate replayed too; its next key is taken", () => {
    const { core, from, cert, crypto } = fourReplicas("r2");
    expect(problems(core.onMessage(from("r3", status), 1))).toEqual([]);
    // r3's group begins: keys certified before epoch 5 are revoked. r3's thief still has epoch 0.
    core.revokeKeys(["r3"], 5, 2);
    expect(problems(core.onMessage(from("r3", status), 3))).toEqual(["revoked-key"]);
    // Replaying r3's old certificate does not bring the key back.
    const replay = from("r3", { type: "NEW_KEY", certificate: cert("r3", 0) });
    expect(problems(core.onMessage(replay, 4))).toEqual(["bad-certificate"]);
    // The key certified after r3's boot (epoch 5) speaks for it.
    const fresh = crypto.newSigner("r3-e5");
    const newKey = sealEnvelope(
      "r3",
      5,
      { type: "NEW_KEY", certificate: cert("r3", 5, fresh) },
      (b) => fresh.sign(b),
    );
    expect(problems(core.onMessage(newKey, 5))).toEqual([]);
    const signed = sealEnvelope("r3", 5, status, (b) => fresh.sign(b));
    expect(problems(core.onMessage(signed, 6))).toEqual([]);
    // Others are untouched; a revocation naming the replica itself or no replica changes nothing.
    expect(problems(core.onMessage(from("r4", status), 7))).toEqual([]);
    core.revokeKeys(["r2", "nobody"], 99, 8);
    expect(problems(core.onMessage(from("r4", status), 9))).toEqual([]);
  });

  it("a replica asks every peer for its current key when it starts, and takes the answer", () => {
    const { core, cert, crypto } = fourReplicas("r2");
    const sent = core.start(0).filter((a) => a.type === "broadcast");
    expect(sent.map((a) => a.type === "broadcast" && parseEnvelope(a.message)?.body.type)).toEqual([
      "NEW_KEY",
      "KEY_QUERY",
      "SESSION",
      "STATUS",
    ]);
    // r3 was rejuvenated while r2 was down: its answer, under its new key, is taken at once.
    const fresh = crypto.newSigner("r3-e7");
    const answer = sealEnvelope(
      "r3",
      7,
      { type: "NEW_KEY", certificate: cert("r3", 7, fresh) },
      (b) => fresh.sign(b),
    );
    expect(problems(core.onMessage(answer, 1))).toEqual([]);
    const signed = sealEnvelope("r3", 7, status, (b) => fresh.sign(b));
    expect(problems(core.onMessage(signed, 2))).toEqual([]);
  });

  it("a replica started after the revocation starts with it", () => {
    const { core, from } = fourReplicas("r2", {}, { revokedKeys: [{ host: "r4", before: 3 }] });
    expect(problems(core.onMessage(from("r4", status), 1))).toEqual(["revoked-key"]);
    expect(problems(core.onMessage(from("r3", status), 2))).toEqual([]);
  });
});

describe("VIEW_CHANGEs a replica sent before its keys changed", () => {
  it("no longer count towards the k'+1 that make a correct replica join a newer view", () => {
    const { core, from } = fourReplicas("r2");
    const genesis = core.stableCheckpoint;
    const joined = (actions: ReplicaAction[]) =>
      actions.some((a) => a.type === "broadcast" && a.message.includes('"type":"VIEW_CHANGE"'));
    // r4, compromised, floods far views; then its host is rejuvenated and its keys revoked.
    core.onMessage(from("r4", viewChangeBody(500, genesis)), 1);
    core.revokeKeys(["r4"], 1, 2);
    // Now r3 (compromised in turn) asks for a far view too: one sender, not k'+1.
    expect(joined(core.onMessage(from("r3", viewChangeBody(600, genesis)), 3))).toBe(false);
    expect(core.currentView).toBe(0);
    // A second current sender does make k'+1: it joins the least view they ask for.
    expect(joined(core.onMessage(from("r1", viewChangeBody(1, genesis)), 4))).toBe(true);
  });
});

describe("a NEW_VIEW holding a VIEW_CHANGE signed under a revoked key", () => {
  it("is taken when the others decide the same: a departing primary's VIEW_CHANGE does not spoil its hand-off", () => {
    const { core, from } = fourReplicas("r2");
    const genesis = core.stableCheckpoint;
    const vcs = ["r1", "r2", "r3", "r4"].map((id) => from(id, viewChangeBody(2, genesis)));
    const newView = (viewChanges: Buffer[]) => from("r3", newViewBody(2, viewChanges, genesis));
    // r1 was the primary handing off; its host's rejuvenation began: its key is revoked here.
    core.revokeKeys(["r1"], 1, 1);
    // With r1's left out, only two remain: not a quorum, so not a view (nor r3's fault: r1's key
    // was good when r3 formed the view).
    expect(problems(core.onMessage(newView([vcs[0], vcs[2], vcs[3]] as Buffer[]), 2))).toEqual([]);
    expect(core.counters.get("new-view.undecidable-here")).toBe(1);
    expect(core.currentView).toBe(0);
    // With three others it is one.
    expect(problems(core.onMessage(newView(vcs), 3))).toEqual([]);
    expect(core.currentView).toBe(2);
  });
});

describe("the board's REVOKE line", () => {
  it("round-trips, and is refused when its hosts or epoch are not what they claim", () => {
    const line = encodeHostLine({ type: "REVOKE", hosts: ["h3", "h4"], before: 1_767_000_000 });
    expect(parseBoardToHost(line)).toEqual({
      type: "REVOKE",
      hosts: ["h3", "h4"],
      before: 1_767_000_000,
    });
    const bad = (body: object) =>
      `smwh1 REVOKE ${Buffer.from(JSON.stringify(body)).toString("base64url")}\n`;
    expect(parseBoardToHost(bad({ hosts: [], before: 1 }))).toBeUndefined();
    expect(parseBoardToHost(bad({ hosts: ["h 3"], before: 1 }))).toBeUndefined();
    expect(parseBoardToHost(bad({ hosts: ["h3"], before: -1 }))).toBeUndefined();
    expect(parseBoardToHost(bad({ hosts: ["h3"], before: "1" }))).toBeUndefined();
    expect(parseBoardToHost(bad({ hosts: Array(65).fill("h3"), before: 1 }))).toBeUndefined();
  });
});

describe("a NEW_VIEW naming a key the replica has not learned yet", () => {
  it("is no fault of its primary: the replica asks for the key and takes the NEW_VIEW once it has it", () => {
    const { core, from, cert, crypto } = fourReplicas("r2");
    const genesis = core.stableCheckpoint;
    // r4 was rejuvenated while r2 was starting: its new key (epoch 5) has not reached r2.
    const fresh = crypto.newSigner("r4-e5");
    const r4vc = sealEnvelope(
      "r4",
      5,
      viewChangeBody(2, genesis, { keyEpochs: [0, 0, 0, 5] }),
      (b) => fresh.sign(b),
    );
    const vcs = [
      ...["r1", "r2", "r3"].map((id) =>
        from(id, viewChangeBody(2, genesis, { keyEpochs: [0, 0, 0, 5] })),
      ),
      r4vc,
    ];
    const newView = from("r3", newViewBody(2, vcs, genesis));
    const first = core.onMessage(newView, 1);
    expect(problems(first)).toEqual([]);
    expect(core.counters.get("new-view.awaiting-key")).toBe(1);
    expect(core.currentView).toBe(0);
    // It asked r4 for its key, and r3, the primary, which holds it (r4 may never answer).
    const askedFor = (to: string) =>
      first.some(
        (a) =>
          a.type === "send" && a.to === to && parseEnvelope(a.message)?.body.type === "KEY_QUERY",
      );
    expect(askedFor("r4")).toBe(true);
    expect(askedFor("r3")).toBe(true);
    // r4's answer comes: the NEW_VIEW is taken.
    const newKey = sealEnvelope(
      "r4",
      5,
      { type: "NEW_KEY", certificate: cert("r4", 5, fresh) },
      (b) => fresh.sign(b),
    );
    expect(problems(core.onMessage(newKey, 2))).toEqual([]);
    expect(core.currentView).toBe(2);
  });
});

describe("keys a VIEW_CHANGE lacks", () => {
  it("go from the primary to its sender, so one replica told of a key alone cannot stall views", () => {
    const { core, from, cert, crypto } = fourReplicas("r2");
    const genesis = core.stableCheckpoint;
    // r4 (silent otherwise) announced its new key to r2 only.
    const r4e7 = crypto.newSigner("r4-e7");
    const newKey = sealEnvelope(
      "r4",
      7,
      { type: "NEW_KEY", certificate: cert("r4", 7, r4e7) },
      (b) => r4e7.sign(b),
    );
    expect(problems(core.onMessage(newKey, 1))).toEqual([]);
    // r1 and r3 ask for view 1 (r2's) without r4's new key: r2 joins, and sends each the key.
    const actions = [
      ...core.onMessage(from("r1", viewChangeBody(1, genesis)), 2),
      ...core.onMessage(from("r3", viewChangeBody(1, genesis)), 3),
    ];
    const relayed = actions.flatMap((a) => {
      const body = a.type === "send" ? parseEnvelope(a.message)?.body : undefined;
      return body?.type === "KEYS" ? [{ to: (a as { to: string }).to, body }] : [];
    });
    expect(relayed.map((k) => k.to).sort()).toEqual(["r1", "r3"]);
    expect(relayed[0]?.body.certificates.map((c) => [c.host, c.period])).toEqual([["r4", 7]]);
    expect(core.currentView).toBe(0);
    // Their VIEW_CHANGEs again, now holding it: r2 forms view 1.
    const holding = { keyEpochs: [0, 0, 0, 7] };
    core.onMessage(from("r1", viewChangeBody(1, genesis, holding)), 4);
    core.onMessage(from("r3", viewChangeBody(1, genesis, holding)), 5);
    expect(core.currentView).toBe(1);
  });

  it("relayed by a peer are installed when their board signed them, refused otherwise", () => {
    const { core, from, cert, crypto } = fourReplicas("r1");
    const r4e7 = crypto.newSigner("r4-e7");
    const relay = (certificates: ReturnType<typeof cert>[]) =>
      from("r2", { type: "KEYS", certificates });
    expect(problems(core.onMessage(relay([cert("r4", 7, r4e7)]), 1))).toEqual([]);
    const fresh = sealEnvelope("r4", 7, status, (b) => r4e7.sign(b));
    expect(problems(core.onMessage(fresh, 2))).toEqual([]);
    // One whose signature is not r3's board's: refused, and r3's key stays.
    const forged = { ...cert("r3", 9, crypto.newSigner("r3-e9")), signature: "AAAA" };
    expect(problems(core.onMessage(relay([forged]), 3))).toEqual(["bad-certificate"]);
    expect(problems(core.onMessage(from("r3", status), 4))).toEqual([]);
  });
});

describe("certificates a replica relays", () => {
  it("are its peers' current ones, none revoked; a revoked one relayed to it is no peer's fault", () => {
    const { core, from, cert } = fourReplicas("r1");
    core.revokeKeys(["r3"], 5, 1);
    // r4 asks (unchecked): r1's own key, and r2's and r4's... but not r3's revoked one.
    const answer = core.onMessage(from("r4", { type: "KEY_QUERY" }), 2);
    const relayed = bodiesOf(answer, "KEYS") as Array<{ certificates: Array<{ host: string }> }>;
    expect(relayed.flatMap((k) => k.certificates.map((c) => c.host))).toEqual(["r2"]);
    expect(bodiesOf(answer, "NEW_KEY")).toHaveLength(1);
    // r2, not told of the revocation yet, relays r3's revoked certificate: refused, quietly.
    const relay = from("r2", { type: "KEYS", certificates: [cert("r3", 0)] });
    expect(problems(core.onMessage(relay, 3))).toEqual([]);
    expect(core.counters.get("keys.relayed-revoked")).toBe(1);
  });
});

describe("two replicas that each lack the other's current key", () => {
  it("learn them all the same: a KEY_QUERY is answered unchecked", () => {
    // r6 starts again as a real replica does, holding no peer's key, and its NEW_KEY to every
    // peer is lost (a connection that dropped): neither side can check the other's messages,
    // KEY_QUERYs included. Checked, each would refuse the other's question for ever.
    const c = replicaCluster(6, 1, 1);
    for (const id of c.ids) c.boot(id, { recovering: false });
    c.deliver(() => true);
    c.run(300, () => true);
    const others = c.ids.filter((id) => id !== "r6");
    const r6 = c.rejuvenate("r6", { recovering: true }, others);
    let lost = 0;
    c.run(5_000, (m) => {
      const type = parseEnvelope(m.message)?.body.type;
      if (m.from !== "r6" || type !== "NEW_KEY" || lost >= others.length) return true;
      lost++;
      return false;
    });
    expect(lost).toBe(others.length);
    expect(r6.isRecovered).toBe(true);
    for (const id of others) expect(c.cores.get(id)?.currentView, id).toBe(r6.currentView);
  });
});

describe("a replica's key lease", () => {
  const repliesTo = (actions: ReplicaAction[]) =>
    actions.flatMap((a) => {
      if (a.type !== "reply") return [];
      const body = parseEnvelope(a.message)?.body;
      return [{ client: a.client, type: body?.type, body }];
    });
  const keysQuery = encodeClientMessage({ type: "KEYS_QUERY" });

  it("goes to each client that asked for keys, and with the keys to one that asks later", () => {
    const { core, lease } = fourReplicas("r2");
    core.start(0);
    // Before any lease: the certificates alone.
    expect(repliesTo(core.onClientMessage("c1", keysQuery, 1)).map((r) => r.type)).toEqual([
      "KEYS",
    ]);
    const first = lease("r2", 0, 5_000);
    const pushed = repliesTo(core.installLease(first, 2));
    expect(pushed.map((r) => [r.client, r.type])).toEqual([["c1", "LEASE"]]);
    expect(pushed[0]?.body).toEqual({ type: "LEASE", lease: first });
    // A client that asks now gets the keys and the lease.
    expect(repliesTo(core.onClientMessage("c2", keysQuery, 3)).map((r) => r.type)).toEqual([
      "KEYS",
      "LEASE",
    ]);
    // The next lease goes to both.
    const next = repliesTo(core.installLease(lease("r2", 0, 6_000), 4));
    expect(next.map((r) => r.client).sort()).toEqual(["c1", "c2"]);
  });

  it("is not passed on when it is on another key, another host's, older, or not its board's", () => {
    const { core, lease } = fourReplicas("r2");
    core.start(0);
    core.onClientMessage("c1", keysQuery, 1);
    expect(repliesTo(core.installLease(lease("r2", 0, 5_000), 2))).toHaveLength(1);
    for (const each of [
      lease("r2", 3, 9_000),
      lease("r3", 0, 9_000),
      lease("r2", 0, 4_000),
      lease("r2", 0, 9_000, "r3"),
    ])
      expect(repliesTo(core.installLease(each, 3)), JSON.stringify(each)).toEqual([]);
    expect(core.counters.get("lease.not-current-key")).toBe(2);
    expect(core.counters.get("lease.older")).toBe(1);
    expect(core.counters.get("lease.bad-signature")).toBe(1);
  });
});
