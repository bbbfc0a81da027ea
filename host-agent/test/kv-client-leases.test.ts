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
import {
  parseClientMessage,
  readDigest,
  requestDigest,
  sealEnvelope,
} from "../src/replica/messages.js";
import { SimCrypto } from "../src/sim/sim-crypto.js";

const ids = ["r1", "r2", "r3", "r4"];
const BOUND_MS = 100;
/** What a REPLY to the first request, put(x, v), names. */
const PUT_X_V = requestDigest({ client: "c1", ts: 1, op: { op: "put", key: "x", value: "v" } });

/** The client with every replica certified under epoch 1; `lease` is a board's lease on a key. */
function setUp(options: { leases: boolean }) {
  const b = bench(ids, { quorum: 3, leases: options.leases });
  for (const id of ids) b.certify(id, 1);
  const leaseMessage = (l: KeyLease) => b.seal(l.host, l.epoch, { type: "LEASE", lease: l });
  const reply = (id: string, previous: string) => b.putReply(id, previous);
  return { ring: b.ring, client: b.client, clock: b.clock, lease: b.lease, leaseMessage, reply };
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
    // r1's and r2's votes are judged again with r3's: their leases lapsed meanwhile, unrenewed.
    expect(completed(client.onMessage("r3", reply("r3", "good"), 6))).toEqual([]);
    // Renewed (as every quarter lease), they count again: the same keys, still current.
    for (const id of ["r1", "r2"])
      client.onMessage(id, leaseMessage(lease(id, 1, clock.nowMs + 1_000)), 7);
    expect(completed(client.onMessage("r4", reply("r4", "other"), 8))).toEqual([]);
    expect(completed(client.onMessage("r3", reply("r3", "good"), 9))).toHaveLength(1);
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

describe("a client's clock, read against the leases it receives", () => {
  const LEASE_MS = 1_000;
  const setUpClocks = () => {
    const b = bench(ids, { quorum: 3, keyLeaseMs: LEASE_MS });
    for (const id of ids) b.certify(id, 1);
    return b;
  };
  const put = (b: ReturnType<typeof setUpClocks>, id: string, t: number) =>
    b.client.onMessage(id, b.putReply(id, null), t);

  it("takes a lease from a board whose clock is ahead by no more than the bound, and says nothing", () => {
    const b = setUpClocks();
    // Issued just now by a board whose clock reads the bound ahead of this one.
    const lease = b.leaseFrom("r1", 1, b.clock.nowMs + BOUND_MS + LEASE_MS);
    expect(b.client.onMessage("r1", lease, 0)).toEqual([]);
    expect(b.client.counters.get("leases.installed")).toBe(1);
    expect(b.client.counters.get("clock.behind-a-board")).toBeUndefined();
  });

  it("judges a board's leases by that board's clock once it is seen ahead: a clock behind counts no lease past its lapse", () => {
    const b = setUpClocks();
    // The boards' clocks read 300 ms past this one (beyond the 100 ms bound): by this clock alone
    // a lease would count 300 ms after its board reset the host.
    for (const id of ids) {
      const actions = b.client.onMessage(id, b.leaseFrom(id, 1, b.clock.nowMs + 300 + LEASE_MS), 0);
      expect(actions).toEqual([
        {
          type: "problem",
          from: id,
          detail: `this machine's clock is at least 300 ms behind the clock of ${id}'s board, more than the client clock bound (${BOUND_MS} ms): its leases are read by its board's clock`,
        },
      ]);
    }
    expect(b.client.counters.get("clock.behind-a-board")).toBe(ids.length);
    expect(b.client.clockBehindMs).toBe(300);
    b.client.submit({ op: "put", key: "x", value: "v" }, 0);
    // 950 ms on: by this clock the leases have 350 ms left; by the boards' clocks 50, less than
    // the bound. No reply counts.
    b.clock.nowMs += 950;
    const replies = ids.flatMap((id) => put(b, id, 950));
    expect(completed(replies)).toEqual([]);
    expect(b.client.counters.get("rejected.no-lease")).toBe(ids.length);
  });

  it("reads a board set right again by its clock four leases later: its replica counts again", () => {
    const b = setUpClocks();
    // r1's board's clock once ran 5 s ahead (its lease lapses 6 s from now by this clock, and the
    // board resets its host no sooner); then its time service set it right.
    b.client.onMessage("r1", b.leaseFrom("r1", 1, b.clock.nowMs + 5_000 + LEASE_MS), 0);
    let t = 0;
    const renew = () => {
      for (const id of ["r2", "r3", "r4"])
        b.client.onMessage(id, b.leaseFrom(id, 1, b.clock.nowMs + LEASE_MS), t);
    };
    renew();
    b.client.submit({ op: "put", key: "x", value: "v" }, 0);
    // 950 ms on, read by the lead it showed, r1's lease has lapsed: only r2 and r3 count.
    t = 950;
    b.clock.nowMs += 950;
    renew();
    expect(completed(["r1", "r2", "r3"].flatMap((id) => put(b, id, t)))).toEqual([]);
    // Four leases on, r1's board is read by this clock again: its lease counts, as it does at
    // its board, which is now right.
    for (; t <= 4 * LEASE_MS + 250; t += LEASE_MS / 4) {
      b.clock.nowMs += LEASE_MS / 4;
      renew();
    }
    expect(completed(put(b, "r1", t))).toHaveLength(1);
  });

  it("does not count a lease again when its clock is set back", () => {
    const b = setUpClocks();
    for (const id of ids) b.client.onMessage(id, b.leaseFrom(id, 1, b.clock.nowMs + LEASE_MS), 0);
    b.client.submit({ op: "put", key: "x", value: "v" }, 0);
    // The leases lapse; then the clock is set back 10 s (by hand, by a time service).
    b.clock.nowMs += LEASE_MS;
    b.client.tick(LEASE_MS);
    b.clock.nowMs -= 10_000;
    const replies = ids.flatMap((id) => put(b, id, LEASE_MS + 10));
    expect(completed(replies)).toEqual([]);
    expect(b.client.counters.get("rejected.no-lease")).toBe(ids.length);
  });
});

/**
 * A client whose replicas are certified and leased by hand: `certify` a key epoch, `leaseFrom`
 * a replica's lease message on it; `clock` is the client's clock.
 */
function bench(
  replicas: readonly string[],
  config: { quorum: number; readQuorum?: number; leases?: boolean; keyLeaseMs?: number },
) {
  const crypto = new SimCrypto(11);
  const boards = new Map(replicas.map((id) => [id, crypto.newSigner(`b-${id}`)]));
  const keys = new Map<string, Signer>();
  const ring = new KeyRing(
    crypto,
    new Map([...boards].map(([id, s]) => [id, s.publicKey])),
    new Map(),
  );
  const certify = (id: string, epoch: number) => {
    const signer = crypto.newSigner(`${id}-${epoch}`);
    keys.set(`${id}/${epoch}`, signer);
    const body = { host: id, board: `b-${id}`, period: epoch, publicKey: signer.publicKey };
    const full = { ...body, issuedAt: "t" };
    ring.install({
      ...full,
      signature: (boards.get(id) as Signer).sign(certificateSigningBytes(full)),
    });
  };
  const clock = { nowMs: 1_000_000_000 };
  const client = new KvClientCore(
    {
      id: "c1",
      replicas,
      replyQuorum: config.quorum,
      readQuorum: config.readQuorum ?? config.quorum,
      readTimeoutMs: 100,
      retransmitMs: 500,
      firstTs: 0,
      ...(config.leases === false ? {} : { leaseClockBoundMs: BOUND_MS }),
      ...(config.keyLeaseMs === undefined ? {} : { keyLeaseMs: config.keyLeaseMs }),
      wallClockMs: () => clock.nowMs,
    },
    ring,
    crypto.newSigner("c1"),
  );
  const seal = (id: string, epoch: number, body: Parameters<typeof sealEnvelope>[2]) =>
    sealEnvelope(id, epoch, body, (b) => (keys.get(`${id}/${epoch}`) as Signer).sign(b));
  /** A lease `board`'s board (by default `id`'s own) signed on `id`'s key `epoch`. */
  const lease = (id: string, epoch: number, notAfterMs: number, board = id): KeyLease => {
    const body = { host: id, board: `b-${id}`, epoch, notAfterMs };
    return { ...body, signature: (boards.get(board) as Signer).sign(leaseSigningBytes(body)) };
  };
  const leaseFrom = (id: string, epoch: number, notAfterMs: number) =>
    seal(id, epoch, { type: "LEASE", lease: lease(id, epoch, notAfterMs) });
  /** `id`'s REPLY under key epoch 1 to the first request, put(x, v), executed at 3. */
  const putReply = (id: string, previous: string | null) =>
    seal(id, 1, {
      type: "REPLY",
      view: 0,
      client: "c1",
      ts: 1,
      seq: 3,
      op: PUT_X_V,
      result: { op: "put", previous },
    });
  return { ring, client, clock, certify, seal, lease, leaseFrom, putReply };
}

describe("votes under leases, judged when the quorum is", () => {
  const LEASE_MS = 2_000;

  // n = 4, k' = 1, q = 3. The network holds back every correct reply to one write, for as long as
  // it likes; the client retransmits. The adversary holds r1, then r2, then r3, never two at once,
  // and each sends a forged REPLY under its own key, leased while the adversary holds it.
  it("does not take q forged votes gathered one host at a time over several moves", () => {
    const b = bench(["r1", "r2", "r3", "r4"], { quorum: 3 });
    for (const id of ["r1", "r2", "r3", "r4"]) {
      b.certify(id, 1);
      b.client.onMessage(id, b.leaseFrom(id, 1, b.clock.nowMs + LEASE_MS), 0);
    }
    b.client.submit({ op: "put", key: "x", value: "v" }, 0);
    const forged = (id: string) =>
      b.seal(id, 1, {
        type: "REPLY",
        view: 0,
        client: "c1",
        ts: 1,
        seq: 7,
        op: PUT_X_V,
        result: { op: "put", previous: "FORGED" },
      });
    let t = 1;
    const done: ClientAction[] = [];
    const vote = (id: string) => done.push(...completed(b.client.onMessage(id, forged(id), t++)));
    vote("r1");
    // r1's group is rejuvenated (a lease and more after it began), and the adversary moves on to
    // the next host; the hosts it has not reached yet are leased on.
    for (const [left, next] of [
      ["r1", "r2"],
      ["r2", "r3"],
    ] as const) {
      b.clock.nowMs += LEASE_MS + 500;
      t += 1_000;
      b.client.tick(t++);
      b.certify(left, 2);
      b.client.onMessage(left, b.leaseFrom(left, 2, b.clock.nowMs + LEASE_MS), t++);
      for (const id of ["r2", "r3", "r4"].filter((id) => id !== left))
        b.client.onMessage(id, b.leaseFrom(id, 1, b.clock.nowMs + LEASE_MS), t++);
      vote(next);
    }
    // Three forged votes came, one each from three replicas: never more than two count at once.
    expect(done).toEqual([]);
  });

  it("takes a replica's vote again under its new key once the one under its former key no longer counts", () => {
    const b = bench(["r1", "r2", "r3", "r4"], { quorum: 3 });
    for (const id of ["r1", "r2", "r3", "r4"]) {
      b.certify(id, 1);
      b.client.onMessage(id, b.leaseFrom(id, 1, b.clock.nowMs + LEASE_MS), 0);
    }
    b.client.submit({ op: "put", key: "x", value: "v" }, 0);
    const reply = (id: string, epoch: number) =>
      b.seal(id, epoch, {
        type: "REPLY",
        view: 0,
        client: "c1",
        ts: 1,
        seq: 7,
        op: PUT_X_V,
        result: { op: "put", previous: null },
      });
    expect(completed(b.client.onMessage("r1", reply("r1", 1), 1))).toEqual([]);
    // r1 is rejuvenated meanwhile: a new key, leased; its former key's vote no longer counts.
    b.certify("r1", 2);
    b.client.onMessage("r1", b.leaseFrom("r1", 2, b.clock.nowMs + LEASE_MS), 2);
    expect(completed(b.client.onMessage("r2", reply("r2", 1), 3))).toEqual([]);
    // It answers the retransmission under its new key (from its client table): that vote counts.
    expect(completed(b.client.onMessage("r1", reply("r1", 2), 4))).toEqual([]);
    expect(completed(b.client.onMessage("r3", reply("r3", 1), 5))).toHaveLength(1);
  });

  // n = 6, k' = k = 1, q = 4, q_r = 5. r1's group began at T0, its board's last renewal came 20 ms
  // before; the group is done at T0 + lease and the next one (r2's) begins then. The adversary,
  // which left r1 and holds r2, acks r2's shutdown at once and takes r3 at its reset. The client's
  // clock is behind the boards' by the whole bound. put(x, v2) completed at seq 11; r4 and r5 lag
  // at 10 (the network).
  it("does not let a read take the lie of a key whose lease lapsed while it waited", () => {
    const ids = ["r1", "r2", "r3", "r4", "r5", "r6"];
    const b = bench(ids, { quorum: 4, readQuorum: 5 });
    const T0 = 1_000_000_000;
    const behind = (trueMs: number) => {
      b.clock.nowMs = trueMs - BOUND_MS;
    };
    for (const id of ids) b.certify(id, 1);
    b.client.onMessage("r1", b.leaseFrom("r1", 1, T0 - 20 + LEASE_MS), 0);
    for (const id of ids.slice(1)) b.client.onMessage(id, b.leaseFrom(id, 1, T0 + 3_900), 0);
    behind(T0 + 1_950);
    const read = b.client.submit({ op: "get", key: "x" }, 1_950).find((a) => a.type === "send");
    if (read?.type !== "send") throw new Error("no READ sent");
    const op = readDigest(read.message);
    const done: ClientAction[] = [];
    const answer = (trueMs: number, id: string, since: number) => {
      behind(trueMs);
      const message = b.seal(id, 1, {
        type: "READ_REPLY",
        client: "c1",
        ts: 1,
        since,
        seq: 10,
        op,
        result: { op: "get", value: "v1" },
      });
      done.push(...completed(b.client.onMessage(id, message, trueMs - T0)));
    };
    answer(T0 + 1_960, "r1", 10); // the key stolen at the last move: its lease still counts
    answer(T0 + 1_962, "r2", 10); // the replica the adversary holds
    answer(T0 + 1_965, "r4", 5); // correct, lagging
    answer(T0 + 1_966, "r5", 5); // correct, lagging
    answer(T0 + 2_015, "r3", 10); // taken at the next reset, 65 ms into the read
    // Five stale answers came; r1's no longer counts once its lease lapsed: four.
    expect(done).toEqual([]);
  });
});
