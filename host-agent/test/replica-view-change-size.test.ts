/**
 * A view change over batches of large writes. A VIEW_CHANGE carried the body of every batch its
 * sender prepared above its stable checkpoint, and a NEW_VIEW its VIEW_CHANGEs: two prepared
 * writes of 700 KiB of control characters (4.2 MiB each as JSON) made every VIEW_CHANGE larger
 * than a frame may be. Such a message is never sent (`frameOrRefuse`), so the view could not be
 * formed and the service stopped for good. Now a VIEW_CHANGE carries bodies only within a
 * budget, and a replica fetches the bodies it lacks (FETCH_BATCH, BATCH). Real cores, n = 4,
 * k' = 1; the network here drops what a frame could not carry.
 */
import { describe, expect, it } from "vitest";
import {
  batchDigest,
  MAX_MESSAGE_BYTES,
  parseEnvelope,
  type ReplicaBody,
  type SeqDigest,
} from "../src/replica/messages.js";
import { bodiesOf, replicaCluster } from "./replica-cluster.js";
import { statusBody } from "./replica-harness.js";

const types = new WeakMap<Buffer, string | undefined>();
/**
 * The message's type, read off its body even where `parseEnvelope` refuses it as too large; once
 * per message (a broadcast is one buffer for every receiver), as parsing megabytes is slow.
 */
const typeOf = (message: Buffer): string | undefined => {
  if (!types.has(message)) {
    const body = JSON.parse(message.subarray(message.indexOf(10) + 1).toString("utf8"));
    types.set(message, (body as { type?: string }).type);
  }
  return types.get(message);
};
const fits = (m: { message: Buffer }) => m.message.length <= MAX_MESSAGE_BYTES;

/** A write of `chars` control characters from each of c1, c2 and c3, to every replica. */
function largeWrites(c: ReturnType<typeof replicaCluster>, chars: number) {
  const requests = ["c1", "c2", "c3"].map((client, i) =>
    c.request(1, { op: "put", key: `k${i + 1}`, value: "\u0001".repeat(chars) }, client),
  );
  for (const request of requests) for (const id of c.ids) c.fromClient(id, request);
  return requests;
}

const largest = (c: ReturnType<typeof replicaCluster>, type: string) =>
  Math.max(
    0,
    ...[...c.sent.values()]
      .flat()
      .flatMap((a) =>
        (a.type === "send" || a.type === "broadcast") && typeOf(a.message) === type
          ? [a.message.length]
          : [],
      ),
  );

