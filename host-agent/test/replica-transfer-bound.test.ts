/**
 * What a recovering replica asks its peers for in one request: no more state than its own reply
 * bound allows (`maxBytes`), and a little until an answer has measured the link. Real cores,
 * n = 4, k' = 1, the simulation's reply bound of 256 KiB.
 */
import { describe, expect, it } from "vitest";
import { parseEnvelope, type ReplicaBody } from "../src/replica/messages.js";
import { replicaCluster } from "./replica-cluster.js";

describe("a recovering replica's requests for partitions", () => {
  it("ask for no more than its own reply bound", () => {
    const maxReplyBytes = 256 * 1024;
    const c = replicaCluster(4, 1, 0, { maxReplyBytes });
    for (const id of c.ids) c.boot(id, { recovering: false });
    // 48 values of 32 KiB (1.5 MiB): several answers of 256 KiB.
    for (let i = 1; i <= 48; i++) {
      const op = { op: "put" as const, key: `k${i}`, value: "v".repeat(32 * 1024) };
      const request = c.request(i, op);
      for (const id of c.ids) c.fromClient(id, request);
      for (let step = 0; step < 200; step++) {
        if (c.ids.every((id) => c.cores.get(id)?.readValue(op.key) === op.value)) break;
        c.run(10, () => true);
      }
    }
    c.rejuvenate("r4", { recovering: true });
    for (let step = 0; step < 1000 && !c.cores.get("r4")?.isRecovered; step++)
      c.run(10, () => true);
    expect(c.cores.get("r4")?.isRecovered).toBe(true);
    expect(c.cores.get("r4")?.readValue("k48")).toBe("v".repeat(32 * 1024));
    const asked = (c.sent.get("r4") ?? [])
      .flatMap((a) => (a.type === "send" ? [parseEnvelope(a.message)?.body] : []))
      .filter((b): b is Extract<ReplicaBody, { type: "FETCH_PARTS" }> => b?.type === "FETCH_PARTS");
    expect(asked.length).toBeGreaterThanOrEqual(2);
    for (const body of asked) {
      expect(body.maxBytes).toBeGreaterThan(0);
      expect(body.maxBytes).toBeLessThanOrEqual(maxReplyBytes);
    }
  });
});
