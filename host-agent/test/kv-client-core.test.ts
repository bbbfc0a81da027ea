/**
 * The client's side: a result is taken once a quorum q of replicas sent the same signed reply; a
 * reply that could change nothing (to no request outstanding) costs no signature check; a read
 * goes unordered first and is ordered when q matching answers cannot come.
 */
import { certificateSigningBytes } from "@smw/wiring";
import { describe, expect, it } from "vitest";
import { KvClientCore, mostMeeting } from "../src/client/kv-client-core.js";
import type { KvOperation } from "../src/kv/kv-operation.js";
import { ClientSessions } from "../src/replica/client-sessions.js";
import { KeyRing, type Signer } from "../src/replica/key-ring.js";
import {
  clientSessionSigningBytes,
  parseClientMessage,
  parseEnvelope,
  readDigest,
  requestDigest,
  sealEnvelope,
  withMacs,
} from "../src/replica/messages.js";
import { SimCrypto } from "../src/sim/sim-crypto.js";

/** What a REPLY names: the digest of client c1's request under that number. */
const opOf = (ts: number, op: KvOperation) => requestDigest({ client: "c1", ts, op });
const PUT_X_V: KvOperation = { op: "put", key: "x", value: "v" };

/** The type of each message the client sends, in order. */
const sentTypes = (actions: ReturnType<KvClientCore["tick"]>) =>
  actions.map((a) => a.type === "send" && parseClientMessage(a.message)?.type);

/** A replica's signed answer to a read. */
const readReply = (
  signers: Map<string, Signer>,
  id: string,
  fields: { ts: number; since?: number; seq: number; op: string; value: string },
) =>
  sealEnvelope(
    id,
    1,
    {
      type: "READ_REPLY",
      client: "c1",
      ts: fields.ts,
      // By default the result held at `seq` alone (as if the key had just been written).
      since: fields.since ?? fields.seq,
      seq: fields.seq,
      op: fields.op,
      result: { op: "get", value: fields.value },
    },
    (b) => (signers.get(id) as Signer).sign(b),
  );

describe("the client's core", () => {
  it("takes q matching signed replies, refuses a forged one, and leaves late ones unchecked", () => {
    const { counts, signers, client } = setUp({ sessions: false, firstTs: 0 });
    client.submit({ op: "put", key: "x", value: "v" }, 0);
    const reply = (id: string, previous: string, signer = signers.get(id) as Signer, seq = 3) =>
      sealEnvelope(
        id,
        1,
        {
          type: "REPLY",
          view: 0,
          client: "c1",
          ts: 1,
          seq,
          op: opOf(1, PUT_X_V),
          result: { op: "put", previous },
        },
        (b) => signer.sign(b),
      );
    counts.verified = 0;
    // r4's reply signed with r1's key: refused.
    const forged = client.onMessage("r4", reply("r4", "evil", signers.get("r1")), 1);
    expect(forged).toEqual([{ type: "problem", from: "r4", detail: "a REPLY with bad-signature" }]);
    // The same result from an execution at another sequence number (one a cold start lost,
    // replied to before it) does not match.
    expect(client.onMessage("r3", reply("r3", "good", signers.get("r3"), 2), 2)).toEqual([]);
    expect(client.onMessage("r1", reply("r1", "good"), 2)).toEqual([]);
    // k'+1 = 2 matching is not enough: a read after this write could miss it (read-only.ts).
    expect(client.onMessage("r2", reply("r2", "good"), 3)).toEqual([]);
    // The same replica again counts once (r1 voting for another result too: one voter there).
    expect(client.onMessage("r2", reply("r2", "good"), 3)).toEqual([]);
    expect(client.onMessage("r1", reply("r1", "other"), 3)).toEqual([]);
    const done = client.onMessage("r3", reply("r3", "good"), 4);
    expect(done).toMatchObject([{ type: "complete", result: { op: "put", previous: "good" } }]);
    expect(counts.verified).toBe(7);
    // The rest arrive after the result was taken: no signature is checked for them.
    expect(client.onMessage("r4", reply("r4", "good"), 5)).toEqual([]);
    expect(counts.verified).toBe(7);
    expect(client.counters.get("replies.late")).toBe(1);
  });

  it("does not join replies naming another batch at the same sequence number: an execution a cold start lost and the one after it", () => {
    const { signers, client } = setUp({ sessions: false, firstTs: 0 });
    client.submit({ op: "put", key: "x", value: "v" }, 0);
    const lost = "a".repeat(64);
    const again = "b".repeat(64);
    const reply = (id: string, batch: string) =>
      sealEnvelope(
        id,
        1,
        {
          type: "REPLY",
          view: 0,
          client: "c1",
          ts: 1,
          seq: 3,
          batch,
          op: opOf(1, PUT_X_V),
          result: { op: "put", previous: "old" },
        },
        (b) => (signers.get(id) as Signer).sign(b),
      );
    // Two replies to the execution at 3 that the cold start went back on, one to the request
    // executed again at 3 in the new era: the same number and result, yet not q of one execution.
    expect(client.onMessage("r1", reply("r1", lost), 1)).toEqual([]);
    expect(client.onMessage("r2", reply("r2", lost), 1)).toEqual([]);
    expect(client.onMessage("r3", reply("r3", again), 2)).toEqual([]);
    // r1 answers the retransmission from the new era too: still two of the new execution.
    expect(client.onMessage("r1", reply("r1", again), 3)).toEqual([]);
    const done = client.onMessage("r4", reply("r4", again), 4);
    expect(done).toMatchObject([{ type: "complete", result: { op: "put", previous: "old" } }]);
  });
});

