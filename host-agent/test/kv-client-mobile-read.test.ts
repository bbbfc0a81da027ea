/**
 * One unordered read whose answers straddle a move of the mobile adversary (SAFETY.md, "Reads
 * without ordering": "A read across a move"), end to end: six real replica cores, one real
 * client core that counts replies only under its boards' key leases, the network driven by hand.
 * n = 6, k' = 1, k = 1, q = 4; never more than one replica Byzantine at once:
 *   - r6 is Byzantine until its host is taken down for rejuvenation; the adversary then takes r5.
 *   - put(x, v2) completes on REPLYs from r1, r2, r5 (correct then) and r6 (Byzantine then).
 *     The network holds back every replica message to r3 and r4: they have not executed it.
 *   - get(x) begins after the put completed. r6 answers it (Byzantine, before its reset) with
 *     the old value; r3 and r4 answer it truly, from the state before the put; r6 is reset and
 *     the adversary moves to r5, which answers with the old value too. r1's and r2's answers
 *     are held back by the network.
 * Four matching answers: when r6's host was reset while its last lease still ran, the client
 * took them and returned v1. A board resets its host only once that lease lapsed, so r6's answer
 * no longer counts when r5 lies, and q = 4 answers suffice.
 */
import { describe, expect, it } from "vitest";
import { type ClientAction, KvClientCore } from "../src/client/kv-client-core.js";
import { KeyRing } from "../src/replica/key-ring.js";
import { encodeClientMessage, parseClientMessage, parseEnvelope } from "../src/replica/messages.js";
import { quorumsFor } from "../src/replica/quorums.js";
import type { ReplicaAction } from "../src/replica/replica-core.js";
import { connectClient } from "../src/service/service-runtime.js";
import { makeServiceTestbed } from "../src/service/service-testbed.js";
import { replicaCluster } from "./replica-cluster.js";

const LEASE_MS = 1_000;
const CLOCK_BOUND_MS = 50;
/** The boards' and the client's wall clock when the cluster's clock reads 0. */
const WALL_MS = 1_800_000_000_000;

/**
 * The schedule above; `resetBeforeLapse`: r6's host is reset while its last lease still runs
 * (what a board did before its shutdown step waited for the lease). The gets the client
 * completed, and what happened, in order.
 */
