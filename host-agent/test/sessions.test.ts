/**
 * MACs in the normal case (SAFETY.md, "MACs and signatures"): session keys per pair of replicas
 * and key epochs, from X25519 halves announced in signed SESSION messages.
 */
import { describe, expect, it } from "vitest";
import {
  AWAITING_KEYS_BYTES_PER_PEER,
  AWAITING_SESSION_BYTES_PER_PEER,
  KEPT_MESSAGE_OVERHEAD_BYTES,
} from "../src/replica/awaiting-keys.js";
import {
  parseEnvelope,
  type ReplicaBody,
  sealEnvelopeWithMacs,
  withMacs,
} from "../src/replica/messages.js";
import type { ReplicaAction } from "../src/replica/replica-core.js";
import { Sessions } from "../src/replica/sessions.js";
import { newX25519, x25519FromSeed } from "../src/replica/x25519.js";
import { replicaCluster } from "./replica-cluster.js";

const bytes = Buffer.from("smwm1 r1 3\n{}");

describe("session keys", () => {
  it("give each direction its own key, bound to both epochs, and die with a renewed key", () => {
    const a = new Sessions("r1", 3, newX25519);
    const b = new Sessions("r2", 5, newX25519);
    a.learn("r2", 5, b.publicKey);
    b.learn("r1", 3, a.publicKey);
    const mac = a.mac("r2", 5, bytes) as string;
    expect(b.check("r1", 3, bytes, mac)).toBe("ok");
    expect(b.check("r1", 3, Buffer.from("smwm1 r1 3\n{ }"), mac)).toBe("bad-mac");
    // Not reflected: r2's MAC to r1 is under another key.
    expect(b.mac("r1", 3, bytes)).not.toBe(mac);
    // Another epoch of the sender: no session for it.
    expect(b.check("r1", 4, bytes, mac)).toBe("no-session");
    // r1 rejuvenated: its new half makes new keys; the old MACs fail at r2 once it learns it.
    a.renew(4);
    b.learn("r1", 4, a.publicKey);
    expect(b.check("r1", 4, bytes, mac)).toBe("bad-mac");
    a.learn("r2", 5, b.publicKey);
    expect(b.check("r1", 4, bytes, a.mac("r2", 5, bytes) as string)).toBe("ok");
    // An older epoch's half never replaces a newer one.
    b.learn("r1", 3, "AAAA");
    expect(b.has("r1", 4)).toBe(true);
  });

  it("refuse a public half that is no curve point, once and for all", () => {
    const a = new Sessions("r1", 1, () => x25519FromSeed(Buffer.alloc(32, 7)));
    a.learn("r2", 1, Buffer.alloc(32).toString("base64"));
    expect(a.has("r2", 1)).toBe(false);
    expect(a.mac("r2", 1, bytes)).toBeUndefined();
    a.learn("r3", 1, "bm90IGEga2V5");
    expect(a.has("r3", 1)).toBe(false);
  });
});

const macd = (actions: ReplicaAction[], type: string) =>
  actions.filter((a) => {
    if (a.type !== "broadcast" && a.type !== "send") return false;
    const e = parseEnvelope(a.message);
    return e?.body.type === type && e.macs !== undefined;
  });