describe("the client's unordered reads", () => {
  const sentRead = (actions: ReturnType<KvClientCore["submit"]>) => {
    const sent = actions.map((a) =>
      a.type === "send" ? parseClientMessage(a.message) : undefined,
    );
    const read = sent[0];
    if (read?.type !== "READ") throw new Error("no READ sent");
    expect(sent.every((m) => m?.type === "READ")).toBe(true);
    const bytes = actions[0]?.type === "send" ? actions[0].message : Buffer.alloc(0);
    return { ts: read.ts, op: readDigest(bytes) };
  };

  it("takes q answers with the same result at the same sequence number, unsigned by the client", () => {
    const { signers, client } = setUp({ sessions: false, firstTs: 0 });
    const actions = client.submit({ op: "get", key: "x" }, 0);
    // q replicas are asked, not all four: the fourth's answer could add nothing to q matching.
    expect(actions.map((a) => a.type === "send" && a.to)).toEqual(["r1", "r2", "r3"]);
    const read = sentRead(actions);
    expect(
      client.onMessage("r1", readReply(signers, "r1", { ...read, seq: 7, value: "a" }), 1),
    ).toEqual([]);
    expect(
      client.onMessage("r2", readReply(signers, "r2", { ...read, seq: 7, value: "a" }), 1),
    ).toEqual([]);
    const done = client.onMessage(
      "r3",
      readReply(signers, "r3", { ...read, seq: 7, value: "a" }),
      2,
    );
    expect(done).toMatchObject([{ type: "complete", op: { op: "get" }, result: { value: "a" } }]);
    expect(client.counters.get("reads.ordered")).toBeUndefined();
  });

  it("takes answers at different sequence numbers whose intervals meet, at the state they meet", () => {
    const { signers, client } = setUp({ sessions: false, firstTs: 0 });
    const read = sentRead(client.submit({ op: "get", key: "x" }, 0));
    const answer = (id: string, since: number, seq: number) =>
      client.onMessage(id, readReply(signers, id, { ...read, since, seq, value: "a" }), 1);
    // x last written at 4: replicas at 7, 9 and 5 all hold "a" over [4, their seq].
    expect(answer("r1", 4, 7)).toEqual([]);
    expect(answer("r2", 4, 9)).toEqual([]);
    expect(answer("r3", 4, 5)).toMatchObject([
      { type: "complete", result: { value: "a" }, readAtSeq: 4 },
    ]);
    expect(client.counters.get("reads.widened")).toBeUndefined();
  });

  it("does not take q answers whose intervals do not all meet: a wide one cannot join two apart", () => {
    const { signers, client } = setUp({ sessions: false, firstTs: 0 });
    const read = sentRead(client.submit({ op: "get", key: "x" }, 0));
    const answer = (id: string, since: number, seq: number, at = 1) =>
      client.onMessage(id, readReply(signers, id, { ...read, since, seq, value: "a" }), at);
    // r1 saw "a" over [2, 3], r2 over [6, 8] (x was written in between, and back): they never
    // held "a" in one state together. r3 claims [0, 9], which meets each of them but not both.
    expect(answer("r1", 2, 3)).toEqual([]);
    const widened = answer("r2", 6, 8);
    expect(widened.map((a) => a.type === "send" && a.to)).toEqual(["r4"]);
    expect(answer("r3", 0, 9)).toEqual([]);
    // r4 at [5, 7] meets r2 and r3 at 6: three that meet.
    expect(answer("r4", 5, 7, 2)).toMatchObject([
      { type: "complete", result: { value: "a" }, readAtSeq: 6 },
    ]);
  });

  it("meets answers at the smallest state where the most of them hold", () => {
    expect(mostMeeting([])).toEqual({ count: 0, at: 0 });
    expect(
      mostMeeting([
        { since: 2, seq: 3 },
        { since: 6, seq: 8 },
        { since: 0, seq: 9 },
      ]),
    ).toEqual({ count: 2, at: 2 });
    expect(
      mostMeeting([
        { since: 4, seq: 4 },
        { since: 1, seq: 5 },
        { since: 3, seq: 9 },
      ]),
    ).toEqual({ count: 3, at: 4 });
  });

  it("refuses an answer to another read, and orders the read when q matching can no longer come", () => {
    const { signers, client } = setUp({ sessions: false, firstTs: 0 });
    const read = sentRead(client.submit({ op: "get", key: "x" }, 0));
    // An answer naming another read's digest (a forged READ for the same number): refused.
    const other = readReply(signers, "r4", { ...read, op: "0".repeat(64), seq: 7, value: "b" });
    expect(client.onMessage("r4", other, 1)).toEqual([
      { type: "problem", from: "r4", detail: "a READ_REPLY to another read" },
    ]);
    // Same result at different sequence numbers does not match: states differ.
    expect(
      client.onMessage("r1", readReply(signers, "r1", { ...read, seq: 7, value: "a" }), 1),
    ).toEqual([]);
    // Two answers apart and one to come of those asked cannot make three: r4 is asked at once.
    const widened = client.onMessage(
      "r2",
      readReply(signers, "r2", { ...read, seq: 8, value: "a" }),
      1,
    );
    expect(widened.map((a) => a.type === "send" && a.to)).toEqual(["r4"]);
    expect(sentRead(widened)).toEqual(read);
    expect(client.counters.get("reads.widened")).toBe(1);
    // Three answers apart and one to come cannot make three either: the read is ordered.
    const ordered = client.onMessage(
      "r3",
      readReply(signers, "r3", { ...read, seq: 9, value: "a" }),
      2,
    );
    const requests = ordered.map((a) =>
      a.type === "send" ? parseClientMessage(a.message) : undefined,
    );
    expect(ordered.map((a) => a.type === "send" && a.to)).toEqual(["r1", "r2", "r3", "r4"]);
    const request = requests[0];
    if (request?.type !== "REQUEST") throw new Error("the read was not ordered");
    expect(request.request.ts).toBe(read.ts + 1);
    expect(request.request.op).toEqual({ op: "get", key: "x" });
    // Not signed: each replica's copy carries a MAC under its session with the client instead.
    expect(request.request).toEqual({ client: "c1", ts: read.ts + 1, op: { op: "get", key: "x" } });
    expect(client.counters.get("reads.ordered")).toBe(1);
    // Late answers to the unordered read are dropped; ordered replies complete it.
    expect(
      client.onMessage("r4", readReply(signers, "r4", { ...read, seq: 7, value: "a" }), 3),
    ).toEqual([]);
    const reply = (id: string) =>
      sealEnvelope(
        id,
        1,
        {
          type: "REPLY",
          view: 0,
          client: "c1",
          ts: read.ts + 1,
          seq: 9,
          op: opOf(read.ts + 1, { op: "get", key: "x" }),
          result: { op: "get", value: "a" },
        },
        (b) => (signers.get(id) as Signer).sign(b),
      );
    expect(client.onMessage("r1", reply("r1"), 4)).toEqual([]);
    expect(client.onMessage("r2", reply("r2"), 4)).toEqual([]);
    expect(client.onMessage("r3", reply("r3"), 5)).toMatchObject([
      { type: "complete", result: { value: "a" }, latencyMs: 5 },
    ]);
  });

  it("orders a read whose answers do not come within the read timeout", () => {
    const { signers, client } = setUp({ sessions: false, firstTs: 0 });
    const read = sentRead(client.submit({ op: "get", key: "x" }, 0));
    client.onMessage("r1", readReply(signers, "r1", { ...read, seq: 7, value: "a" }), 1);
    // No latency measured yet: the rest are asked after half the read timeout.
    expect(client.tick(249)).toEqual([]);
    expect(client.tick(250).map((a) => a.type === "send" && a.to)).toEqual(["r4"]);
    expect(client.tick(499)).toEqual([]);
    const ordered = client.tick(500);
    expect(sentTypes(ordered)).toEqual(["REQUEST", "REQUEST", "REQUEST", "REQUEST"]);
    expect(client.counters.get("reads.timed-out")).toBe(1);
  });
});

