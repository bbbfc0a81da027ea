/**
 * Answers are rationed per asker. A FETCH_PARTS of a few bytes asks for up to 4 MiB of
 * partitions, and a STATUS saying its sender executed nothing asks for the log: answered at
 * network speed, one Byzantine replica would have every correct one spend its CPU and links on
 * answers while a recovering replica's transfer misses its deadline. Real cores, n = 4, k' = 1,
 * k = 0.
 */
import { describe, expect, it } from "vitest";
import { AnswerAllowance } from "../src/replica/answer-allowance.js";
import { parseEnvelope } from "../src/replica/messages.js";
import { replicaCluster } from "./replica-cluster.js";
import { statusBody } from "./replica-harness.js";

const ANSWERS = new Set(["META", "LEAVES", "PARTS", "NO_CHECKPOINT"]);

describe("the answer allowance", () => {
  it("gives a burst, then one answer per refill time, to each peer on its own", () => {
    const allowance = new AnswerAllowance({ burst: 4, refillMs: 25 });
    const taken = (peer: string, nowMs: number, times: number) =>
      Array.from({ length: times }, () => allowance.take(peer, nowMs)).filter(Boolean).length;
    expect(taken("r2", 0, 10)).toBe(4);
    expect(taken("r3", 0, 10)).toBe(4);
    expect(taken("r2", 24, 10)).toBe(0);
    expect(taken("r2", 25, 10)).toBe(1);
    // A quiet spell refills up to the burst, no further.
    expect(taken("r2", 10_000, 10)).toBe(4);
  });

  it("refuses a burst below one answer and a refill time of 0", () => {
    expect(() => new AnswerAllowance({ burst: 0, refillMs: 25 })).toThrow(/burst/);
    expect(() => new AnswerAllowance({ burst: 4, refillMs: 0 })).toThrow(/refill/);
  });
});

describe("a replica asked for state", () => {
  function clusterWithCheckpoint() {
    const c = replicaCluster(4, 1, 0, { checkpointInterval: 4 });
    for (const id of c.ids) c.boot(id, { recovering: false });
    c.deliver(() => true);
    for (let ts = 1; ts <= 8; ts++) {
      const req = c.request(ts, { op: "put", key: `k${ts % 3}`, value: "v".repeat(100) });
      for (const id of c.ids) c.fromClient(id, req);
      c.run(10, () => true);
    }
    const r1 = c.cores.get("r1");
    expect(r1?.executedUpTo).toBe(8);
    return c;
  }

  function answersTo(
    c: ReturnType<typeof clusterWithCheckpoint>,
    from: string,
    to: string,
    types: ReadonlySet<string> = ANSWERS,
  ) {
    return (c.sent.get(from) ?? []).filter((a) => {
      if (a.type !== "send" || a.to !== to) return false;
      const type = parseEnvelope(a.message)?.body.type;
      return type !== undefined && types.has(type);
    }).length;
  }

  it("answers a peer that floods it with requests four times at once, then four times per status interval", () => {
    const c = clusterWithCheckpoint();
    const before = answersTo(c, "r1", "r4");
    const parts = Array.from({ length: 256 }, (_, i) => i);
    const flood = () => {
      for (let i = 0; i < 100; i++)
        c.hand("r1", c.speakAs("r4", { type: "FETCH_PARTS", seq: 8, parts }));
    };
    flood();
    expect(answersTo(c, "r1", "r4") - before).toBe(4);
    const r1 = c.cores.get("r1");
    expect(r1?.counters.get("rejected.fetch-over-allowance")).toBe(96);
    // One status interval later (100 ms in this cluster): four more, not a hundred.
    c.run(100, () => false);
    flood();
    expect(answersTo(c, "r1", "r4") - before).toBe(8);
  });

  it("still answers another asker in full while one floods it", () => {
    const c = clusterWithCheckpoint();
    for (let i = 0; i < 100; i++)
      c.hand("r1", c.speakAs("r4", { type: "FETCH_META", seq: 8, have: [] }));
    const before = answersTo(c, "r1", "r3");
    c.hand("r1", c.speakAs("r3", { type: "FETCH_META", seq: 8 }));
    c.hand("r1", c.speakAs("r3", { type: "FETCH_LEAVES", seq: 8, metas: [0] }));
    expect(answersTo(c, "r1", "r3") - before).toBe(2);
  });

  it("answers a peer that floods it with STATUS saying it has nothing as often as one that does not", () => {
    const c = clusterWithCheckpoint();
    const checkpoints = new Set(["CHECKPOINT"]);
    const before = answersTo(c, "r1", "r4", checkpoints);
    const behind = c.speakAs("r4", statusBody({ catchingUp: true }));
    for (let i = 0; i < 100; i++) c.hand("r1", behind);
    // Each STATUS answered gets the stable checkpoint (and what is in flight, the log since):
    // four of them, not a hundred.
    expect(answersTo(c, "r1", "r4", checkpoints) - before).toBe(4);
    expect(c.cores.get("r1")?.counters.get("status.over-allowance")).toBe(96);
  });

  it("sends a peer the batches it executed as a log, not its votes for them again", () => {
    // Votes again for every slot of the log window, three messages each, at every STATUS: what a
    // STATUS claiming to have executed little cost before.
    const c = replicaCluster(4, 1, 0, { checkpointInterval: 4 });
    for (const id of c.ids) c.boot(id, { recovering: false });
    c.deliver(() => true);
    for (let ts = 1; ts <= 6; ts++) {
      const req = c.request(ts, { op: "put", key: `k${ts}`, value: "v" });
      for (const id of c.ids) c.fromClient(id, req);
      c.run(10, () => true);
    }
    c.run(300, () => true);
    expect(c.cores.get("r1")?.executedUpTo).toBe(6);
    const before = (c.sent.get("r1") ?? []).length;
    c.hand("r1", c.speakAs("r4", statusBody({ lastExecuted: 4, stableSeq: 4, maxPrepared: 4 })));
    const sent = (c.sent.get("r1") ?? []).slice(before).flatMap((a) => {
      const body = a.type === "send" && a.to === "r4" ? parseEnvelope(a.message)?.body : undefined;
      return body === undefined ? [] : [body];
    });
    expect(sent.filter((b) => ["PRE_PREPARE", "PREPARE", "COMMIT"].includes(b.type))).toEqual([]);
    const log = sent.find((b) => b.type === "EXECUTED");
    expect(log?.type === "EXECUTED" && log.entries.map((e) => e.seq)).toEqual([5, 6]);
  });
});