function readAcrossMove(resetBeforeLapse: boolean) {
  const c = replicaCluster(6, 1, 1);
  const quorums = quorumsFor(6, 1, 1);
  for (const id of c.ids) c.boot(id, { recovering: false });
  c.deliver(() => true);
  c.run(300, () => true);

  const ring = new KeyRing(c.crypto, c.boardKeys, new Map());
  const client = new KvClientCore(
    {
      id: "c1",
      replicas: c.ids,
      replyQuorum: quorums.quorum,
      readQuorum: quorums.unorderedRead,
      // Long enough that the read is still unordered when r5 lies.
      retransmitMs: 5_000,
      firstTs: 5_000,
      leaseClockBoundMs: CLOCK_BOUND_MS,
      wallClockMs: () => WALL_MS + c.nowMs,
    },
    ring,
    c.client,
  );
  // Replies from the replicas to the client: taken from what each core sent, in order.
  const seen = new Map<string, number>();
  const repliesFrom = (id: string): Buffer[] => {
    const all = (c.sent.get(id) ?? []) as ReplicaAction[];
    const from = seen.get(id) ?? 0;
    seen.set(id, all.length);
    const out: Buffer[] = [];
    for (const a of all.slice(from))
      if (a.type === "reply" && a.client === "c1") out.push(a.message);
    return out;
  };
  const completed: ClientAction[] = [];
  const toClient = (id: string, message: Buffer) => {
    for (const a of client.onMessage(id, message, c.nowMs)) {
      if (a.type === "complete") completed.push(a);
      else if (a.type === "send") toReplica(a.to, a.message);
    }
  };
  // What the client sends reaches each replica at once.
  const toReplica = (to: string, message: Buffer) => {
    const core = c.cores.get(to);
    if (core === undefined) return;
    const actions = core.onClientMessage("c1", message, c.nowMs);
    c.sent.set(to, [...(c.sent.get(to) ?? []), ...actions]);
    for (const a of actions)
      if (a.type === "send" || a.type === "broadcast") {
        // Peer messages go through the cluster's network: re-queue them by handing them out.
        const targets = a.type === "send" ? [a.to] : c.ids.filter((i) => i !== to);
        for (const t of targets) pending.push({ from: to, to: t, message: a.message });
      }
  };
  const pending: Array<{ from: string; to: string; message: Buffer }> = [];
  const flushPending = (pass: (m: { from: string; to: string; message: Buffer }) => boolean) => {
    while (pending.length > 0) {
      const m = pending.shift() as { from: string; to: string; message: Buffer };
      if (pass(m)) c.hand(m.to, m.message);
    }
  };
  // The boards lease their hosts' keys four times a lease; the leases reach the client at once.
  const leasing = new Set(c.ids);
  let leasedAtMs = Number.NEGATIVE_INFINITY;
  const renewLeases = () => {
    if (c.nowMs - leasedAtMs < LEASE_MS / 4) return;
    leasedAtMs = c.nowMs;
    for (const id of leasing)
      toClient(
        id,
        c.speakAs(id, { type: "LEASE", lease: c.lease(id, WALL_MS + c.nowMs + LEASE_MS) }),
      );
  };
  const lastLeaseOf = new Map<string, number>();
  const noteLeases = () => {
    for (const id of leasing) lastLeaseOf.set(id, WALL_MS + leasedAtMs + LEASE_MS);
  };
  // The client's replies pass through `replyPass` (the network, and the adversary's choices).
  let replyPass: (from: string, message: Buffer) => boolean = () => true;
  const pumpReplies = () => {
    for (const id of c.ids) for (const m of repliesFrom(id)) if (replyPass(id, m)) toClient(id, m);
  };
  const tick = (pass: (m: { from: string; to: string; message: Buffer }) => boolean) => {
    flushPending(pass);
    c.run(10, pass);
    renewLeases();
    noteLeases();
    for (const a of client.tick(c.nowMs)) if (a.type === "send") toReplica(a.to, a.message);
    pumpReplies();
  };
  const step = (
    ms: number,
    pass: (m: { from: string; to: string; message: Buffer }) => boolean,
  ) => {
    for (let t = 0; t < ms; t += 10) tick(pass);
  };

  renewLeases();
  for (const a of client.start()) if (a.type === "send") toReplica(a.to, a.message);
  step(100, () => true);

  // put(x, v1), everywhere.
  for (const a of client.submit({ op: "put", key: "x", value: "v1" }, c.nowMs))
    if (a.type === "send") toReplica(a.to, a.message);
  step(300, () => true);
  expect(completed).toMatchObject([{ type: "complete", result: { op: "put", previous: null } }]);
  const before = c.cores.get("r3")?.executedUpTo ?? -1;

  // put(x, v2): the network holds back every replica message to r3 and r4 (slow links): they
  // have not executed it. r1, r2, r5, r6 commit it (q = 4 COMMITs) and execute it.
  const holdCommits = (m: { from: string; to: string; message: Buffer }) =>
    !(m.to === "r3" || m.to === "r4");
  for (const a of client.submit({ op: "put", key: "x", value: "v2" }, c.nowMs))
    if (a.type === "send") toReplica(a.to, a.message);
  step(200, holdCommits);
  expect(completed[1]).toMatchObject({ type: "complete", result: { op: "put", previous: "v1" } });
  expect(c.cores.get("r3")?.executedUpTo).toBe(before);
  expect(c.cores.get("r4")?.executedUpTo).toBe(before);
  expect(c.cores.get("r1")?.executedUpTo).toBe(before + 1);

  // get(x), begun after the put completed. r1's and r2's answers are held back by the network.
  let readMessage: Buffer | undefined;
  const tap = (to: string, message: Buffer) => {
    if (parseClientMessage(message)?.type === "READ") readMessage = message;
    toReplica(to, message);
  };
  let byzantine = "r6";
  const log: string[] = [];
  replyPass = (from, message) => {
    const body = parseEnvelope(message)?.body;
    if (body?.type !== "READ_REPLY") return true;
    if (from === "r1" || from === "r2") {
      log.push(`${from} answers [${body.since}, ${body.seq}]: held back by the network`);
      return false;
    }
    if (from === "r5" && byzantine !== "r5") {
      log.push(`r5 (correct) answers [${body.since}, ${body.seq}]: held back by the network`);
      return false;
    }
    if (from !== byzantine) {
      log.push(`${from} (correct) answers ${JSON.stringify(body.result)}: delivered`);
      return true;
    }
    // The Byzantine replica of the moment: the value from before the put, held since 0.
    log.push(`${c.nowMs} ms: ${from} (Byzantine now) answers {"value":"v1"} [0, ${before}]`);
    toClient(
      from,
      c.speakAs(from, { ...body, since: 0, seq: before, result: { op: "get", value: "v1" } }),
    );
    return false;
  };
  const readActions = client.submit({ op: "get", key: "x" }, c.nowMs);
  for (const a of readActions) if (a.type === "send") tap(a.to, a.message);
  pumpReplies();
  expect(completed.length).toBe(2);
  // The client widens after its wait: r5 and r6 are asked. r6 answers while Byzantine.
  for (let i = 0; i < 100 && !client.counters.get("reads.widened"); i++) tick(holdCommits);
  expect(completed.length).toBe(2);
  // r6's group begins: its board leases its key no more, and resets its host once the last
  // lease lapsed (or at once, the way boards did before).
  leasing.delete("r6");
  const lapsesAtMs = (lastLeaseOf.get("r6") ?? 0) - WALL_MS;
  if (!resetBeforeLapse) while (c.nowMs <= lapsesAtMs) tick(holdCommits);
  log.push(
    `${c.nowMs} ms: r6 reset (its last lease lapses at ${lapsesAtMs} ms); the adversary takes r5`,
  );
  c.rejuvenate("r6", { recovering: true });
  // Even a client that learns r6's new key at once (here: it asks the new r6 for its
  // certificates) keeps the vote r6 cast before its reset while that key's lease runs.
  toReplica("r6", encodeClientMessage({ type: "KEYS_QUERY" }));
  pumpReplies();
  byzantine = "r5";
  if (readMessage) toReplica("r5", readMessage);
  pumpReplies();
  const stale = completed
    .slice(2)
    .filter((a) => a.type === "complete" && a.result.op === "get" && a.result.value === "v1");
  return { c, client, completed, stale, log, tick, holdCommits };
}

