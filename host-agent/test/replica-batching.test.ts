/**
 * Batch size adapting to load (`mayOpenSlot` in normal-case.ts): the primary proposes at once
 * when nothing is in flight; with a batch in flight it opens another only once a quarter of a
 * full batch waits, up to the window.
 */
import { describe, expect, it } from "vitest";
import { parseEnvelope } from "../src/replica/messages.js";
import type { ReplicaAction } from "../src/replica/replica-core.js";
import { fourReplicas, statusBody } from "./replica-harness.js";

/** The PRE_PREPAREs among `actions`: their numbers and how many requests each holds. */
const proposals = (actions: ReplicaAction[]) =>
  actions.flatMap((a) => {
    if (a.type !== "broadcast") return [];
    const body = parseEnvelope(a.message)?.body;
    return body?.type === "PRE_PREPARE"
      ? [{ seq: body.seq, requests: body.requests.length, digest: body.digest }]
      : [];
  });
const shape = (actions: ReplicaAction[]) =>
  proposals(actions).map(({ seq, requests }) => ({ seq, requests }));

describe("the primary's batches under load", () => {
  it("wait behind the batch in flight until a quarter of a full batch waits, then open the next slot", () => {
    // batchMax 8: another slot opens once two requests wait.
    const { core, request, clientCopy } = fourReplicas("r1", { batchMax: 8, maxInFlight: 4 });
    let now = 0;
    const from = (c: string) => request(1, { op: "put", key: "x", value: c }, c);
    expect(shape(core.onClientMessage("c1", clientCopy(from("c1")), ++now))).toEqual([
      { seq: 1, requests: 1 },
    ]);
    // One waits while seq 1 is in flight: no new slot for it alone.
    expect(shape(core.onClientMessage("c2", clientCopy(from("c2")), ++now))).toEqual([]);
    // A second: the two go together.
    expect(shape(core.onClientMessage("c3", clientCopy(from("c3")), ++now))).toEqual([
      { seq: 2, requests: 2 },
    ]);
  });

  it("hold no more than a batch's bytes: large writes go one to a batch, small ones together", () => {
    const { core, request, clientCopy } = fourReplicas("r1", { batchMax: 8, maxInFlight: 4 });
    let now = 0;
    // 512 Ki characters each: at most 3 MiB as JSON could write them, over MAX_BATCH_BYTES alone.
    const big = "b".repeat(512 * 1024);
    const write = (c: string, value: string) =>
      core.onClientMessage(c, clientCopy(request(1, { op: "put", key: "x", value }, c)), ++now);
    expect(shape(write("c1", big))).toEqual([{ seq: 1, requests: 1 }]);
    expect(shape(write("c2", big))).toEqual([]);
    // Two wait: a slot opens, for the first of them alone; the second waits its turn.
    expect(shape(write("c3", big))).toEqual([{ seq: 2, requests: 1 }]);
    // A small one behind it: the large one goes alone, and small ones share the next batch.
    expect(shape(write("c4", "small"))).toEqual([{ seq: 3, requests: 1 }]);
    expect(shape(write("c5", "small"))).toEqual([{ seq: 4, requests: 2 }]);
  });

  it("under a window of one, never more than one batch in flight, however many wait", () => {
    const { core, request, clientCopy } = fourReplicas("r1", { batchMax: 8, maxInFlight: 1 });
    let now = 0;
    const proposed = [];
    for (let i = 1; i <= 12; i++) {
      const req = request(1, { op: "put", key: "x", value: `${i}` }, `c${i}`);
      proposed.push(...shape(core.onClientMessage(req.client, clientCopy(req), ++now)));
    }
    expect(proposed).toEqual([{ seq: 1, requests: 1 }]);
  });

  it("a request that waits alone goes as soon as the batch ahead of it executes", () => {
    const { core, from, request, clientCopy } = fourReplicas("r1", { batchMax: 8, maxInFlight: 4 });
    let now = 0;
    const [first] = proposals(core.onClientMessage("c1", clientCopy(request(1)), ++now));
    const second = request(1, undefined, "c2");
    expect(shape(core.onClientMessage("c2", clientCopy(second), ++now))).toEqual([]);
    const digest = (first as { digest: string }).digest;
    const after: ReplicaAction[] = [];
    for (const peer of ["r2", "r3"])
      after.push(
        ...core.onMessage(from(peer, { type: "PREPARE", view: 0, seq: 1, digest }), ++now),
      );
    for (const peer of ["r2", "r3"])
      after.push(...core.onMessage(from(peer, { type: "COMMIT", view: 0, seq: 1, digest }), ++now));
    expect(after.some((a) => a.type === "executed")).toBe(true);
    expect(shape(after)).toEqual([{ seq: 2, requests: 1 }]);
  });
});

describe("null batches", () => {
  it("pad to the checkpoint a recovering peer waits for, all at once, and are counted apart from client batches", () => {
    const { core, from, request, clientCopy } = fourReplicas("r1", { checkpointInterval: 4 });
    let now = 0;
    expect(shape(core.onClientMessage("c1", clientCopy(request(1)), ++now))).toEqual([
      { seq: 1, requests: 1 },
    ]);
    // r3, restarted, waits for checkpoint 4: the primary pads to it, whatever is in flight.
    const padded = shape(
      core.onMessage(from("r3", statusBody({ recovering: true, wantCheckpoint: 4 })), ++now),
    );
    expect(padded).toEqual([2, 3, 4].map((seq) => ({ seq, requests: 0 })));
    expect(core.counters.get("batches.proposed")).toBe(4);
    expect(core.counters.get("batches.null")).toBe(3);
  });
});
