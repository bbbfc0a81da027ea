/**
 * A cold start: after a fail-safe every host was held in reset, so every replica restarts at
 * once, with whatever its disk holds. Six real cores, n = 6, k' = 1, k = 1: the replicas' last
 * checkpoints differ (they took them at different times, one is several intervals behind), one
 * disk was written by a host compromised before the fail-safe (a self-consistent checkpoint
 * further ahead, of a state that never was), and the Byzantine replica claims the same forged
 * checkpoint and a genuine later one. They must agree on one genuine checkpoint, every correct
 * replica must start from exactly that state, and the service must go on from it.
 */
import { describe, expect, it } from "vitest";
import { KvStore } from "../src/kv/kv-store.js";
import { ClientTable, checkpointDigest } from "../src/replica/client-table.js";
import { batchDigest, parseEnvelope } from "../src/replica/messages.js";
import { decideNewView, type ViewChangeBody } from "../src/replica/new-view-decision.js";
import { quorumsFor } from "../src/replica/quorums.js";
import type { ReplicaAction, StartingState } from "../src/replica/replica-core.js";
import { bodiesOf, replicaCluster } from "./replica-cluster.js";

const typeOf = (message: Buffer) => parseEnvelope(message)?.body.type;

type Stored = NonNullable<StartingState["checkpoint"]> & { digest: string };

/** Six replicas that executed 14 batches (checkpoints at 4, 8 and 12) and the checkpoints r2 took. */
function clusterWithHistory() {
  const c = replicaCluster(6, 1, 1);
  for (const id of c.ids) c.boot(id, { recovering: false });
  c.deliver(() => true);
  const submit = (ts: number, value: string) => {
    const request = c.request(ts, { op: "put", key: "x", value });
    for (const id of c.cores.keys()) c.fromClient(id, request);
  };
  for (let ts = 1; ts <= 14; ts++) {
    submit(ts, `v${ts}`);
    c.run(200, () => true);
  }
  const checkpoints = new Map<number, Stored>();
  for (const a of c.sent.get("r2") ?? [])
    if (a.type === "checkpoint")
      checkpoints.set(a.seq, a as Extract<ReplicaAction, { type: "checkpoint" }>);
  const at = (seq: number) => {
    const cp = checkpoints.get(seq);
    if (cp === undefined) throw new Error(`no checkpoint at ${seq}`);
    return cp;
  };
  return { c, at, submit };
}

/**
 * Six replicas that executed twelve writes of x (checkpoint 12 on every disk, nothing past it),
 * booted cold or not; `submit` sends a write from c1 to every replica and lets it run, and
 * `repliesTo` lists the REPLYs sent for a request number.
 */
function twelveWrites(coldStart: boolean) {
  const c = replicaCluster(6, 1, 1);
  for (const id of c.ids) c.boot(id, { recovering: false, ...(coldStart ? { coldStart } : {}) });
  c.run(coldStart ? 2_000 : 10, () => true);
  const submit = (ts: number, value: string) => {
    const request = c.request(ts, { op: "put", key: "x", value });
    for (const id of c.cores.keys()) c.fromClient(id, request);
    c.run(200, () => true);
  };
  for (let ts = 1; ts <= 12; ts++) submit(ts, `v${ts}`);
  const stored = new Map<string, Stored>();
  for (const id of c.ids)
    for (const a of c.sent.get(id) ?? [])
      if (a.type === "checkpoint" && a.seq === 12) stored.set(id, a as Stored);
  expect(stored.size).toBe(6);
  const repliesTo = (ts: number) => {
    const out: Array<{ seq: number; batch?: string; previous: unknown }> = [];
    for (const actions of c.sent.values())
      for (const a of actions) {
        const body = a.type === "reply" ? parseEnvelope(a.message)?.body : undefined;
        if (body?.type === "REPLY" && body.ts === ts)
          out.push({ seq: body.seq, batch: body.batch, previous: body.result });
      }
    return out;
  };
  return { c, submit, stored, repliesTo };
}