describe("a view change over prepared batches of large writes", () => {
  it("keeps every VIEW_CHANGE and NEW_VIEW within a frame, and the new view executes the writes", () => {
    const c = replicaCluster(4, 1, 0);
    for (const id of c.ids) c.boot(id, { recovering: false });
    c.deliver(() => true);
    const requests = largeWrites(c, 700 * 1024);
    // r4 never gets a PRE_PREPARE, nor a report of what others executed: it can take the bodies
    // only from the VIEW_CHANGEs or by fetching them. (No HOLDs either: every correct replica
    // holds the writes from their clients, and checking megabyte HOLDs made this test slow.)
    const others = ["r2", "r3", "r4"];
    const net = (m: { from: string; to: string; message: Buffer }, commits: boolean) => {
      const type = typeOf(m.message) ?? "";
      if (!fits(m) || (type === "COMMIT" && !commits) || type.startsWith("HOLD")) return false;
      return m.to !== "r4" || (type !== "PRE_PREPARE" && type !== "EXECUTED");
    };
    // No COMMIT: the batches are prepared at r1, r2 and r3, and executed nowhere.
    c.deliver((m) => net(m, false));
    expect(c.cores.get("r1")?.counters.get("batches.proposed")).toBeGreaterThanOrEqual(2);
    // The primary goes silent, and still no COMMIT arrives: the others time its batches and
    // change views. Then all but r1 flows: the new view must commit and execute them.
    const withoutR1 = (m: { from: string; to: string; message: Buffer }, commits: boolean) =>
      m.from !== "r1" && m.to !== "r1" && net(m, commits);
    for (let step = 0; step < 500; step++) {
      if (others.every((id) => (c.cores.get(id)?.currentView ?? 0) > 0)) break;
      c.run(10, (m) => withoutR1(m, false));
    }
    for (let step = 0; step < 500; step++) {
      if (others.every((id) => c.cores.get(id)?.readValue("k2") !== null)) break;
      c.run(10, (m) => withoutR1(m, true));
    }
    expect(largest(c, "VIEW_CHANGE")).toBeGreaterThan(0);
    expect(largest(c, "VIEW_CHANGE")).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
    expect(largest(c, "NEW_VIEW")).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
    for (const id of others) {
      const core = c.cores.get(id);
      expect(core?.currentView).toBeGreaterThan(0);
      expect(core?.readValue("k1")).toBe(requests[0]?.op.op === "put" && requests[0].op.value);
      expect(core?.readValue("k2")).toBe(requests[1]?.op.op === "put" && requests[1].op.value);
    }
    // r4 fetched the bodies, no VIEW_CHANGE carrying them, and asked for both in one request:
    // a holder answers a peer's requests within an allowance.
    expect(c.cores.get("r4")?.counters.get("batches.fetched")).toBeGreaterThanOrEqual(2);
    const fetches = bodiesOf(c.sent.get("r4") ?? [], "FETCH_BATCH") as Array<{
      wants: SeqDigest[];
    }>;
    expect(fetches[0]?.wants.length).toBeGreaterThanOrEqual(2);
  });
});

/**
 * n = 4: a write executed at r1, r2 and r3 while r4 gets neither its PRE_PREPARE nor a report of
 * what others executed (`hidden`, kept from r4 after too); then a second write to r2, r3 and r4.
 */
function executedWithoutR4() {
  const c = replicaCluster(4, 1, 0);
  for (const id of c.ids) c.boot(id, { recovering: false });
  c.deliver(() => true);
  const hidden = (m: { to: string; message: Buffer }) =>
    m.to === "r4" && ["PRE_PREPARE", "EXECUTED"].includes(typeOf(m.message) ?? "");
  const first = c.request(1, { op: "put", key: "k1", value: "v1" }, "c1");
  for (const id of c.ids) c.fromClient(id, first);
  for (let step = 0; step < 100; step++) {
    if (["r1", "r2", "r3"].every((id) => c.cores.get(id)?.readValue("k1") === "v1")) break;
    c.run(10, (m) => !hidden(m));
  }
  const second = c.request(1, { op: "put", key: "k2", value: "v2" }, "c2");
  for (const id of ["r2", "r3", "r4"]) c.fromClient(id, second);
  return { c, hidden };
}

describe("a view change after batches executed", () => {
  it("carries no bodies of batches its senders executed, and a replica that lacks one fetches it", () => {
    // Bodies of executed batches made each VIEW_CHANGE of the rolling benchmark 25-30 KB and each
    // NEW_VIEW 120 KB, parsed at every replica at each rejuvenation. A batch its sender executed
    // committed there, so a quorum holds it; the rare replica without it fetches it.
    const { c, hidden } = executedWithoutR4();
    expect(c.cores.get("r2")?.readValue("k1")).toBe("v1");
    expect(c.cores.get("r4")?.readValue("k1")).toBeNull();
    // The primary goes silent; the second write, to the others, makes them change views.
    const withoutR1 = (m: { from: string; to: string; message: Buffer }) =>
      m.from !== "r1" && m.to !== "r1" && !hidden(m);
    for (let step = 0; step < 500; step++) {
      if (["r2", "r3", "r4"].every((id) => c.cores.get(id)?.readValue("k2") === "v2")) break;
      c.run(10, withoutR1);
    }
    for (const id of ["r2", "r3", "r4"]) {
      expect(c.cores.get(id)?.currentView).toBeGreaterThan(0);
      expect(c.cores.get(id)?.readValue("k1")).toBe("v1");
      expect(c.cores.get(id)?.readValue("k2")).toBe("v2");
    }
    const viewChanges = ["r2", "r3"].flatMap(
      (id) =>
        bodiesOf(c.sent.get(id) ?? [], "VIEW_CHANGE") as Array<{
          prepared: unknown[];
          batches: unknown[];
        }>,
    );
    // They name the batch prepared, without its body.
    expect(viewChanges.some((vc) => vc.prepared.length > 0)).toBe(true);
    for (const vc of viewChanges) expect(vc.batches).toEqual([]);
    expect(c.cores.get("r4")?.counters.get("batches.fetched")).toBeGreaterThanOrEqual(1);
  });
});

