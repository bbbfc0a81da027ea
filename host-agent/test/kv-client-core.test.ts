/**
 * The client's side: a result is taken once k'+1 replicas sent the same signed reply; a reply
 * that could change nothing (to no request outstanding) costs no signature check.
 */
import { certificateSigningBytes } from "@smw/wiring";
import { describe, expect, it } from "vitest";
import { KvClientCore } from "../src/client/kv-client-core.js";
import { ClientSessions } from "../src/replica/client-sessions.js";
import { KeyRing, type Signer } from "../src/replica/key-ring.js";
import {
  clientSessionSigningBytes,
  parseClientMessage,
  parseEnvelope,
  sealEnvelope,
  withMacs,
} from "../src/replica/messages.js";
import { SimCrypto } from "../src/sim/sim-crypto.js";

describe("the client's core", () => {
  it("takes k'+1 matching signed replies, refuses a forged one, and leaves late ones unchecked", () => {
    const { counts, signers, client } = setUp({ sessions: false, firstTs: 0 });
    client.submit({ op: "get", key: "x" }, 0);
    const reply = (id: string, value: string, signer = signers.get(id) as Signer) =>
      sealEnvelope(
        id,
        1,
        { type: "REPLY", view: 0, client: "c1", ts: 1, result: { op: "get", value } },
        (b) => signer.sign(b),
      );
    counts.verified = 0;
    // r4's reply signed with r1's key: refused.
    const forged = client.onMessage("r4", reply("r4", "evil", signers.get("r1")), 1);
    expect(forged).toEqual([{ type: "problem", from: "r4", detail: "a REPLY with bad-signature" }]);
    expect(client.onMessage("r1", reply("r1", "good"), 2)).toEqual([]);
    const done = client.onMessage("r2", reply("r2", "good"), 3);
    expect(done).toMatchObject([{ type: "complete", result: { op: "get", value: "good" } }]);
    expect(counts.verified).toBe(3);
    // The rest arrive after the result was taken: no signature is checked for them.
    expect(client.onMessage("r3", reply("r3", "good"), 4)).toEqual([]);
    expect(client.onMessage("r4", reply("r4", "good"), 5)).toEqual([]);
    expect(counts.verified).toBe(3);
    expect(client.counters.get("replies.late")).toBe(2);
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
    { id: "c1", replicas: ids, weakQuorum: 2, retransmitMs: 500, firstTs: options.firstTs },
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
    client.submit({ op: "get", key: "x" }, 1);
    const body = {
      type: "REPLY",
      view: 0,
      client: "c1",
      ts: 1001,
      result: { op: "get", value: "v" },
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
    expect(client.onMessage("r2", reply("r2"), 4)).toMatchObject([
      { type: "complete", result: { value: "v" } },
    ]);
    // No signature was checked for any reply.
    expect(counts.verified).toBe(0);
  });
});
