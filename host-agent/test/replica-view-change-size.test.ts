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
import { MAX_MESSAGE_BYTES } from "../src/replica/messages.js";
import { replicaCluster } from "./replica-cluster.js";

/** The message's type, read off its body even where `parseEnvelope` refuses it as too large. */
const typeOf = (message: Buffer): string | undefined =>
  (JSON.parse(message.subarray(message.indexOf(10) + 1).toString("utf8")) as { type?: string })
    .type;
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
    // only from the VIEW_CHANGEs or by fetching them.
    const others = ["r2", "r3", "r4"];
    const net = (m: { from: string; to: string; message: Buffer }, commits: boolean) => {
      const type = typeOf(m.message);
      if (!fits(m) || (type === "COMMIT" && !commits)) return false;
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
    // r4 fetched the bodies: no VIEW_CHANGE carried them.
    const fetched = others.reduce(
      (sum, id) => sum + (c.cores.get(id)?.counters.get("batches.fetched") ?? 0),
      0,
    );
    expect(fetched).toBeGreaterThan(0);
  });
});

describe("a large write its client sent to the backups alone", () => {
  it("reaches the primary in one HOLDERS within a frame, and is executed without a view change", () => {
    // Each HOLD carried the whole request, and a HOLDERS two whole HOLDs: 10 MB for a write of
    // 700 KiB of control characters. Now a HOLDERS carries the request once, with the HOLDs'
    // signatures.
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
    expect(largest(c, "HOLDERS")).toBeGreaterThan(0);
    expect(largest(c, "HOLDERS")).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
    expect(c.cores.get("r1")?.counters.get("holders.received")).toBeGreaterThan(0);
    for (const id of c.ids) {
      expect(c.cores.get(id)?.readValue("big")).toBe(value);
      expect(c.cores.get(id)?.currentView).toBe(0);
    }
  });
});