describe("a cold start of every replica", () => {
  it("refuses a NEW_VIEW that mixes cold-start VIEW_CHANGEs with another, even one whose choices follow from them", () => {
    const { c, at } = clusterWithHistory();
    // r2, the primary of view 1, is Byzantine; every other host comes back cold with its disk.
    const disks: Record<string, StartingState> = {
      r1: { recovering: false, coldStart: true, checkpoint: at(12), olderCheckpoints: [at(8)] },
      r3: { recovering: false, coldStart: true, checkpoint: at(8), olderCheckpoints: [at(4)] },
      r4: { recovering: false, coldStart: true, checkpoint: at(4) },
      r5: { recovering: false, coldStart: true, checkpoint: at(8), olderCheckpoints: [at(4)] },
      r6: { recovering: false, coldStart: true, checkpoint: at(8), olderCheckpoints: [at(4)] },
    };
    c.rejuvenate("r2", { recovering: false });
    c.cores.delete("r2");
    c.sent.clear();
    for (const [id, start] of Object.entries(disks)) c.rejuvenate(id, start);
    const coldViewChange = (id: string): Buffer => {
      for (const a of c.sent.get(id) ?? []) {
        if (a.type !== "broadcast") continue;
        const e = parseEnvelope(a.message);
        if (e?.body.type === "VIEW_CHANGE" && e.body.newView === 1) return a.message;
      }
      throw new Error(`${id} sent no VIEW_CHANGE for view 1`);
    };
    // r2 claims, as a replica in view 0 and not cold, the genuine checkpoint 12; with r1's cold
    // claim of 12 that is k' + 1 holders, enough outside a cold start, one short inside it.
    const warm = c.speakAs("r2", {
      type: "VIEW_CHANGE",
      newView: 1,
      stable: { seq: 12, digest: at(12).digest },
      checkpoints: [],
      prepared: [],
      prePrepared: [],
      batches: [],
      keyEpochs: [1, 1, 1, 1, 1, 1],
    });
    const set = [warm, coldViewChange("r1"), coldViewChange("r3"), coldViewChange("r4")];
    const bodies = set.map((m) => parseEnvelope(m)?.body as ViewChangeBody);
    expect(bodies.filter((b) => b.coldStart === true)).toHaveLength(3);
    // Its choices follow from the set as a view change outside a cold start decides it.
    const decision = decideNewView(bodies, quorumsFor(6, 1, 1), 8, "");
    expect(decision?.checkpoint.seq).toBe(12);
    const mixed = c.speakAs("r2", {
      type: "NEW_VIEW",
      view: 1,
      viewChanges: set.map((m) => m.toString("utf8")),
      checkpoint: decision?.checkpoint ?? { seq: 0, digest: "" },
      proposals: decision?.proposals ?? [],
    });
    // Everyone learns everyone's new key first (r2 stays silent).
    c.deliver((m) => m.from !== "r2" && m.to !== "r2");
    for (const id of Object.keys(disks)) c.hand(id, mixed);
    for (const id of Object.keys(disks)) {
      const core = c.cores.get(id);
      expect(core?.currentView, id).toBe(0);
      expect(core?.counters.get("rejected.bad-new-view"), id).toBe(1);
    }
    // Without r2 the next primary forms a cold view; everyone starts from one checkpoint that
    // k' + k + 1 disks hold (8 or 4), never from the 12 the mixed set would have given.
    c.run(5_000, (m) => m.from !== "r2" && m.to !== "r2");
    const correct = Object.keys(disks).map((id) => c.cores.get(id));
    const started = new Set(correct.map((core) => core?.readValue("x")));
    expect(started.size).toBe(1);
    expect(["v8", "v4"]).toContain([...started][0]);
    for (const core of correct) expect(core?.currentView).toBeGreaterThanOrEqual(2);
  });

  it("agrees on a checkpoint k' + k + 1 disks hold, not on one a compromised disk and a Byzantine replica claim", () => {
    const { c, at, submit } = clusterWithHistory();

    // A state that never was, stored by a host compromised before the fail-safe.
    const evil = new KvStore();
    evil.apply({ op: "put", key: "x", value: "evil" });
    const forged: Stored = {
      seq: 16,
      snapshot: evil.snapshot(),
      clients: [],
      digest: checkpointDigest(evil.rootDigest().toString("hex"), ClientTable.from([]).digest()),
    };

    // Every host comes back under a new key, in a cold start, with its own disk.
    const disks: Record<string, StartingState> = {
      r2: { recovering: false, coldStart: true, checkpoint: at(12), olderCheckpoints: [at(8)] },
      r3: { recovering: false, coldStart: true, checkpoint: at(8), olderCheckpoints: [at(4)] },
      r4: { recovering: false, coldStart: true, checkpoint: at(4) },
      r5: { recovering: false, coldStart: true, checkpoint: at(8), olderCheckpoints: [at(4)] },
      r6: { recovering: false, coldStart: true, checkpoint: forged },
    };
    // r1 is Byzantine: its new key is known, and it speaks only as the test makes it.
    c.rejuvenate("r1", { recovering: false });
    c.cores.delete("r1");
    for (const [id, start] of Object.entries(disks)) c.rejuvenate(id, start);
    const lie = c.speakAs("r1", {
      type: "VIEW_CHANGE",
      newView: 1,
      stable: { seq: 16, digest: forged.digest },
      checkpoints: [],
      prepared: [],
      prePrepared: [],
      batches: [],
      keyEpochs: [1, 1, 1, 1, 1, 1],
      coldStart: true,
    });
    const alsoLie = c.speakAs("r1", {
      type: "VIEW_CHANGE",
      newView: 1,
      stable: { seq: 4, digest: at(4).digest },
      checkpoints: [
        { seq: 12, digest: at(12).digest },
        { seq: 16, digest: forged.digest },
      ],
      prepared: [],
      prePrepared: [],
      batches: [],
      keyEpochs: [1, 1, 1, 1, 1, 1],
      coldStart: true,
    });
    for (const id of Object.keys(disks)) c.hand(id, id === "r2" ? alsoLie : lie);
    c.run(5_000, (m) => m.from !== "r1" && m.to !== "r1");

    const correct = Object.keys(disks).map(
      (id) => c.cores.get(id) as NonNullable<ReturnType<typeof c.cores.get>>,
    );
    // A checkpoint k' + k + 1 disks hold: 8 or 4 (which one depends on the VIEW_CHANGEs the new
    // primary has when it decides; the Byzantine one may tip it to the older), never 12 or 16.
    const started = new Set(correct.map((core) => core.readValue("x")));
    expect(started.size).toBe(1);
    expect(["v8", "v4"]).toContain([...started][0]);
    for (const core of correct) {
      expect(core.status, core.id).toBe("normal");
      expect(core.currentView, core.id).toBeGreaterThanOrEqual(1);
      expect(core.isRecovered, core.id).toBe(true);
      const settled =
        (core.counters.get("cold-start.own-checkpoint") ?? 0) +
        (core.counters.get("cold-start.transfer") ?? 0);
      // Settled (again on each NEW_VIEW of that view it takes while still fetching), one fetch.
      expect(settled, core.id).toBeGreaterThanOrEqual(1);
      expect(core.counters.get("state-transfer.started") ?? 0, core.id).toBeLessThanOrEqual(1);
    }
    // From that checkpoint (and null batches since, the primary padding to the next one).
    expect(new Set(correct.map((core) => `${core.executedUpTo} ${core.stateDigest()}`)).size).toBe(
      1,
    );
    // r6's disk held a state that never was: it took the agreed one from its peers.
    expect(c.cores.get("r6")?.counters.get("cold-start.transfer")).toBeGreaterThanOrEqual(1);
    expect(c.cores.get("r6")?.counters.get("state-transfer.started")).toBe(1);

    // The service goes on from there: new requests execute everywhere, to the same state.
    for (let ts = 15; ts <= 20; ts++) {
      submit(ts, `w${ts}`);
      c.run(300, (m) => m.from !== "r1" && m.to !== "r1");
    }
    for (const core of correct) {
      expect(core.readValue("x"), core.id).toBe("w20");
    }
    expect(new Set(correct.map((core) => core.stateDigest())).size).toBe(1);
  });

  it("answers a request executed again at the same sequence number after a cold start naming another batch, so replies from the two eras never combine", () => {
    const { c, submit, stored, repliesTo } = twelveWrites(false);
    // The write at 13, answered before the fail-safe; no disk holds a checkpoint past 12.
    submit(13, "w13");
    const before = repliesTo(13);
    expect(before.length).toBeGreaterThanOrEqual(4);
    expect(new Set(before.map((r) => `${r.seq} ${r.batch}`)).size).toBe(1);

    // The fail-safe, then a cold start: every replica back under a new key, its disk at 12.
    c.sent.clear();
    for (const id of c.ids)
      c.rejuvenate(id, {
        recovering: false,
        coldStart: true,
        checkpoint: stored.get(id) as Stored,
      });
    c.run(3_000, () => true);
    for (const core of c.cores.values()) expect(core.readValue("x"), core.id).toBe("v12");
    // The client, still waiting for 13, sends it again: executed again at the same number.
    submit(13, "w13");
    const after = repliesTo(13);
    expect(after.length).toBeGreaterThanOrEqual(4);
    const [first] = before;
    for (const reply of after) {
      expect(reply.seq).toBe(first?.seq);
      expect(reply.previous).toEqual(first?.previous);
      // Same number, same result, but another batch: its proposer's key epoch is new.
      expect(reply.batch).toBeDefined();
      expect(reply.batch).not.toBe(first?.batch);
    }
    for (const core of c.cores.values()) expect(core.readValue("x"), core.id).toBe("w13");
  });

  it("with the era before's keys revoked, as the boards do at a cold release, a primary that speaks under its old key is not heard, and the write is executed again under a new origin", () => {
    // The first era began with a cold start too: its first view, 1, has r2 for primary.
    const { c, submit, stored, repliesTo } = twelveWrites(true);
    submit(13, "w13");
    const before = repliesTo(13);
    expect(before.length).toBeGreaterThanOrEqual(4);
    const [{ seq: seqBefore, batch: batchBefore } = { seq: 0 }] = before;

    // A cold start. r2, Byzantine, comes back under its old key (its board certified a new one,
    // which it never shows) and would be view 1's primary again; every other replica comes back
    // under a new key and revokes every peer's keys below the floor the boards announced, as its
    // agent does with the board's REVOKE (`BoardCore.coldStartKeyFloors`): here epoch 0.
    c.sent.clear();
    c.boot("r2", { recovering: false, coldStart: true, checkpoint: stored.get("r2") as Stored });
    const correct = c.ids.filter((id) => id !== "r2");
    for (const id of correct) {
      const core = c.rejuvenate(id, {
        recovering: false,
        coldStart: true,
        checkpoint: stored.get(id) as Stored,
      });
      core.revokeKeys(c.ids, 1, c.nowMs);
    }
    c.run(5_000, () => true);
    for (const id of correct) {
      const core = c.cores.get(id);
      expect(core?.readValue("x"), id).toBe("v12");
      expect(core?.counters.get("rejected.revoked-key") ?? 0, id).toBeGreaterThan(0);
    }
    // The client, still waiting for 13, sends it again: executed again, at the same number, in a
    // batch whose origin is a key of the new era, so no reply of the era before joins these.
    submit(13, "w13");
    c.run(1_000, () => true);
    const after = repliesTo(13).filter((r) => r.seq === seqBefore);
    expect(after.length).toBeGreaterThanOrEqual(4);
    for (const reply of after) expect(reply.batch).not.toBe(batchBefore);
    for (const id of correct) expect(c.cores.get(id)?.readValue("x"), id).toBe("w13");
  });

  it("refuses a batch of an earlier era proposed again verbatim: its origin is not the primary at its current key", () => {
    const c = replicaCluster(6, 1, 1);
    for (const id of c.ids) c.boot(id, { recovering: false });
    c.deliver(() => true);
    const request = c.request(1, { op: "put", key: "x", value: "a" });
    for (const id of c.cores.keys()) c.fromClient(id, request);
    c.run(200, () => true);
    const proposed = bodiesOf(c.sent.get("r1") ?? [], "PRE_PREPARE")[0];
    expect(proposed?.type === "PRE_PREPARE" && proposed.origin).toBe(c.originOf("r1"));
    // r1 is rejuvenated (a new key epoch) and, compromised, proposes its old batch again
    // unchanged at the next number: every backup refuses it, none votes.
    c.rejuvenate("r1", { recovering: false });
    c.deliver((m) => m.from === "r1" && typeOf(m.message) === "NEW_KEY");
    c.sent.clear();
    if (proposed?.type !== "PRE_PREPARE") throw new Error("no PRE_PREPARE");
    const again = c.request(2, { op: "put", key: "x", value: "b" });
    for (const id of c.ids.slice(1)) c.fromClient(id, again);
    const replayed = c.speakAs("r1", { ...proposed, seq: 2 });
    for (const id of c.ids.slice(1)) c.hand(id, replayed);
    for (const id of c.ids.slice(1)) {
      expect(bodiesOf(c.sent.get(id) ?? [], "PREPARE"), id).toEqual([]);
      const refused = (c.sent.get(id) ?? []).filter(
        (a) => a.type === "problem" && a.detail.includes(`origin ${proposed.origin}`),
      );
      expect(refused.length, id).toBe(1);
    }
    // A batch under its current origin, at the same number, is voted for as any other.
    const fresh = { ...proposed, seq: 2, origin: c.originOf("r1"), requests: [again] };
    const digest = batchDigest(fresh.origin, fresh.requests);
    for (const id of c.ids.slice(1)) c.hand(id, c.speakAs("r1", { ...fresh, digest }));
    for (const id of c.ids.slice(1))
      expect(bodiesOf(c.sent.get(id) ?? [], "PREPARE"), id).toEqual([
        { type: "PREPARE", view: 0, seq: 2, digest },
      ]);
  });

  it("writes its starting state down as checkpoint 0 when nothing was stored, so a cold start before enough disks hold a later one still agrees", () => {
    const { c, at, submit } = clusterWithHistory();
    // Every replica started with nothing stored and wrote its starting state first thing.
    const started = replicaCluster(6, 1, 1);
    started.boot("r1", { recovering: false });
    const written = (started.sent.get("r1") ?? []).filter((a) => a.type === "checkpoint");
    expect(written.map((a) => a.type === "checkpoint" && a.seq)).toEqual([0]);
    expect(at(0).digest).toBe(written[0]?.type === "checkpoint" && written[0].digest);
    // One that found a stored checkpoint writes nothing at its start.
    started.boot("r2", { recovering: false, checkpoint: at(4) });
    expect((started.sent.get("r2") ?? []).filter((a) => a.type === "checkpoint")).toEqual([]);

    // The fail-safe came early: two replicas had taken checkpoint 4 (their disks hold 4 and the
    // starting state below it), two lagged and hold only the starting state, one disk holds a
    // forged state. Checkpoint 4 is on two disks, short of k' + k + 1 = 3; the starting state
    // is on four.
    const evil = new KvStore();
    evil.apply({ op: "put", key: "x", value: "evil" });
    const forged: Stored = {
      seq: 8,
      snapshot: evil.snapshot(),
      clients: [],
      digest: checkpointDigest(evil.rootDigest().toString("hex"), ClientTable.from([]).digest()),
    };
    const disks: Record<string, StartingState> = {
      r2: { recovering: false, coldStart: true, checkpoint: at(4), olderCheckpoints: [at(0)] },
      r3: { recovering: false, coldStart: true, checkpoint: at(4), olderCheckpoints: [at(0)] },
      r4: { recovering: false, coldStart: true, checkpoint: at(0) },
      r5: { recovering: false, coldStart: true, checkpoint: at(0) },
      r6: { recovering: false, coldStart: true, checkpoint: forged },
    };
    // r1 is Byzantine and silent.
    c.rejuvenate("r1", { recovering: false });
    c.cores.delete("r1");
    for (const [id, start] of Object.entries(disks)) c.rejuvenate(id, start);
    c.run(5_000, (m) => m.from !== "r1" && m.to !== "r1");
    const correct = Object.keys(disks).map(
      (id) => c.cores.get(id) as NonNullable<ReturnType<typeof c.cores.get>>,
    );
    for (const core of correct) {
      expect(core.status, core.id).toBe("normal");
      expect(core.isRecovered, core.id).toBe(true);
      // The starting state: x was never written in it.
      expect(core.readValue("x"), core.id).toBeNull();
    }
    // And the service goes on from it.
    for (let ts = 15; ts <= 17; ts++) {
      submit(ts, `w${ts}`);
      c.run(300, (m) => m.from !== "r1" && m.to !== "r1");
    }
    for (const core of correct) expect(core.readValue("x"), core.id).toBe("w17");
  });
});

