/**
 * A state whose partition holds more than a frame: values of 1 MiB under keys a client chose to
 * share one partition (a few thousand hashes each). Sent whole, that partition was larger than a
 * frame, never sent, and a replica recovering after its rejuvenation could never fetch it (its
 * board then failed safe). Real cores, n = 4, k' = 1, a host's reply size; the network here drops
 * what a frame could not carry, as a host's does.
 */
import { describe, expect, it } from "vitest";
import { partitionOf } from "../src/kv/partition-tree.js";
import { MAX_MESSAGE_BYTES, parseEnvelope } from "../src/replica/messages.js";
import { replicaCluster } from "./replica-cluster.js";

const MiB = 1024 * 1024;
const fits = (m: { message: Buffer }) => m.message.length <= MAX_MESSAGE_BYTES;

describe("a replica recovering a state with a partition larger than a frame", () => {
  it("fetches it piece by piece from its peers, every message within a frame", () => {
    const c = replicaCluster(4, 1, 0, { maxReplyBytes: 4 * MiB });
    for (const id of c.ids) c.boot(id, { recovering: false });
    c.deliver(fits);
    const home = partitionOf("fat-0");
    const keys: string[] = [];
    for (let i = 0; keys.length < 7; i++)
      if (partitionOf(`fat-${i}`) === home) keys.push(`fat-${i}`);
    const fatValue = (i: number) => String.fromCharCode(97 + i).repeat(MiB);
    // One write at a time, each executed everywhere before the next; then small ones, so that a
    // checkpoint (every 4 batches here) covers them all.
    const ops = [
      ...keys.map((key, i) => ({ op: "put" as const, key, value: fatValue(i) })),
      ...[1, 2, 3, 4].map((i) => ({ op: "put" as const, key: `small-${i}`, value: "x" })),
    ];
    ops.forEach((op, i) => {
      const request = c.request(i + 1, op);
      for (const id of c.ids) c.fromClient(id, request);
      for (let step = 0; step < 200; step++) {
        if (c.ids.every((id) => c.cores.get(id)?.readValue(op.key) === op.value)) break;
        c.run(10, fits);
      }
    });
    for (const id of c.ids) expect(c.cores.get(id)?.readValue(keys[6] as string)).toBe(fatValue(6));
    // r4 is rejuvenated with nothing it can trust: everything comes from its peers.
    c.rejuvenate("r4", { recovering: true });
    for (let step = 0; step < 1000 && !c.cores.get("r4")?.isRecovered; step++) c.run(10, fits);
    const r4 = c.cores.get("r4");
    expect(r4?.isRecovered).toBe(true);
    keys.forEach((key, i) => {
      expect(r4?.readValue(key)).toBe(fatValue(i));
    });
    expect(r4?.counters.get("state-transfer.pieces-asked")).toBeGreaterThanOrEqual(1);
    // Every PARTS its peers sent fitted in a frame.
    const parts = [...c.sent.values()]
      .flat()
      .flatMap((a) => (a.type === "send" ? [a.message] : []))
      .filter((m) => m.length > MiB && parseEnvelope(m)?.body.type === "PARTS");
    expect(parts.length).toBeGreaterThanOrEqual(2);
    for (const m of parts) expect(m.length).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
  });
});
