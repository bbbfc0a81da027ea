/**
 * Key leases at the client (SAFETY.md, "Key epochs": revocation at clients): a reply counts only
 * under a board-signed lease on the key it came under, with the client clock bound to spare. Keys
 * the adversary stole from hosts it left stop speaking there a lease after their rejuvenation
 * began, whatever certificates the network keeps from the client.
 */
import { certificateSigningBytes, type KeyLease, leaseSigningBytes } from "@smw/wiring";
import { describe, expect, it } from "vitest";
import { type ClientAction, KvClientCore } from "../src/client/kv-client-core.js";
import { KeyRing, type Signer } from "../src/replica/key-ring.js";
import { parseClientMessage, sealEnvelope } from "../src/replica/messages.js";
import { SimCrypto } from "../src/sim/sim-crypto.js";

const ids = ["r1", "r2", "r3", "r4"];
const BOUND_MS = 100;

function setUp(options: { leases: boolean }) {
  const crypto = new SimCrypto(7);
  const boards = new Map(ids.map((id) => [id, crypto.newSigner(`b-${id}`)]));
  const signers = new Map(ids.map((id) => [id, crypto.newSigner(id)]));
  const ring = new KeyRing(
    crypto,
    new Map([...boards].map(([id, s]) => [id, s.publicKey])),
    new Map(),
  );
  for (const id of ids) {
    const body = {
      host: id,
      board: `b-${id}`,
      period: 1,
      publicKey: (signers.get(id) as Signer).publicKey,
      issuedAt: "t",
    };
    ring.install({
      ...body,
      signature: (boards.get(id) as Signer).sign(certificateSigningBytes(body)),
    });
  }
  const clock = { nowMs: 1_000_000 };
  const client = new KvClientCore(
    {
      id: "c1",
      replicas: ids,
      replyQuorum: 3,
      retransmitMs: 500,
      firstTs: 0,
      ...(options.leases ? { leaseClockBoundMs: BOUND_MS } : {}),
      wallClockMs: () => clock.nowMs,
    },
    ring,
    crypto.newSigner("c1"),
  );
  const lease = (id: string, epoch: number, notAfterMs: number, board = id): KeyLease => {
    const body = { host: id, board: `b-${id}`, epoch, notAfterMs };
    return { ...body, signature: (boards.get(board) as Signer).sign(leaseSigningBytes(body)) };
  };
  const leaseMessage = (l: KeyLease) =>
    sealEnvelope(l.host, l.epoch, { type: "LEASE", lease: l }, (b) =>
      (signers.get(l.host) as Signer).sign(b),
    );
  const reply = (id: string, previous: string) =>
    sealEnvelope(
      id,
      1,
      { type: "REPLY", view: 0, client: "c1", ts: 1, seq: 3, result: { op: "put", previous } },
      (b) => (signers.get(id) as Signer).sign(b),
    );
  return { crypto, ring, client, clock, lease, leaseMessage, reply };
}

const completed = (actions: ClientAction[]) => actions.filter((a) => a.type === "complete");

describe("a key lease", () => {
  it("is taken only when its board signed it and it is newer: a later epoch, or longer on the same", () => {
    const { ring, lease } = setUp({ leases: true });
    expect(ring.installLease(lease("r1", 1, 5_000))).toBe("installed");
    expect(ring.installLease(lease("r1", 1, 4_000))).toBe("older");
    expect(ring.installLease(lease("r1", 1, 5_000))).toBe("older");
    expect(ring.installLease(lease("r1", 1, 6_000))).toBe("installed");
    // Signed by another host's board: refused.
    expect(ring.installLease(lease("r1", 1, 9_000, "r2"))).toBe("bad-signature");
    expect(ring.installLease({ ...lease("r1", 1, 9_000), host: "r9" })).toBe("unknown-host");
    expect(ring.leaseCovers("r1", 1, 5_999)).toBe(true);
    expect(ring.leaseCovers("r1", 1, 6_000)).toBe(false);
    // A lease on the next key ends the one before at once, certificate or not.
    expect(ring.installLease(lease("r1", 2, 7_000))).toBe("installed");
    expect(ring.leaseCovers("r1", 1, 10)).toBe(false);
    expect(ring.leaseCovers("r1", 2, 10)).toBe(true);
    expect(ring.installLease(lease("r1", 1, 99_000))).toBe("older");
  });
});

describe("the client's core with key leases", () => {
  it("counts a reply only under a lease with the clock bound to spare, and asks for one it lacks", () => {
    const { client, clock, lease, leaseMessage, reply } = setUp({ leases: true });
    client.submit({ op: "put", key: "x", value: "v" }, 0);
    // No lease from r1 yet: its reply is no voice, and the client asks it for its keys.
    const asked = client.onMessage("r1", reply("r1", "good"), 1);
    expect(asked.map((a) => a.type === "send" && parseClientMessage(a.message)?.type)).toEqual([
      "KEYS_QUERY",
    ]);
    expect(client.counters.get("rejected.no-lease")).toBe(1);
    for (const id of ids) client.onMessage(id, leaseMessage(lease(id, 1, clock.nowMs + 1_000)), 2);
    expect(client.counters.get("leases.installed")).toBe(4);
    expect(client.onMessage("r1", reply("r1", "good"), 3)).toEqual([]);
    expect(client.onMessage("r2", reply("r2", "good"), 3)).toEqual([]);
    // r3's lease has less than the bound left by the client's clock: not counted.
    clock.nowMs += 1_000 - BOUND_MS;
    expect(completed(client.onMessage("r3", reply("r3", "good"), 4))).toEqual([]);
    expect(client.counters.get("rejected.no-lease")).toBe(2);
    client.onMessage("r3", leaseMessage(lease("r3", 1, clock.nowMs + 1_000)), 5);
    expect(completed(client.onMessage("r3", reply("r3", "good"), 6))).toHaveLength(1);
  });

  it("refuses a LEASE its board did not sign, and names who sent it", () => {
    const { client, lease, leaseMessage } = setUp({ leases: true });
    const forged = { ...lease("r2", 1, 9_999_999), notAfterMs: 99_999_999 };
    expect(client.onMessage("r2", leaseMessage(forged), 1)).toEqual([
      { type: "problem", from: "r2", detail: "a LEASE with bad-signature" },
    ]);
    expect(client.counters.get("rejected.lease-bad-signature")).toBe(1);
  });

  // The review's case at its core: q keys stolen from hosts the adversary left, at a client the
  // network kept from learning their new certificates. Each key's last lease was given before its
  // host's group began; by the time the adversary speaks with it, it has lapsed.
  it("takes no reply from keys whose leases lapsed, however many agree; without leases it did", () => {
    for (const leases of [false, true]) {
      const { client, clock, lease, leaseMessage, reply } = setUp({ leases });
      for (const id of ids)
        client.onMessage(id, leaseMessage(lease(id, 1, clock.nowMs + 2_000)), 0);
      client.submit({ op: "put", key: "x", value: "v" }, 0);
      clock.nowMs += 2_000;
      const out = ["r1", "r2", "r3"].flatMap((id) => client.onMessage(id, reply(id, "forged"), 10));
      expect(completed(out), `leases ${leases}`).toHaveLength(leases ? 0 : 1);
    }
  });
});