describe("where the client sends its reads", () => {
  const targets = (actions: ReturnType<KvClientCore["submit"]>) =>
    actions.map((a) => (a.type === "send" ? a.to : a.type));

  it("asks every replica while reads sent to q keep needing the rest, and tries q again now and then", () => {
    const { signers, client } = setUp({ sessions: false, firstTs: 0 });
    let now = 0;
    // One read: answered by those asked at the sequence numbers `seqs`, in order; the rest (if
    // asked) answer at seq 9, so the read completes once they are.
    const read = (seqs: number[]) => {
      now += 100;
      const sent = client.submit({ op: "get", key: "x" }, now);
      const first = sent[0];
      const m = first?.type === "send" ? parseClientMessage(first.message) : undefined;
      if (m?.type !== "READ" || first?.type !== "send") throw new Error("no READ");
      const digest = readDigest(first.message);
      const asked = targets(sent);
      const answer = (id: string, seq: number) =>
        client.onMessage(
          id,
          readReply(signers, id, { ts: m.ts, seq, op: digest, value: "a" }),
          now + 1,
        );
      let later: string[] = [];
      asked.forEach((id, i) => {
        later = [...later, ...targets(answer(id, seqs[i] ?? 9)).filter((t) => t !== "complete")];
      });
      for (const id of later) answer(id, 9);
      return asked.length;
    };
    // Each read's q answers come at two sequence numbers (writes in between): each needs the rest.
    const split = [9, 9, 8];
    for (let i = 0; i < 3; i++) expect(read(split)).toBe(3);
    expect(client.counters.get("reads.widened")).toBe(3);
    // By now a quarter and more of them missed: reads go to all four...
    const sizes = Array.from({ length: 7 }, () => read(split));
    expect(sizes).toEqual([4, 4, 4, 4, 4, 4, 4]);
    expect(client.counters.get("reads.to-all")).toBe(7);
    // ...but every eighth still to q: it matches now, and in a while q is enough again.
    const probes: number[] = [];
    for (let i = 0; i < 40; i++) probes.push(read([9, 9, 9]));
    expect(probes.slice(0, 8)).toContain(3);
    expect(probes.slice(-8)).toEqual([3, 3, 3, 3, 3, 3, 3, 3]);
  });

  it("leaves out of its reads a replica that missed one, until it answers again", () => {
    const { signers, client } = setUp({ sessions: false, firstTs: 0 });
    const answer = (id: string, read: { ts: number; op: string }, at: number) =>
      client.onMessage(id, readReply(signers, id, { ...read, seq: 3, value: "a" }), at);
    const readOf = (actions: ReturnType<KvClientCore["submit"]>) => {
      const sent = actions[0];
      const m = sent?.type === "send" ? parseClientMessage(sent.message) : undefined;
      if (m?.type !== "READ" || sent?.type !== "send") throw new Error("no READ");
      return { ts: m.ts, op: readDigest(sent.message) };
    };
    const first = client.submit({ op: "get", key: "x" }, 0);
    expect(targets(first)).toEqual(["r1", "r2", "r3"]);
    const read = readOf(first);
    answer("r1", read, 1);
    answer("r2", read, 1);
    // r3 is down (being rejuvenated): after half the read timeout, r4 is asked and answers.
    expect(targets(client.tick(250))).toEqual(["r4"]);
    expect(targets(answer("r4", read, 251))).toEqual(["complete"]);
    // The next reads go round from r2 but leave r3 out while others answer.
    const second = client.submit({ op: "get", key: "x" }, 300);
    expect(targets(second)).toEqual(["r2", "r4", "r1"]);
    const read2 = readOf(second);
    for (const id of ["r2", "r4", "r1"]) answer(id, read2, 301);
    const third = client.submit({ op: "get", key: "x" }, 400);
    expect(targets(third)).toEqual(["r4", "r1", "r2"]);
  });

  it("orders a read whose answers split at once, not waiting a read timeout for a replica that missed", () => {
    const { signers, client } = setUp({ sessions: false, firstTs: 0 });
    const answer = (id: string, read: { ts: number; op: string }, seq: number, at: number) =>
      client.onMessage(id, readReply(signers, id, { ...read, seq, value: "a" }), at);
    const readOf = (actions: ReturnType<KvClientCore["submit"]>) => {
      const sent = actions[0];
      const m = sent?.type === "send" ? parseClientMessage(sent.message) : undefined;
      if (m?.type !== "READ" || sent?.type !== "send") throw new Error("no READ");
      return { ts: m.ts, op: readDigest(sent.message) };
    };
    // r3 is down and times out a whole read: the read is ordered, and r3 counts as missed.
    const first = readOf(client.submit({ op: "get", key: "x" }, 0));
    answer("r1", first, 3, 1);
    answer("r2", first, 3, 1);
    expect(targets(client.tick(250))).toEqual(["r4"]);
    expect(answer("r4", first, 4, 251)).toEqual([]);
    expect(targets(client.tick(500))).toEqual(["r1", "r2", "r3", "r4"]);
    expect(client.counters.get("reads.timed-out")).toBe(1);
    client.abandon();
    // The next read's answers split two ways with one to come: r3 is not waited for.
    const second = client.submit({ op: "get", key: "x" }, 600);
    expect(targets(second)).toEqual(["r2", "r4", "r1"]);
    const read2 = readOf(second);
    expect(answer("r2", read2, 6, 601)).toEqual([]);
    const ordered = answer("r4", read2, 7, 602);
    expect(sentTypes(ordered)).toEqual(["REQUEST", "REQUEST", "REQUEST", "REQUEST"]);
    expect(client.counters.get("reads.ordered")).toBe(2);
    expect(client.counters.get("reads.timed-out")).toBe(1);
  });
});