describe("a cold start's replica that missed the first view", () => {
  it("settled by state transfer, sends VIEW_CHANGEs that parse: the views it passed over before are not named again", () => {
    // Every replica cold-starts; r3 gets no NEW_VIEW 1 nor any STATUS, times out and asks for
    // view 2 (view 1 passed over). The others execute in view 1; r3 settles through their
    // checkpoint by state transfer, in normal mode at its old view, never having entered one.
    // Its next view change once named the view passed over, not below the view it asked for:
    // its own VIEW_CHANGE did not parse, and the replica's timer threw (the process died).
    const c = replicaCluster(6, 1, 1);
    for (const id of c.ids) c.boot(id, { recovering: false, coldStart: true });
    const quiet = ["NEW_VIEW", "STATUS", "CHECKPOINT", "EXECUTED"];
    c.run(1_500, (m) => !(m.to === "r3" && quiet.includes(typeOf(m.message) ?? "")));
    const transfer = ["NEW_KEY", "KEYS", "SESSION", "META", "LEAVES", "PARTS", "NO_CHECKPOINT"];
    const noNewView = (m: { to: string; message: Buffer }) => {
      if (m.to !== "r3") return true;
      const body = parseEnvelope(m.message)?.body;
      if (body?.type === "CHECKPOINT") return body.seq >= 4;
      return transfer.includes(body?.type ?? "");
    };
    for (let ts = 1; ts <= 4; ts++) {
      const w = c.request(ts, { op: "put", key: "x", value: `v${ts}` });
      for (const id of c.ids) if (id !== "r3") c.fromClient(id, w);
      c.run(100, noNewView);
    }
    c.run(1_000, noNewView);
    const r3 = c.cores.get("r3");
    expect(r3?.counters.get("cold-start.transfer")).toBeGreaterThan(0);
    // A request only r3 and r4 hold: r3 times its primary out and changes views.
    const w = c.request(9, { op: "put", key: "y", value: "z" });
    for (const id of ["r3", "r4"]) c.fromClient(id, w);
    c.run(3_000, (m) => m.to !== "r3" || (m.from === "r4" && typeOf(m.message) === "HOLD"));
    const sent = c.sent.get("r3") ?? [];
    const viewChanges = sent.filter(
      (a) => a.type === "broadcast" && a.message.includes('"VIEW_CHANGE"'),
    );
    expect(viewChanges.length).toBeGreaterThan(1);
    for (const a of viewChanges)
      if (a.type === "broadcast") expect(parseEnvelope(a.message)).toBeDefined();
    expect(sent.filter((a) => a.type === "problem" && a.kind === "handler-fault")).toEqual([]);
  });
});