describe("a read across a move of the mobile adversary (n = 6, k' = k = 1)", () => {
  it("does not return the value from before a write that completed before it began", () => {
    const { client, completed, stale, log, tick, holdCommits } = readAcrossMove(false);
    expect(quorumsFor(6, 1, 1).unorderedRead).toBe(4);
    // r3 and r4 truly (they lag) and r5 lying: three; r6's lie no longer counts.
    expect(stale, log.join("\n")).toEqual([]);
    // The read goes on as an ordered request: answers of r1, r2 and r5 alone cannot complete it,
    // whatever the adversary says, while r3 and r4 are cut off and r6 recovers.
    for (let i = 0; i < 600; i++) tick(holdCommits);
    expect(client.counters.get("reads.ordered") ?? 0).toBeGreaterThan(0);
    expect(
      completed
        .slice(2)
        .every((a) => a.type === "complete" && a.result.op === "get" && a.result.value === "v2"),
    ).toBe(true);
  });

  it("returns it, at q = 4, when a host is reset while its key's last lease still runs", () => {
    const { stale, log } = readAcrossMove(true);
    expect(stale, log.join("\n")).toHaveLength(1);
  });
});

describe("a client made for a testbed", () => {
  it("takes q matching answers for an unordered read, where replicas are rejuvenated too", async () => {
    for (const [n, k, expected] of [
      [6, 1, 4],
      [4, 0, 3],
    ] as const) {
      const bed = makeServiceTestbed({ n, kPrime: 1, k, basePort: 27_900 + 20 * n, clients: 1 });
      const client = connectClient(bed.testbed, { clientId: "client1", k });
      try {
        expect(client.readQuorum, `n = ${n}, k = ${k}`).toBe(expected);
      } finally {
        await client.close();
        bed.remove();
      }
    }
  });
});
