import { copyFileSync, cpSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { KvStore } from "../src/kv/kv-store.js";
import { checkpointDigest, clientTableDigest } from "../src/replica/client-table.js";
import {
  CHECKPOINT_FILE,
  installSteps,
  olderCheckpointFileName,
  olderCheckpointFiles,
  readCheckpointFile,
  type StoredCheckpoint,
  writeCheckpointFile,
} from "../src/storage/checkpoint-file.js";
import { CheckpointWriter } from "../src/storage/checkpoint-writer.js";
import { SEGMENT_DIR } from "../src/storage/partition-segments.js";

const checkpoint = (seq: number): StoredCheckpoint => {
  const store = new KvStore();
  store.apply({ op: "put", key: "seq", value: String(seq) });
  const snapshot = store.snapshot();
  const digest = checkpointDigest(snapshot.root().toString("hex"), clientTableDigest([]));
  return { seq, digest, snapshot, clients: [] };
};

describe("checkpoints written in the background", () => {
  it("one at a time, in order, the newest of those that waited, errors reported", async () => {
    const written: number[] = [];
    const errors: number[] = [];
    let release: () => void = () => {};
    const writer = new CheckpointWriter(
      "unused",
      (seq) => errors.push(seq),
      async (_dir, cp) => {
        if (cp.seq === 1) await new Promise<void>((resolve) => (release = resolve));
        if (cp.seq === 5) throw new Error("disk full");
        written.push(cp.seq);
      },
    );
    writer.save(checkpoint(1));
    // Taken while 1 is being written: 2 waits, 3 replaces it.
    writer.save(checkpoint(2));
    writer.save(checkpoint(3));
    expect(written).toEqual([]);
    release();
    await writer.flushed();
    expect(written).toEqual([1, 3]);
    writer.save(checkpoint(5));
    await writer.flushed();
    writer.save(checkpoint(6));
    await writer.flushed();
    expect(errors).toEqual([5]);
    expect(written).toEqual([1, 3, 6]);
  });

  it("writes the same file as the synchronous writer, the previous one kept", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "smw-cpw-"));
    try {
      const writer = new CheckpointWriter(dir, (seq, error) => {
        throw new Error(`${seq}: ${error.message}`);
      });
      writer.save(checkpoint(64));
      await writer.flushed();
      writer.save(checkpoint(128));
      await writer.flushed();
      const latest = readCheckpointFile(dir);
      expect("checkpoint" in latest && latest.checkpoint.seq).toBe(128);
      expect("checkpoint" in latest && latest.checkpoint.snapshot.root()).toEqual(
        checkpoint(128).snapshot.root(),
      );
      const previous = readCheckpointFile(dir, olderCheckpointFileName(64));
      expect("checkpoint" in previous && previous.checkpoint.seq).toBe(64);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("a checkpoint being put in place", () => {
  const seqIn = (dir: string, name = CHECKPOINT_FILE) => {
    const read = readCheckpointFile(dir, name);
    if ("error" in read) throw new Error(read.error);
    return "checkpoint" in read ? read.checkpoint.seq : null;
  };

  it("leaves a stored checkpoint, the old or the new, whichever step a reset stops it after", () => {
    const made = mkdtempSync(path.join(tmpdir(), "smw-cp-new-"));
    try {
      writeCheckpointFile(made, checkpoint(128));
      // Before a new one: none kept yet; one older kept; the disk ahead of the one being written.
      for (const [before, writing] of [
        [[64], 128],
        [[32, 64], 128],
        [[16, 32, 64], 128],
        [[192], 128],
      ] as const) {
        const steps = (dir: string) => {
          for (const seq of before) writeCheckpointFile(dir, checkpoint(seq));
          // The new checkpoint's segment is in place before its file is (writeCheckpointFile).
          cpSync(path.join(made, SEGMENT_DIR), path.join(dir, SEGMENT_DIR), { recursive: true });
          copyFileSync(path.join(made, CHECKPOINT_FILE), path.join(dir, `${CHECKPOINT_FILE}.tmp`));
          return installSteps(dir, writing);
        };
        const probe = mkdtempSync(path.join(tmpdir(), "smw-cp-"));
        const count = steps(probe).length;
        rmSync(probe, { recursive: true, force: true });
        for (let stopAfter = 0; stopAfter <= count; stopAfter++) {
          const dir = mkdtempSync(path.join(tmpdir(), "smw-cp-"));
          try {
            for (const step of steps(dir).slice(0, stopAfter)) step();
            const current = seqIn(dir);
            const old = before[before.length - 1] as number;
            const where = `before ${before}, stopped after ${stopAfter} of ${count} steps`;
            expect([old, writing], where).toContain(current);
            // Every older file there is whole (seqIn throws on one that is not).
            for (const f of olderCheckpointFiles(dir))
              expect(seqIn(dir, f.name), where).toBe(f.seq);
            if (stopAfter === count) {
              expect(current, where).toBe(writing);
              // The two newest below the one written (without an interval, the rule keeps those).
              const kept = [...before]
                .filter((s) => s < writing)
                .reverse()
                .slice(0, 2);
              expect(
                olderCheckpointFiles(dir).map((f) => seqIn(dir, f.name)),
                where,
              ).toEqual(kept);
              expect(
                readdirSync(dir).filter((name) => name.endsWith(".smw.tmp")),
                where,
              ).toEqual([]);
            }
          } finally {
            rmSync(dir, { recursive: true, force: true });
          }
        }
      }
    } finally {
      rmSync(made, { recursive: true, force: true });
    }
  });
});