describe("a body that no replica which named it will give", () => {
  it("is fetched from a peer whose VIEW_CHANGE did not count", () => {
    // The senders that named the batch executed it, so their VIEW_CHANGEs carry no body, and they
    // do not answer (Byzantine, or reset since): r1, the primary that proposed it and was silent
    // through the view change, holds it and is asked too.
    const { c, hidden } = executedWithoutR4();
    // r1 is cut off but for FETCH_BATCH to it and BATCH from it; r2 and r3 never send a BATCH.
    const net = (m: { from: string; to: string; message: Buffer }) => {
      const type = typeOf(m.message) ?? "";
      if (hidden(m)) return false;
      if (type === "BATCH") return m.from === "r1";
      if (m.from === "r1" || m.to === "r1") return type === "FETCH_BATCH" && m.to === "r1";
      return true;
    };
    for (let step = 0; step < 500; step++) {
      if (c.cores.get("r4")?.readValue("k1") === "v1") break;
      c.run(10, net);
    }
    expect(c.cores.get("r4")?.currentView).toBeGreaterThan(0);
    expect(c.cores.get("r4")?.readValue("k1")).toBe("v1");
    expect(c.cores.get("r4")?.counters.get("batches.fetched")).toBeGreaterThanOrEqual(1);
  });
});

describe("a large write its client sent to the backups alone", () => {
  it("reaches the primary in one HOLDERS within a frame, and is executed without a view change", () => {
    // Each HOLD carried the whole request, and a HOLDERS two whole HOLDs: 10 MB for a write of
    // 700 KiB of control characters. Now a HOLD names the request by its digest, and a HOLDERS
    // carries the request once, with the HOLDs' signatures.
    const c = replicaCluster(4, 1, 0);
    for (const id of c.ids) c.boot(id, { recovering: false });
    c.deliver(() => true);
    const value = "\u0001".repeat(700 * 1024);
    const request = c.request(1, { op: "put", key: "big", value }, "c2");
    for (const id of ["r2", "r3", "r4"]) c.fromClient(id, request);
    for (let step = 0; step < 300; step++) {
      if (c.ids.every((id) => c.cores.get(id)?.readValue("big") !== null)) break;
      c.run(10, fits);
    }
    expect(largest(c, "HOLD")).toBeGreaterThan(0);
    expect(largest(c, "HOLD")).toBeLessThan(1024);
    expect(largest(c, "HOLDERS")).toBeGreaterThan(0);
    expect(largest(c, "HOLDERS")).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
    // With a MAC, not a signature over the request (`MAC_TYPES`); its HOLDs' signatures inside.
    for (const a of [...c.sent.values()].flat())
      if (a.type === "send" && typeOf(a.message) === "HOLDERS")
        expect(a.message.subarray(0, 6).toString()).toBe("smwm1 ");
    expect(c.cores.get("r1")?.counters.get("holders.received")).toBeGreaterThan(0);
    for (const id of c.ids) {
      expect(c.cores.get(id)?.readValue("big")).toBe(value);
      expect(c.cores.get(id)?.currentView).toBe(0);
    }
  });
});