describe("replicas with sessions", () => {
  it("MAC the normal case once halves are exchanged, sign what third parties must check, and refuse a spoiled MAC", () => {
    const c = replicaCluster(4, 1, 0);
    for (const id of c.ids) c.boot(id, { recovering: false });
    c.deliver(() => true);
    c.sent.clear();
    // Only its first STATUS, before any half was known, went signed.
    expect(c.cores.get("r2")?.counters.get("sealed.signature")).toBe(1);
    c.run(300, () => true);
    // STATUS every interval: with MACs now.
    expect(macd(c.sent.get("r2") ?? [], "STATUS").length).toBeGreaterThan(0);
    expect(c.cores.get("r2")?.counters.get("sealed.signature")).toBe(1);

    // A MAC'd STATUS from r2 whose MAC for r3 is spoiled: r3 refuses it (and sends r2 its half
    // again), r4 takes it.
    const status = macd(c.sent.get("r2") ?? [], "STATUS").at(-1);
    const envelope = parseEnvelope(status?.type === "broadcast" ? status.message : Buffer.alloc(0));
    if (envelope?.macs === undefined) throw new Error("no MAC'd STATUS");
    const spoiled = new Map(envelope.macs);
    spoiled.set("r3", "A".repeat(22));
    const message = withMacs(envelope, spoiled);
    const r3 = c.cores.get("r3");
    const r4 = c.cores.get("r4");
    const before3 = r3?.counters.get("rejected.bad-mac") ?? 0;
    const answer = r3?.onMessage(message, c.nowMs) ?? [];
    expect(r3?.counters.get("rejected.bad-mac")).toBe(before3 + 1);
    expect(
      answer.some((a) => a.type === "send" && a.to === "r2" && a.message.includes('"SESSION"')),
    ).toBe(true);
    const problems4 = (r4?.onMessage(message, c.nowMs) ?? []).filter((a) => a.type === "problem");
    expect(problems4).toEqual([]);

    // A VIEW_CHANGE cannot travel with MACs (it is shown to third parties in a NEW_VIEW).
    const vcText = Buffer.from(
      message.toString("utf8").replace(/\n.*$/s, '\n{"type":"VIEW_CHANGE"}'),
    );
    expect(parseEnvelope(vcText)).toBeUndefined();
  });

  it("after a rejuvenation, sign to the replica until its new half is known, then MAC again", () => {
    const c = replicaCluster(4, 1, 0);
    for (const id of c.ids) c.boot(id, { recovering: false });
    c.deliver(() => true);
    // r4 rejuvenated: its NEW_KEY reaches r2, its SESSION does not yet.
    const r2 = c.cores.get("r2");
    c.sent.clear();
    c.rejuvenate("r4", { recovering: true });
    const r4sent = c.sent.get("r4") ?? [];
    const newKey = r4sent.find((a) => a.type === "broadcast" && a.message.includes('"NEW_KEY"'));
    if (newKey?.type !== "broadcast") throw new Error("no NEW_KEY");
    r2?.onMessage(newKey.message, c.nowMs);
    const before = r2?.counters.get("sealed.signature") ?? 0;
    const sent = r2?.tick(c.nowMs + 200) ?? [];
    expect(r2?.counters.get("sealed.signature")).toBeGreaterThan(before);
    expect(macd(sent, "STATUS")).toEqual([]);
    // Its SESSION arrives: MACs again.
    const session = r4sent.find((a) => a.type === "broadcast" && a.message.includes('"SESSION"'));
    if (session?.type !== "broadcast") throw new Error("no SESSION");
    r2?.onMessage(session.message, c.nowMs + 201);
    expect(macd(r2?.tick(c.nowMs + 400) ?? [], "STATUS").length).toBeGreaterThan(0);
  });

  it("after a restart, learn every peer's half from the first peer that answers their keys", () => {
    // n = 6: r6 restarts knowing no peer's key, and for a while only r1 reaches it (the others'
    // connections to it are not up yet). r1's answer to its KEY_QUERY carries every key it holds
    // and the SESSIONs their owners signed: r6 checks the others' MACs at once, not one peer at a
    // time as each one's own connection comes up.
    const c = replicaCluster(6, 1, 1);
    for (const id of c.ids) c.boot(id, { recovering: false });
    c.deliver(() => true);
    c.run(300, () => true);
    const others = ["r2", "r3", "r4", "r5"];
    c.sent.clear();
    const r6 = c.rejuvenate("r6", { recovering: true }, [...others, "r1"]);
    c.run(200, (m) => m.to !== "r6" || m.from === "r1");
    const learned = (c.sent.get("r6") ?? []).flatMap((a) =>
      a.type === "learned" && a.what === "session" ? [a.host] : [],
    );
    expect(new Set(learned)).toEqual(new Set(["r1", ...others]));
    for (const id of others) expect(r6.keyEpochOf(id), id).toBe(0);
  });

  it("relayed under a key since renewed, are counted, not reported against their owner", () => {
    // r1 has not heard that r4 was rejuvenated and passes on r4's SESSION of its former key, as
    // it does with its keys; r2 holds r4's new key. r4 did nothing wrong.
    const c = replicaCluster(4, 1, 0);
    for (const id of c.ids) c.boot(id, { recovering: false });
    c.deliver(() => true);
    c.run(300, () => true);
    const former = (c.sent.get("r4") ?? []).find(
      (a) => a.type === "broadcast" && a.message.includes('"SESSION"'),
    );
    if (former?.type !== "broadcast") throw new Error("no SESSION from r4");
    c.rejuvenate("r4", { recovering: true });
    c.run(300, () => true);
    const r2 = c.cores.get("r2");
    expect(r2?.keyEpochOf("r4")).toBe(1);
    const answer = r2?.onMessage(former.message, c.nowMs) ?? [];
    expect(answer.filter((a) => a.type === "problem")).toEqual([]);
    expect(r2?.counters.get("rejected.session-stale-epoch")).toBe(1);
  });

  it("pass on no padded SESSION: a forged KEY_QUERY cannot make them send megabytes", () => {
    // r3, Byzantine, signs a SESSION padded to 4 MB (JSON takes any padding under the signature)
    // and gives it to r1; then KEY_QUERYs in r2's name (answered unchecked) ask r1 for keys.
    const c = replicaCluster(4, 1, 0);
    for (const id of c.ids) c.boot(id, { recovering: false });
    c.run(300, () => true);
    const padded = c.speakAs("r3", {
      type: "SESSION",
      dh: x25519FromSeed(Buffer.alloc(32, 7)).publicKey,
      ask: false,
      pad: "x".repeat(4_000_000),
    } as unknown as ReplicaBody);
    c.hand("r1", padded);
    const forged = Buffer.from('smwr1 r2 0 AAAA\n{"type":"KEY_QUERY"}');
    c.run(110, () => false);
    c.sent.set("r1", []);
    c.hand("r1", forged);
    const toR2 = (c.sent.get("r1") ?? []).filter((a) => a.type === "send" && a.to === "r2");
    expect(toR2.length).toBeGreaterThan(0);
    const bytesToR2 = toR2.reduce((n, a) => n + (a.type === "send" ? a.message.length : 0), 0);
    expect(bytesToR2).toBeLessThan(64 * 1024);
  });
});

