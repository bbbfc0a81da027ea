/**
 * A rejuvenated replica that installs the state it fetched asks its peers at once how far they
 * are (their answers decide when it has caught up). That STATUS went out while its stable
 * checkpoint was still unset (-1): its peers could not parse it, and the recovery waited for the
 * next status tick. Real cores, n = 6, k' = 1, k = 1.
 */
import { describe, expect, it } from "vitest";
import { parseEnvelope, type ReplicaBody } from "../src/replica/messages.js";
import { replicaCluster } from "./replica-cluster.js";
import { statusBody } from "./replica-harness.js";

describe("a replica that installs the state it fetched", () => {
  it("asks its peers in a STATUS they can read, and every message around its recovery parses", () => {
    const c = replicaCluster(6, 1, 1);
    for (const id of c.ids) c.boot(id, { recovering: false });
    c.deliver(() => true);
    let ts = 0;
    const writes = (count: number) => {
      for (let i = 0; i < count; i++) {
        const req = c.request(++ts, { op: "put", key: "x", value: `${ts}` });
        for (const id of c.ids) c.fromClient(id, req);
        c.run(50, () => true);
      }
    };
    writes(30);
    const before = c.sent.get("r3")?.length ?? 0;
    const r3 = c.rejuvenate("r3", { recovering: true });
    writes(50);
    expect(r3.isRecovered).toBe(true);
    const unreadable: string[] = [];
    const statuses: Array<Extract<ReplicaBody, { type: "STATUS" }>> = [];
    for (const [id, all] of c.sent)
      for (const a of id === "r3" ? all.slice(before) : all) {
        if (a.type === "problem" && a.kind === "malformed") unreadable.push(`${id}: ${a.detail}`);
        if (a.type !== "send" && a.type !== "broadcast") continue;
        const envelope = parseEnvelope(a.message);
        if (envelope === undefined) unreadable.push(`${id} sent one`);
        else if (id === "r3" && envelope.body.type === "STATUS") statuses.push(envelope.body);
      }
    expect(unreadable).toEqual([]);
    // Its first STATUS with a state of its own names the checkpoint it installed as stable.
    const installed = statuses.find((s) => !s.recovering);
    expect(installed?.stableSeq).toBeGreaterThan(0);
  });

  it("goes on from its peers' log of the newest batches, not a second state transfer", () => {
    // Under steady writes, a checkpoint becomes stable while the fetched state installs. Peers
    // held back their newest batches (executed within a status interval) from a replica that
    // was only behind in the pipeline, and held them back from this one too: it fell a whole
    // checkpoint interval behind and fetched a state a second time.
    const c = replicaCluster(6, 1, 1, { checkpointInterval: 4 });
    for (const id of c.ids) c.boot(id, { recovering: false });
    c.deliver(() => true);
    let ts = 0;
    const writes = (rounds: number, until: () => boolean = () => false) => {
      for (let i = 0; i < rounds && !until(); i++) {
        for (const key of ["a", "b", "c"]) {
          const req = c.request(++ts, { op: "put", key, value: `${ts}` });
          for (const id of c.ids) c.fromClient(id, req);
        }
        c.run(10, () => true);
      }
    };
    writes(40);
    const before = c.sent.get("r3")?.length ?? 0;
    const r3 = c.rejuvenate("r3", { recovering: true });
    writes(400, () => r3.isRecovered);
    expect(r3.isRecovered).toBe(true);
    const after = (c.sent.get("r3") ?? []).slice(before);
    const transfers = after.filter((a) => a.type === "transferred");
    // A state fetched, and at most the difference of the one interval that became stable while
    // it installed (a META carries a small difference whole: one round trip, as a log would
    // take); not one transfer per interval, which a replica kept from the log falls into.
    expect(transfers.length).toBeGreaterThanOrEqual(1);
    expect(transfers.length).toBeLessThanOrEqual(2);
    const asked = after.flatMap((a) =>
      a.type === "send" ? [parseEnvelope(a.message)?.body.type] : [],
    );
    expect(asked.filter((t) => t === "FETCH_LEAVES" || t === "FETCH_PARTS")).toEqual([]);
  });

  it("is recovered once a stable checkpoint covers what it forgot, however far a peer says it has prepared", () => {
    // Every vote a rejuvenated replica forgot is at or below the horizon of the fresh view it
    // votes in. It used to wait, besides, for a stable checkpoint above the highest prepared
    // number its peers reported: a checkpoint interval more in the demo, and the log window with
    // a peer that lies about it (r1 here, whose STATUS says 10,000).
    const C = 4;
    const c = replicaCluster(6, 1, 1, { checkpointInterval: C });
    for (const id of c.ids) c.boot(id, { recovering: false });
    c.deliver(() => true);
    let ts = 0;
    const step = () => {
      const req = c.request(++ts, { op: "put", key: `k${ts % 5}`, value: `${ts}` });
      for (const id of c.ids) c.fromClient(id, req);
      const r1 = c.cores.get("r1");
      if (r1 !== undefined)
        c.hand(
          "r3",
          c.speakAs(
            "r1",
            statusBody({
              view: r1.currentView,
              lastExecuted: r1.executedUpTo,
              stableSeq: r1.stableCheckpoint.seq,
              maxPrepared: 10_000,
            }),
          ),
        );
      c.run(20, () => true);
    };
    for (let i = 0; i < 20; i++) step();
    const r3 = c.rejuvenate("r3", { recovering: true });
    let stableWhenVoting: number | undefined;
    for (let i = 0; i < 200 && !r3.isRecovered; i++) {
      step();
      if (stableWhenVoting === undefined && !r3.isAmnesic)
        stableWhenVoting = r3.stableCheckpoint.seq;
    }
    expect(r3.isRecovered).toBe(true);
    expect(stableWhenVoting).toBeDefined();
    expect(r3.stableCheckpoint.seq - (stableWhenVoting as number)).toBeLessThanOrEqual(C);
  });
});