/** A client of four replicas (keys certified by their boards); `sessions`: its scheme agrees keys. */
function setUp(
  options: { sessions: boolean; firstTs: number } = { sessions: true, firstTs: 1000 },
) {
  const crypto = new SimCrypto(5);
  const counts = { verified: 0 };
  const scheme = {
    verify: (key: string, bytes: Buffer, sig: string) => {
      counts.verified++;
      return crypto.verify(key, bytes, sig);
    },
    ...(options.sessions ? { newKeyAgreement: () => crypto.newKeyAgreement() } : {}),
  };
  const ids = ["r1", "r2", "r3", "r4"];
  const boards = new Map(ids.map((id) => [id, crypto.newSigner(`b-${id}`)]));
  const signers = new Map(ids.map((id) => [id, crypto.newSigner(id)]));
  const ring = new KeyRing(
    scheme,
    new Map([...boards].map(([id, s]) => [id, s.publicKey])),
    new Map(),
  );
  for (const id of ids) {
    const body = {
      host: id,
      board: id,
      period: 1,
      publicKey: (signers.get(id) as Signer).publicKey,
      issuedAt: "t",
    };
    ring.install({
      ...body,
      signature: (boards.get(id) as Signer).sign(certificateSigningBytes(body)),
    });
  }
  const clientSigner = crypto.newSigner("c1");
  const client = new KvClientCore(
    { id: "c1", replicas: ids, replyQuorum: 3, retransmitMs: 500, firstTs: options.firstTs },
    ring,
    clientSigner,
  );
  return { crypto, counts, ids, signers, client, clientSigner };
}