describe("a large write its client sent to backups alone, and primaries that drop it", () => {
  it("reaches the next primary as the view changes: the spacing of its HOLDERS starts over", () => {
    // n = 7, k' = 2: r1 and r2 drop every HOLDERS, and r3 leads the third view without a copy.
    // The HOLDERS went ever more rarely through the first two views, and the wait went on into
    // the third: r3 got none within the backups' timeout, counted from the view's start, and
    // they left its view too.
    const c = replicaCluster(7, 2, 0);
    for (const id of c.ids) c.boot(id, { recovering: false });
    c.deliver(() => true);
    const value = "v".repeat(100 * 1024);
    const request = c.request(1, { op: "put", key: "big", value }, "c2");
    for (const id of ["r4", "r5", "r6", "r7"]) c.fromClient(id, request);
    const dropped = (m: { to: string; message: Buffer }) =>
      !(typeOf(m.message) === "HOLDERS" && ["r1", "r2"].includes(m.to));
    for (let step = 0; step < 2000; step++) {
      c.run(10, dropped);
      if (c.ids.every((id) => c.cores.get(id)?.readValue("big") === value)) break;
    }
    for (const id of c.ids) expect(c.cores.get(id)?.readValue("big"), id).toBe(value);
    expect(c.cores.get("r3")?.counters.get("requests.from-holds")).toBe(1);
    for (const id of c.ids) expect(c.cores.get(id)?.currentView, id).toBe(2);
  });
});

