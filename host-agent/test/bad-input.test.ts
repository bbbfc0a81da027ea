import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { KvStore } from "../src/kv/kv-store.js";
import { checkpointDigest, clientTableDigest } from "../src/replica/client-table.js";
import type { Signer } from "../src/replica/key-ring.js";
import { sealEnvelope } from "../src/replica/messages.js";
import type { ReplicaAction } from "../src/replica/replica-core.js";
import {
  CHECKPOINT_FILE,
  olderCheckpointFiles,
  readCheckpointFile,
  writeCheckpointFile,
} from "../src/storage/checkpoint-file.js";
import { fourReplicas } from "./replica-harness.js";

/** r2 among four replicas, as the shared harness makes them. */
function setup() {
  const { core, signers, crypto, cert, request, client } = fourReplicas("r2");
  return { crypto, core, replicaSigners: signers, cert, request, client };
}

const kinds = (actions: ReplicaAction[]) =>
  actions.filter((a) => a.type === "problem").map((a) => (a as { kind: string }).kind);

describe("untrusted input to a replica", () => {
  it("rejects, counts and survives malformed, oversized, forged, stale and unknown input", () => {
    const { core, replicaSigners, crypto, request, cert } = setup();
    let now = 0;
    const r1 = replicaSigners.get("r1") as Signer;
    const feed = (bytes: Buffer) => kinds(core.onMessage(bytes, ++now));
    const client = (message: unknown, id = "c1") =>
      kinds(core.onClientMessage(id, Buffer.from(JSON.stringify(message)), ++now));
    expect(feed(Buffer.from("garbage"))).toEqual(["malformed"]);
    expect(feed(Buffer.alloc(9 * 1024 * 1024, 65))).toEqual(["malformed"]);
    expect(feed(Buffer.from('smwr1 r1 0 AAAA\n{"type":"PREPARE","view":"x"}'))).toEqual([
      "malformed",
    ]);
    const prepare = { type: "PREPARE" as const, view: 0, seq: 1, digest: "a".repeat(64) };
    // Signed with r3's key, claiming to be r1.
    const r3 = replicaSigners.get("r3") as Signer;
    expect(feed(sealEnvelope("r1", 0, prepare, (b) => r3.sign(b)))).toEqual(["bad-signature"]);
    // r1 under an epoch not certified yet: refused, and r1 is asked for its key.
    const future = core.onMessage(
      sealEnvelope("r1", 5, prepare, (b) => r1.sign(b)),
      ++now,
    );
    expect(kinds(future)).toEqual(["unknown-epoch"]);
    expect(future.some((a) => a.type === "send" && a.to === "r1")).toBe(true);
    // A key certificate not signed by r1's board is refused.
    const newKey = crypto.newSigner("r1-e1");
    const bogus = { ...cert("r1", 1, newKey), signature: newKey.sign(Buffer.from("x")) };
    const newKeyMessage = (c: typeof bogus) =>
      sealEnvelope("r1", 1, { type: "NEW_KEY", certificate: c }, (b) => newKey.sign(b));
    expect(feed(newKeyMessage(bogus))).toEqual(["bad-certificate"]);
    // r1 rejuvenated: its board certifies a new key; the old key is refused from then on.
    expect(feed(newKeyMessage(cert("r1", 1, newKey)))).toEqual([]);
    expect(feed(sealEnvelope("r1", 0, prepare, (b) => r1.sign(b)))).toEqual(["stale-epoch"]);
    expect(feed(sealEnvelope("r1", 1, prepare, (b) => newKey.sign(b)))).toEqual([]);
    // Requests from an unknown client, with a MAC that does not check, or malformed: never
    // executed. A copy whose MAC fails is no problem of the client's (it may not know this
    // replica's half yet): it is not held, and is counted.
    expect(
      client({ type: "REQUEST", request: { ...request(1), client: "mallory" } }, "mallory"),
    ).toEqual(["unknown-client"]);
    const notFresh = core.counters.get("requests.not-fresh") ?? 0;
    expect(client({ type: "REQUEST", request: request(2), mac: "A".repeat(22) })).toEqual([]);
    expect(core.counters.get("requests.not-fresh")).toBe(notFresh + 1);
    expect(client({ type: "REQUEST", request: { ...request(4), client: "c2" } })).toEqual([
      "bad-request",
    ]);
    expect(client({ type: "REQUEST" })).toEqual(["malformed"]);
    expect(core.executedUpTo).toBe(0);
    expect(core.counters.get("rejected.malformed")).toBe(4);
    expect(core.counters.get("rejected.stale-epoch")).toBe(1);
    // Still serving: a valid request is accepted and answered with nothing rejected.
    expect(client({ type: "REQUEST", request: request(10) })).toEqual([]);
  });
});

describe("checkpoints on stable storage", () => {
  it("round-trips, and reports a corrupted or truncated file instead of trusting it", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "smw-cp-"));
    try {
      const store = new KvStore();
      for (let i = 0; i < 200; i++) store.apply({ op: "put", key: `k${i}`, value: `v${i}` });
      const snapshot = store.snapshot();
      const clients = [
        { client: "c1", ts: 7, result: { op: "put" as const, previous: null }, seq: 60 },
      ];
      const digest = checkpointDigest(snapshot.root().toString("hex"), clientTableDigest(clients));
      expect(readCheckpointFile(dir)).toEqual({ none: true });
      writeCheckpointFile(dir, { seq: 64, digest, snapshot, clients });
      const back = readCheckpointFile(dir);
      expect("checkpoint" in back && back.checkpoint.seq).toBe(64);
      expect("checkpoint" in back && back.checkpoint.digest).toBe(digest);
      const file = path.join(dir, CHECKPOINT_FILE);
      const bytes = readFileSync(file);
      for (const at of [0, 12, 40, bytes.length - 100, bytes.length - 1]) {
        const bad = Buffer.from(bytes);
        bad[at] = (bad[at] ?? 0) ^ 0x5a;
        writeFileSync(file, bad);
        const r = readCheckpointFile(dir);
        expect("error" in r, `flip at ${at}`).toBe(true);
        expect((r as { error: string }).error).toContain(CHECKPOINT_FILE);
      }
      writeFileSync(file, bytes.subarray(0, bytes.length / 2));
      expect("error" in readCheckpointFile(dir)).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("keeps the two checkpoints before the newest if they are older, and drops those at or above the one a cold start goes back to", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "smw-cp-"));
    try {
      const store = new KvStore();
      const write = (seq: number) => {
        store.apply({ op: "put", key: "seq", value: String(seq) });
        const snapshot = store.snapshot();
        const digest = checkpointDigest(snapshot.root().toString("hex"), clientTableDigest([]));
        writeCheckpointFile(dir, { seq, digest, snapshot, clients: [] });
      };
      const seqOf = (name?: string) => {
        const r = readCheckpointFile(dir, name);
        return "checkpoint" in r ? r.checkpoint.seq : "none" in r ? null : r.error;
      };
      const kept = () => [seqOf(), ...olderCheckpointFiles(dir).map((f) => seqOf(f.name))];
      write(64);
      expect(kept()).toEqual([64]);
      write(128);
      expect(kept()).toEqual([128, 64]);
      write(192);
      expect(kept()).toEqual([192, 128, 64]);
      write(256);
      expect(kept()).toEqual([256, 192, 128]);
      // Back to 192: 256 is of a state no longer agreed on, the older ones came before it.
      write(192);
      expect(kept()).toEqual([192, 128]);
      // Back to 128: so is 192.
      write(128);
      expect(kept()).toEqual([128]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