describe("the client's core with sessions", () => {
  it("takes replies MAC'd under its sessions with the replicas, and offers its half again when one fails", () => {
    const { crypto, counts, ids, signers, client, clientSigner } = setUp();
    const servers = new Map(
      ids.map((id) => [id, new ClientSessions(id, 1, () => crypto.newKeyAgreement())]),
    );
    const offered = new Map<string, { ts: number; dh: string }>();
    // Its half goes to every replica, signed; each answers with its own, signed.
    for (const action of client.start()) {
      if (action.type !== "send") continue;
      const m = parseClientMessage(action.message);
      if (m?.type !== "SESSION") continue;
      const { sig, type: _t, ...signed } = m;
      expect(crypto.verify(clientSigner.publicKey, clientSessionSigningBytes(signed), sig)).toBe(
        true,
      );
      offered.set(action.to, m);
      const server = servers.get(action.to) as ClientSessions;
      expect(server.learn("c1", m.ts, m.dh, 0)).toBe(true);
      // The same half again at once is not answered again (each answer is a signature)...
      expect(server.learn("c1", m.ts, m.dh, 10)).toBe(false);
      expect(
        client.onMessage(action.to, server.answer("c1", signers.get(action.to) as Signer), 0),
      ).toEqual([]);
    }
    // An older half (a replay) is not taken.
    expect(servers.get("r1")?.learn("c1", 999, "AAAA", 500)).toBe(false);
    // ...but once a while has passed (the client may have lost the answer), it is.
    const r4half = offered.get("r4");
    expect(r4half && servers.get("r4")?.learn("c1", r4half.ts, r4half.dh, 500)).toBe(true);
    client.submit({ op: "put", key: "x", value: "w" }, 1);
    const body = {
      type: "REPLY",
      view: 0,
      client: "c1",
      ts: 1001,
      seq: 5,
      op: opOf(1001, { op: "put", key: "x", value: "w" }),
      result: { op: "put", previous: "v" },
    } as const;
    const reply = (id: string) => {
      const sealed = servers.get(id)?.seal("c1", body, signers.get(id) as Signer) ?? [];
      expect(sealed).toHaveLength(1);
      return sealed[0] as Buffer;
    };
    counts.verified = 0;
    // r3's MAC spoiled: refused, and the client offers r3 its half again.
    const r3 = parseEnvelope(reply("r3"));
    if (r3?.macs === undefined) throw new Error("r3's reply is not MAC'd");
    const spoiled = client.onMessage("r3", withMacs(r3, new Map([["c1", "A".repeat(22)]])), 2);
    expect(spoiled.map((a) => a.type === "send" && parseClientMessage(a.message)?.type)).toEqual([
      "SESSION",
    ]);
    expect(client.counters.get("rejected.bad-mac")).toBe(1);
    expect(client.onMessage("r1", reply("r1"), 3)).toEqual([]);
    expect(client.onMessage("r2", reply("r2"), 4)).toEqual([]);
    // r4 took the half again at 500: its half comes first, then the MAC'd reply.
    const [half, macd] = servers.get("r4")?.seal("c1", body, signers.get("r4") as Signer) ?? [];
    expect(client.onMessage("r4", half as Buffer, 4)).toEqual([]);
    expect(client.onMessage("r4", macd as Buffer, 4)).toMatchObject([
      { type: "complete", result: { previous: "v" } },
    ]);
    // No signature was checked for any reply (r4's half is one).
    expect(counts.verified).toBe(1);
  });
});