/**
 * Four replicas, r4 rejuvenated (a new key, nothing delivered yet): r2, the peer the tests play
 * r4's messages to, and `find`, r4's first broadcast of a type.
 */
function r4Rejuvenated() {
  const c = replicaCluster(4, 1, 0);
  for (const id of c.ids) c.boot(id, { recovering: false });
  c.deliver(() => true);
  const r2 = c.cores.get("r2");
  if (r2 === undefined) throw new Error("no r2");
  c.sent.clear();
  c.rejuvenate("r4", { recovering: true });
  const r4sent = c.sent.get("r4") ?? [];
  const find = (type: string) => {
    const a = r4sent.find((m) => m.type === "broadcast" && m.message.includes(`"${type}"`));
    if (a?.type !== "broadcast") throw new Error(`no ${type}`);
    return a.message;
  };
  return { c, r2, find };
}

describe("a MAC'd message made for a replica's former key", () => {
  it("is dropped unread by the restarted replica, not kept, and its sender gets the new half", () => {
    // r2 does not know yet that r4 restarted: its STATUS carries a MAC for r4's former half,
    // labelled with r4's former epoch (as frames queued while r4 was down do).
    const { c, r2 } = r4Rejuvenated();
    const r4 = c.cores.get("r4");
    if (r4 === undefined) throw new Error("no r4");
    const sent = macd(r2.tick(c.nowMs + 200), "STATUS")[0];
    if (sent?.type !== "broadcast") throw new Error("no MAC'd STATUS from r2");
    const status = sent.message;
    expect(parseEnvelope(status)?.macEpochs?.get("r4")).toBe(r4.currentEpoch - 1);
    const answer = r4.onMessage(status, c.nowMs + 201);
    expect(r4.counters.get("rejected.for-former-key")).toBe(1);
    expect(r4.counters.get("awaiting-keys.kept") ?? 0).toBe(0);
    expect(answer.filter((a) => a.type === "problem")).toEqual([]);
    // Its new key first (r2 holds the former one), then its new half.
    const toR2 = answer.flatMap((a) =>
      a.type === "send" && a.to === "r2" ? [parseEnvelope(a.message)?.body.type] : [],
    );
    expect(toR2.indexOf("NEW_KEY")).toBeGreaterThanOrEqual(0);
    expect(toR2.indexOf("SESSION")).toBeGreaterThan(toR2.indexOf("NEW_KEY"));
    // Its label says which key it was made for; changed, it can only get a message dropped.
    const entry = status.toString("latin1").split("\n")[0]?.split(" ")[3] ?? "";
    const relabelled = Buffer.from(
      status.toString("latin1").replace(entry, entry.replace(/r4@\d+=/, `r4@${r4.currentEpoch}=`)),
      "latin1",
    );
    r4.onMessage(relabelled, c.nowMs + 202);
    expect(r4.counters.get("in.STATUS") ?? 0).toBe(0);
  });
});