describe("fetching a body a NEW_VIEW fixed", () => {
  it("refuses a BATCH that is not the batch asked for, asks the next holder at once, and executes", () => {
    // VIEW_CHANGEs carry no bodies at all here, so small writes take the path of large ones.
    const c = replicaCluster(4, 1, 0, { viewChangeBodyBytes: 0 });
    for (const id of c.ids) c.boot(id, { recovering: false });
    c.deliver(() => true);
    const write = c.request(1, { op: "put", key: "w", value: "1" });
    for (const id of c.ids) c.fromClient(id, write);
    // r4 gets no PRE_PREPARE, no report of what others executed, and no BATCH the test does not
    // hand it; no COMMIT passes.
    const passes = (m: { from: string; to: string; message: Buffer }) => {
      const type = typeOf(m.message) ?? "";
      if (type === "COMMIT") return false;
      return m.to !== "r4" || !["PRE_PREPARE", "EXECUTED", "BATCH"].includes(type);
    };
    const withoutR1 = (m: { from: string; to: string }) => m.from !== "r1" && m.to !== "r1";
    // r1 proposes, then goes silent; the others change views.
    c.deliver(passes);
    const others = ["r2", "r3", "r4"];
    for (let step = 0; step < 500; step++) {
      if (others.every((id) => (c.cores.get(id)?.currentView ?? 0) > 0)) break;
      c.run(10, (m) => withoutR1(m) && passes(m));
    }
    const r4 = c.cores.get("r4");
    expect(r4?.counters.get("batches.missing")).toBe(1);
    // Votes flow, and no body reaches r4: it PREPAREs on the digest, but COMMITs only once it
    // holds the body (then it is one more that can give it, and says so in a VIEW_CHANGE).
    const noBodyToR4 = (m: { to: string; message: Buffer }) =>
      m.to !== "r4" || !["BATCH", "PRE_PREPARE"].includes(typeOf(m.message) ?? "");
    c.run(300, (m) => withoutR1(m) && noBodyToR4(m));
    expect(bodiesOf(c.sent.get("r4") ?? [], "PREPARE").length).toBeGreaterThan(0);
    expect(bodiesOf(c.sent.get("r4") ?? [], "COMMIT")).toEqual([]);
    expect(r4?.counters.get("commit.awaiting-body")).toBeGreaterThan(0);
    const asks = () =>
      (c.sent.get("r4") ?? []).flatMap((a) =>
        a.type === "send" && typeOf(a.message) === "FETCH_BATCH"
          ? [{ to: a.to, wants: (bodiesOf([a], "FETCH_BATCH")[0] as { wants: SeqDigest[] }).wants }]
          : [],
      );
    const first = asks().at(-1);
    expect(first?.wants).toHaveLength(1);
    const holder = first?.to as string;
    const { seq, digest } = (first?.wants ?? [])[0] as SeqDigest;
    const lie: ReplicaBody = {
      type: "BATCH",
      batches: [{ seq, batch: { digest, origin: "", requests: [] } }],
    };
    const asked = asks().length;
    // From a replica it did not ask: refused, and no one else is asked on its account.
    const bystander = others.find((id) => id !== holder && id !== "r4") as string;
    c.hand("r4", c.speakAs(bystander, lie));
    expect(asks()).toHaveLength(asked);
    // From the holder it asked: refused, and the next holder is asked at once.
    c.hand("r4", c.speakAs(holder, lie));
    const problems = (c.sent.get("r4") ?? []).filter(
      (a) => a.type === "problem" && a.kind === "bad-batch",
    );
    expect(problems).toHaveLength(2);
    expect(asks()).toHaveLength(asked + 1);
    expect(asks().at(-1)?.to).not.toBe(holder);
    expect(r4?.readValue("w")).toBeNull();
    // Now the answers reach it: it takes the body and executes the write with the others.
    for (let step = 0; step < 300 && r4?.readValue("w") === null; step++)
      c.run(10, (m) => withoutR1(m) && (m.to !== "r4" || typeOf(m.message) !== "PRE_PREPARE"));
    expect(r4?.counters.get("batches.fetched")).toBe(1);
    expect(r4?.readValue("w")).toBe("1");
    expect(bodiesOf(c.sent.get("r4") ?? [], "COMMIT").length).toBeGreaterThan(0);
  });

  it("takes the body from the new primary's PRE_PREPARE sent again, when no BATCH comes", () => {
    const c = replicaCluster(4, 1, 0, { viewChangeBodyBytes: 0 });
    for (const id of c.ids) c.boot(id, { recovering: false });
    c.deliver(() => true);
    const write = c.request(1, { op: "put", key: "w", value: "1" });
    for (const id of c.ids) c.fromClient(id, write);
    // r4 never gets view 0's PRE_PREPARE (from r1, or sent on by others), nor any BATCH or
    // EXECUTED; r1 goes silent.
    const passes = (m: { from: string; to: string; message: Buffer }, commits: boolean) => {
      const type = typeOf(m.message) ?? "";
      if (m.to === "r4" && ["EXECUTED", "BATCH"].includes(type)) return false;
      const view = (parseEnvelope(m.message)?.body as { view?: number } | undefined)?.view;
      if (m.to === "r4" && type === "PRE_PREPARE" && view === 0) return false;
      return commits || type !== "COMMIT";
    };
    c.deliver((m) => passes(m, false));
    const r4 = c.cores.get("r4");
    const withoutR1 = (m: { from: string; to: string }) => m.from !== "r1" && m.to !== "r1";
    for (let step = 0; step < 500 && (r4?.currentView ?? 0) === 0; step++)
      c.run(10, (m) => withoutR1(m) && passes(m, false));
    expect(r4?.counters.get("batches.missing")).toBe(1);
    for (let step = 0; step < 300 && r4?.readValue("w") === null; step++)
      c.run(10, (m) => withoutR1(m) && passes(m, true));
    expect(r4?.counters.get("batches.from-pre-prepare")).toBe(1);
    expect(r4?.counters.get("batches.fetched")).toBeUndefined();
    expect(r4?.readValue("w")).toBe("1");
  });
});