describe("an envelope for more receivers than its header holds MACs for", () => {
  it("is signed instead, so that every receiver can parse it", () => {
    // 200 receivers with 16-character ids and 10-digit key epochs: MACs and labels would pass
    // the header's 8,192 characters, and every receiver would refuse the envelope as malformed.
    const receivers = Array.from(
      { length: 200 },
      (_, i) => `replica-${String(i).padStart(8, "0")}`,
    );
    const body = { type: "STATUS" } as unknown as ReplicaBody;
    const mac = () => "A".repeat(22);
    expect(sealEnvelopeWithMacs("r1", 1796464864, body, receivers, mac, () => 1796464864)).toBe(
      undefined,
    );
    const few = sealEnvelopeWithMacs("r1", 1, body, receivers.slice(0, 100), mac, () => 1796464864);
    expect(few).toBeDefined();
    expect(few?.subarray(0, few.indexOf(10)).length).toBeLessThan(8300);
  });
});

describe("a SESSION that arrives before its sender's key", () => {
  it("is kept until the key comes, then taken: no second SESSION needed", () => {
    const { c, r2, find } = r4Rejuvenated();
    // The SESSION overtakes the NEW_KEY (another connection, or the key's answer to a query).
    const refused = r2?.onMessage(find("SESSION"), c.nowMs) ?? [];
    expect(refused.some((a) => a.type === "problem" && a.kind === "unknown-epoch")).toBe(true);
    const learned = r2?.onMessage(find("NEW_KEY"), c.nowMs + 1) ?? [];
    expect(learned).toContainEqual({ type: "learned", what: "session", host: "r4" });
    expect(macd(r2?.tick(c.nowMs + 200) ?? [], "STATUS").length).toBeGreaterThan(0);
  });

  it("is taken only under the key it was signed for; forged SESSIONs push it out only past a budget in bytes, other traffic not at all", () => {
    // r4's real SESSION for its coming epoch reaches r2 first, then `forged` SESSIONs claiming
    // the same epoch with other halves, and `junkBytes` of other messages under that epoch (a
    // flood before its key is known); then its key.
    const trial = (forgedFor: (sessionBytes: number) => number, junkBytes = 0) => {
      const { c, r2, find } = r4Rejuvenated();
      const session = find("SESSION");
      r2?.onMessage(session, c.nowMs);
      const forged = forgedFor(session.length);
      for (let i = 1; i <= forged; i++) {
        const half = Buffer.alloc(32, i).toString("base64");
        r2?.onMessage(
          Buffer.from(session.toString().replace(/"dh":"[^"]*"/, `"dh":"${half}"`)),
          c.nowMs,
        );
      }
      const status = find("STATUS");
      for (let sent = 0; sent < junkBytes; sent += status.length) r2?.onMessage(status, c.nowMs);
      const actions = r2?.onMessage(find("NEW_KEY"), c.nowMs + 1) ?? [];
      return {
        learned: actions.some((a) => a.type === "learned" && a.what === "session"),
        forgeriesSeen: actions.filter((a) => a.type === "problem" && a.kind === "bad-signature")
          .length,
        forged,
      };
    };
    // A forged SESSION is as long as the real one: how many of them, with it, fill the budget.
    const fill = (bytes: number) =>
      Math.floor(AWAITING_SESSION_BYTES_PER_PEER / (bytes + KEPT_MESSAGE_OVERHEAD_BYTES));
    const fewer = trial((bytes) => fill(bytes) - 1);
    expect(fewer.forged).toBeGreaterThan(50);
    expect(fewer).toMatchObject({ learned: true, forgeriesSeen: fewer.forged });
    expect(trial(fill).learned).toBe(false);
    expect(trial(() => 0, 2 * AWAITING_KEYS_BYTES_PER_PEER).learned).toBe(true);
  });
});

describe("a message kept for a key that is revoked before it comes", () => {
  it("is never taken: the revoked key is not installed, and the next one makes it stale", () => {
    const { c, r2, find } = r4Rejuvenated();
    // r4's STATUS under its new key reaches r2 before the key: kept.
    const status = find("STATUS");
    const epoch = parseEnvelope(status)?.epoch as number;
    r2.onMessage(status, c.nowMs);
    expect(r2.counters.get("awaiting-keys.kept")).toBe(1);
    // r4's group begins again: every key of r4's up to this one is revoked; then the key comes.
    r2.revokeKeys(["r4"], epoch + 1, c.nowMs + 1);
    const statuses = r2.counters.get("in.STATUS") ?? 0;
    r2.onMessage(find("NEW_KEY"), c.nowMs + 2);
    expect(r2.counters.get("awaiting-keys.taken-again") ?? 0).toBe(0);
    // r4's next key: what was kept under the revoked one is dropped unread, never taken.
    c.rejuvenate("r4", { recovering: true });
    const next = (c.sent.get("r4") ?? []).findLast(
      (m) => m.type === "broadcast" && m.message.includes('"NEW_KEY"'),
    );
    if (next?.type !== "broadcast") throw new Error("no second NEW_KEY");
    r2.onMessage(next.message, c.nowMs + 3);
    expect(r2.counters.get("awaiting-keys.taken-again") ?? 0).toBe(0);
    expect(r2.counters.get("in.STATUS") ?? 0).toBe(statuses);
  });
});

describe("MAC'd messages that come before their sender's session half", () => {
  it("are kept and taken once the half comes: a restarted replica loses none of them", () => {
    const c = replicaCluster(4, 1, 0);
    for (const id of c.ids) c.boot(id, { recovering: false });
    c.run(300, () => true);
    // r4 restarts knowing no peer's key; r2's SESSION is held up on its way to r4, directly and
    // as the others relay it with their keys (its connection is slow, and theirs too).
    const r4 = c.rejuvenate("r4", { recovering: true }, ["r1", "r2", "r3"]);
    const held: Buffer[] = [];
    const slowSession = (m: { from: string; to: string; message: Buffer }) => {
      const envelope = parseEnvelope(m.message);
      if (envelope?.from !== "r2" || m.to !== "r4" || envelope.body.type !== "SESSION") return true;
      held.push(m.message);
      return false;
    };
    c.run(300, slowSession);
    // r2 holds r4's half: it MACs to r4, which cannot check those MACs yet.
    const kept = r4.counters.get("awaiting-keys.kept") ?? 0;
    expect(r4.counters.get("rejected.no-session") ?? 0).toBeGreaterThan(0);
    expect(kept).toBeGreaterThan(0);
    expect(held.length).toBeGreaterThan(0);
    const handled = (core: typeof r4) =>
      [...core.counters].filter(([k]) => k.startsWith("in.")).reduce((n, [, v]) => n + v, 0);
    // And one more in r2's name whose MAC for r4 is spoiled: kept too, refused when checked.
    const genuine = [...(c.sent.get("r2") ?? [])]
      .reverse()
      .map((a) => (a.type === "broadcast" ? parseEnvelope(a.message) : undefined))
      .find((e) => e?.macs !== undefined && e.body.type === "STATUS");
    if (genuine?.macs === undefined) throw new Error("no MAC'd STATUS from r2");
    const spoiled = new Map(genuine.macs);
    spoiled.set("r4", "A".repeat(22));
    c.hand("r4", withMacs(genuine, spoiled));
    const before = handled(r4);
    const badMacs = r4.counters.get("rejected.bad-mac") ?? 0;
    c.hand("r4", held[0] as Buffer);
    // Every message kept from r2 is checked again now: each real one is taken (its MAC checks),
    // the spoiled one refused.
    expect(r4.counters.get("awaiting-keys.taken-again")).toBe(kept + 1);
    expect(handled(r4) - before).toBe(kept + 1);
    expect(r4.counters.get("rejected.bad-mac")).toBe(badMacs + 1);
  });

  it("kept before their sender's key, are kept again for its half when the key comes, and taken when the half does", () => {
    const c = replicaCluster(4, 1, 0);
    for (const id of c.ids) c.boot(id, { recovering: false });
    c.run(300, () => true);
    // r4 restarts knowing no peer's key; r2's key (its NEW_KEY, and every KEYS relaying it) and
    // r2's SESSION (directly or relayed) are held up on their way to r4.
    const r4 = c.rejuvenate("r4", { recovering: true }, ["r1", "r2", "r3"]);
    const heldKey: Buffer[] = [];
    const heldHalf: Buffer[] = [];
    c.run(300, (m) => {
      if (m.to !== "r4") return true;
      const type = parseEnvelope(m.message)?.body.type;
      if (type === "KEYS" || (m.from === "r2" && type === "NEW_KEY")) heldKey.push(m.message);
      else if (parseEnvelope(m.message)?.from === "r2" && type === "SESSION")
        heldHalf.push(m.message);
      else return true;
      return false;
    });
    const count = (name: string) => r4.counters.get(name) ?? 0;
    const handled = () =>
      [...r4.counters].filter(([k]) => k.startsWith("in.")).reduce((n, [, v]) => n + v, 0);
    const newKey = heldKey.find((m) => parseEnvelope(m)?.body.type === "NEW_KEY");
    if (newKey === undefined || heldHalf.length === 0) throw new Error("nothing held");
    // Still kept: r2's messages (what came from the others before their keys was taken since).
    const keptAll = count("awaiting-keys.kept");
    const takenBefore = count("awaiting-keys.taken-again");
    const keptForKey = keptAll - takenBefore;
    expect(keptForKey).toBeGreaterThan(0);
    // The key: everything kept from r2 is handled again; its MAC'd messages now lack the half.
    c.hand("r4", newKey);
    expect(count("awaiting-keys.taken-again") - takenBefore).toBe(keptForKey);
    const keptForHalf = count("awaiting-keys.kept") - keptAll;
    expect(keptForHalf).toBeGreaterThan(0);
    // The half: each of those is handled once more, and taken.
    const before = handled();
    c.hand("r4", heldHalf[0] as Buffer);
    expect(count("awaiting-keys.taken-again") - takenBefore).toBe(keptForKey + keptForHalf);
    expect(handled() - before).toBe(keptForHalf + 1);
  });

  it("are handled again once per half that makes a session, not once per half announced", () => {
    // r4 floods r2 with messages under an epoch of its that r2 will never learn, then announces
    // one new session half after another under its real key: none of them is due again.
    const c = replicaCluster(4, 1, 0);
    for (const id of c.ids) c.boot(id, { recovering: false });
    c.run(300, () => true);
    const r2 = c.cores.get("r2");
    if (r2 === undefined) throw new Error("no r2");
    const junk = Buffer.from('smwr1 r4 999999999 A\n{"type":"HANDOFF","view":1}');
    for (let i = 0; i < 1000; i++) r2.onMessage(junk, c.nowMs);
    expect(r2.counters.get("awaiting-keys.kept")).toBe(1000);
    for (let i = 1; i <= 50; i++) {
      const half = x25519FromSeed(Buffer.alloc(32, i)).publicKey;
      r2.onMessage(c.speakAs("r4", { type: "SESSION", dh: half, ask: false }), c.nowMs);
    }
    expect(r2.counters.get("awaiting-keys.taken-again") ?? 0).toBe(0);
  });
});