describe("an EXECUTED report of large writes to a peer behind", () => {
  it("stays within a frame, the entries counted as JSON could write them, and goes again ever more rarely", () => {
    // Counted at 256 bytes a request, three writes of 700 KiB of control characters went in one
    // EXECUTED of 12.9 MB, which is never sent, and the peer could not catch up from the log.
    const c = replicaCluster(4, 1, 0, { maxReplyBytes: 4 * 1024 * 1024 });
    for (const id of c.ids) c.boot(id, { recovering: false });
    c.deliver(() => true);
    largeWrites(c, 700 * 1024);
    for (let step = 0; step < 100; step++) {
      if (c.cores.get("r2")?.readValue("k3") !== null) break;
      c.run(10, (m) => m.to !== "r4" && m.from !== "r4");
    }
    expect(c.cores.get("r2")?.readValue("k3")).not.toBeNull();
    const status = statusBody({ catchingUp: true });
    const before = c.sent.get("r2")?.length ?? 0;
    c.hand("r2", c.speakAs("r4", status));
    const executed = (c.sent.get("r2") ?? [])
      .slice(before)
      .flatMap((a) => (a.type === "send" && typeOf(a.message) === "EXECUTED" ? [a.message] : []));
    expect(executed.length).toBeGreaterThan(0);
    for (const m of executed) expect(m.length).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
    // Signed to a peer still catching up: it may lack this replica's session half.
    for (const m of executed) expect(m.subarray(0, 6).toString()).toBe("smwr1 ");
    // The peer says again and again that it is behind: the batches of megabytes go to it again
    // ever more rarely (`large-resends.ts`), not at every STATUS.
    const reports = () =>
      (c.sent.get("r2") ?? []).filter(
        (a) => a.type === "send" && a.to === "r4" && typeOf(a.message) === "EXECUTED",
      ).length;
    const sentBefore = reports();
    for (let step = 1; step <= 20; step++) {
      c.run(100, () => false);
      c.hand("r2", c.speakAs("r4", statusBody()));
    }
    // To a peer that only lags, with a MAC, not a signature over megabytes (`MAC_TYPES`).
    const later = (c.sent.get("r2") ?? []).flatMap((a) =>
      a.type === "send" && a.to === "r4" && typeOf(a.message) === "EXECUTED" ? [a.message] : [],
    );
    expect(later.length).toBeGreaterThan(executed.length);
    for (const m of later.slice(executed.length))
      expect(m.subarray(0, 6).toString()).toBe("smwm1 ");
    // 2 s of STATUS every 100 ms: again after 100, 200, 400 and 800 ms, not 20 times.
    expect(reports() - sentBefore).toBeGreaterThanOrEqual(3);
    expect(reports() - sentBefore).toBeLessThanOrEqual(6);
  });
});

describe("a Byzantine replica's VIEW_CHANGE", () => {
  it("carrying megabytes of bodies is refused: every NEW_VIEW formed with it would be too large", () => {
    const c = replicaCluster(4, 1, 0);
    for (const id of c.ids) c.boot(id, { recovering: false });
    c.deliver(() => true);
    // Bodies of batches it made up, each with its digest, so nothing else in it is wrong.
    const requests = [c.request(1, { op: "put", key: "x", value: "y".repeat(800 * 1024) })];
    const origin = c.originOf("r4");
    const batches = [1, 2, 3].map(() => ({
      digest: batchDigest(origin, requests),
      origin,
      requests,
    }));
    const body: ReplicaBody = {
      type: "VIEW_CHANGE",
      newView: 1,
      stable: c.cores.get("r2")?.stableCheckpoint ?? { seq: 0, digest: "" },
      checkpoints: [],
      prepared: [],
      prePrepared: [],
      batches,
      keyEpochs: [0, 0, 0, 0],
    };
    const before = c.sent.get("r2")?.length ?? 0;
    c.hand("r2", c.speakAs("r4", body));
    const refused = (c.sent.get("r2") ?? [])
      .slice(before)
      .filter((a) => a.type === "problem" && a.kind === "bad-view-change");
    expect(refused).toHaveLength(1);
    expect((refused[0] as { detail: string }).detail).toMatch(/bodies of \d+ bytes, over \d+/);
    // The same VIEW_CHANGE without the bodies is taken.
    const after = c.sent.get("r2")?.length ?? 0;
    c.hand("r2", c.speakAs("r4", { ...body, batches: [] }));
    expect((c.sent.get("r2") ?? []).slice(after).filter((a) => a.type === "problem")).toEqual([]);
  });
});
