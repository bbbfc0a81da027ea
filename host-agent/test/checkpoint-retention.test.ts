import { execFileSync } from "node:child_process";
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { KvStore } from "../src/kv/kv-store.js";
import { PARTITION_COUNT } from "../src/kv/partition-tree.js";
import { checkpointDigest, clientTableDigest } from "../src/replica/client-table.js";
import {
  CHECKPOINT_FILE,
  olderCheckpointFiles,
  readCheckpointFile,
  type StoredCheckpoint,
  writeCheckpointFile,
} from "../src/storage/checkpoint-file.js";
import {
  keptCheckpointSeqs,
  MAX_OLDER_CHECKPOINTS,
  RETENTION_LEVELS,
} from "../src/storage/checkpoint-retention.js";
import { StoredPartitions } from "../src/storage/partition-segments.js";

const INTERVAL = 4;

/** What a disk that wrote every checkpoint up to `newest` (in intervals) holds, newest first. */
function diskAfter(newest: number): number[] {
  let held: number[] = [];
  for (let i = 1; i <= newest; i++) {
    const seq = i * INTERVAL;
    const kept = keptCheckpointSeqs(seq, [(i - 1) * INTERVAL, ...held], INTERVAL);
    held = [...kept].sort((a, b) => b - a);
  }
  return [newest * INTERVAL, ...held];
}

describe("which older checkpoints a disk keeps", () => {
  const disks = Array.from({ length: 201 }, (_, i) => diskAfter(i));

  it("the two before the newest, and no more than a bounded number", () => {
    for (const [i, disk] of disks.entries()) {
      expect(disk.length - 1, `at ${i}`).toBeLessThanOrEqual(MAX_OLDER_CHECKPOINTS);
      for (const back of [1, 2])
        if (i >= back) expect(disk, `at ${i}`).toContain((i - back) * INTERVAL);
    }
    // Logarithmic in practice: at 200 intervals, the newest three and one or two per level.
    expect(disks[200]?.length).toBeLessThanOrEqual(3 + RETENTION_LEVELS + 2);
  });

  it("two disks up to 2^levels intervals apart share one, less than twice their distance below the laggard", () => {
    for (let ahead = 0; ahead < disks.length; ahead++)
      for (let lag = 1; lag <= 2 ** RETENTION_LEVELS && lag <= ahead; lag++) {
        const laggard = ahead - lag;
        const shared = (disks[ahead] as number[]).filter((s) =>
          (disks[laggard] as number[]).includes(s),
        );
        const where = `disks at ${ahead} and ${laggard} intervals`;
        expect(shared.length, where).toBeGreaterThan(0);
        expect(Math.max(...shared), where).toBeGreaterThan((laggard - 2 * lag) * INTERVAL);
        if (lag <= 2) expect(Math.max(...shared), where).toBe(laggard * INTERVAL);
      }
  });

  it("the shape the simulation found: three disks at 40, two that stopped at 28, with 20 behind them", () => {
    // With only the newest three kept, 40/36/32 and 28/24/20 shared nothing.
    const shared = diskAfter(10).filter((s) => diskAfter(7).includes(s));
    expect(Math.max(...shared)).toBe(16);
  });

  it("nothing at or above the newest, and only the two newest below it without an interval", () => {
    expect([...keptCheckpointSeqs(32, [48, 32, 28, 24, 16, 0])].sort((a, b) => a - b)).toEqual([
      24, 28,
    ]);
    expect([...keptCheckpointSeqs(32, [48, 32, 28, 24, 16, 0], 4)].sort((a, b) => a - b)).toEqual([
      0, 16, 24, 28,
    ]);
  });
});

describe("older checkpoint files on disk", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });
  const checkpointAt = (store: KvStore, seq: number): StoredCheckpoint => {
    store.apply({ op: "put", key: "seq", value: String(seq) });
    const snapshot = store.snapshot();
    const digest = checkpointDigest(snapshot.root().toString("hex"), clientTableDigest([]));
    return { seq, digest, snapshot, clients: [] };
  };
  const newDir = () => {
    const dir = mkdtempSync(path.join(tmpdir(), "smw-retain-"));
    dirs.push(dir);
    return dir;
  };
  const storeOf300Keys = () => {
    const store = new KvStore();
    for (let i = 0; i < 300; i++) store.apply({ op: "put", key: `key-${i}`, value: `v${i}` });
    return store;
  };
  const contentSeqs = (dir: string) =>
    olderCheckpointFiles(dir).map((f) => {
      const read = readCheckpointFile(dir, f.name);
      if (!("checkpoint" in read)) throw new Error(`${f.name}: ${JSON.stringify(read)}`);
      return read.checkpoint.seq;
    });

  it("are the rule's, each named by its number and read back whole", () => {
    const dir = newDir();
    const store = new KvStore();
    const stored = new StoredPartitions();
    for (let i = 0; i <= 100; i++)
      writeCheckpointFile(dir, checkpointAt(store, i * INTERVAL), stored, INTERVAL);
    const expected = diskAfter(100);
    expect([100 * INTERVAL, ...contentSeqs(dir)]).toEqual(expected);
    expect(olderCheckpointFiles(dir).map((f) => f.name)).toEqual(
      expected.slice(1).map((seq) => `checkpoint.${seq}.smw`),
    );
    expect(readdirSync(dir).filter((name) => name.endsWith(".tmp"))).toEqual([]);
  });

  it("of the earlier names are read, and go once the rule no longer keeps them", () => {
    const dir = newDir();
    const store = new KvStore();
    for (const seq of [8, 12]) writeCheckpointFile(dir, checkpointAt(store, seq));
    // As an earlier release left them: the two before the newest under fixed names.
    renameSync(path.join(dir, "checkpoint.8.smw"), path.join(dir, "checkpoint.previous-2.smw"));
    writeCheckpointFile(dir, checkpointAt(store, 16));
    renameSync(path.join(dir, "checkpoint.12.smw"), path.join(dir, "checkpoint.previous.smw"));
    writeFileSync(path.join(dir, "checkpoint.notes.smw"), "not a checkpoint of ours");
    expect(olderCheckpointFiles(dir).map((f) => [f.name, f.seq])).toEqual([
      ["checkpoint.previous.smw", 12],
      ["checkpoint.previous-2.smw", 8],
    ]);
    expect(contentSeqs(dir)).toEqual([12, 8]);
    writeCheckpointFile(dir, checkpointAt(store, 20));
    expect(olderCheckpointFiles(dir).map((f) => f.name)).toEqual([
      "checkpoint.16.smw",
      "checkpoint.previous.smw",
    ]);
    // A file that is no checkpoint name of ours is never touched.
    expect(readdirSync(dir)).toContain("checkpoint.notes.smw");
    expect(readdirSync(dir)).toContain(CHECKPOINT_FILE);
  });

  it("read together, share every partition that did not change between them", () => {
    const dir = newDir();
    const store = storeOf300Keys();
    const stored = new StoredPartitions();
    writeCheckpointFile(dir, checkpointAt(store, 16), stored, 16);
    writeCheckpointFile(dir, checkpointAt(store, 32), stored, 16);
    const decoded = new Map();
    const newest = readCheckpointFile(dir, CHECKPOINT_FILE, decoded);
    const older = readCheckpointFile(dir, "checkpoint.16.smw", decoded);
    const alone = readCheckpointFile(dir, "checkpoint.16.smw");
    if (!("checkpoint" in newest && "checkpoint" in older && "checkpoint" in alone))
      throw new Error("unreadable");
    const a = newest.checkpoint.snapshot;
    const b = older.checkpoint.snapshot;
    let shared = 0;
    let distinct = 0;
    for (let p = 0; p < PARTITION_COUNT; p++) {
      if (a.partitionMap(p).size === 0) continue;
      if (a.leafDigest(p).equals(b.leafDigest(p))) {
        expect(a.partitionMap(p)).toBe(b.partitionMap(p));
        expect(alone.checkpoint.snapshot.partitionMap(p)).not.toBe(b.partitionMap(p));
        shared++;
      } else {
        expect(a.partitionMap(p)).not.toBe(b.partitionMap(p));
        distinct++;
      }
    }
    // Only the partition of the key "seq" changed between them.
    expect(distinct).toBe(1);
    expect(shared).toBeGreaterThan(100);
    expect(decoded.size).toBe(shared + 2 * distinct);
    expect(b.root()).toEqual(alone.checkpoint.snapshot.root());
  });

  it("never block on, nor trust, what a compromised host put in a checkpoint file's place", () => {
    const dir = newDir();
    const store = new KvStore();
    writeCheckpointFile(dir, checkpointAt(store, 16), undefined, 16);
    writeCheckpointFile(dir, checkpointAt(store, 32), undefined, 16);
    // A FIFO (opening one to read waits for a writer), a folder and a link, in the files' places.
    rmSync(path.join(dir, CHECKPOINT_FILE));
    execFileSync("mkfifo", [path.join(dir, CHECKPOINT_FILE)]);
    rmSync(path.join(dir, "checkpoint.16.smw"));
    execFileSync("mkfifo", [path.join(dir, "checkpoint.16.smw")]);
    mkdirSync(path.join(dir, "checkpoint.8.smw"));
    symlinkSync("/etc/hostname", path.join(dir, "checkpoint.4.smw"));
    for (const name of [
      CHECKPOINT_FILE,
      "checkpoint.16.smw",
      "checkpoint.8.smw",
      "checkpoint.4.smw",
    ]) {
      const read = readCheckpointFile(dir, name);
      expect("error" in read, name).toBe(true);
    }
    // The next checkpoint is written over them, and reads back.
    writeCheckpointFile(dir, checkpointAt(store, 48), undefined, 16);
    const read = readCheckpointFile(dir);
    expect("checkpoint" in read && read.checkpoint.seq).toBe(48);
    // And the ones after it, which remove what the rule no longer keeps, whatever it is.
    for (const seq of [64, 80, 96])
      writeCheckpointFile(dir, checkpointAt(store, seq), undefined, 16);
    expect(olderCheckpointFiles(dir).map((f) => f.name)).toEqual([
      "checkpoint.80.smw",
      "checkpoint.64.smw",
    ]);
    expect(contentSeqs(dir)).toEqual([80, 64]);
  });

  it("a folder at any name a write uses, or junk at an older name kept long, stops no write and no collection", () => {
    const dir = newDir();
    const store = storeOf300Keys();
    const stored = new StoredPartitions();
    writeCheckpointFile(dir, checkpointAt(store, 16), stored, 16);
    // Where the newest will be linked to, where the next file is written first, and junk at the
    // number the rule keeps longest (0, a multiple of every level).
    mkdirSync(path.join(dir, "checkpoint.16.smw"), { recursive: true });
    mkdirSync(path.join(dir, "checkpoint.smw.tmp"));
    execFileSync("mkfifo", [path.join(dir, "checkpoint.0.smw")]);
    for (let seq = 32; seq <= 16 * 40; seq += 16) {
      writeCheckpointFile(dir, checkpointAt(store, seq), stored, 16);
      const read = readCheckpointFile(dir);
      expect("checkpoint" in read && read.checkpoint.seq, `at ${seq}`).toBe(seq);
    }
    // Every older file that is left reads back, but the FIFO the rule still keeps by its name.
    for (const f of olderCheckpointFiles(dir))
      if (f.name !== "checkpoint.0.smw")
        expect("checkpoint" in readCheckpointFile(dir, f.name), f.name).toBe(true);
    // Segments were collected all along: no more than one per kept checkpoint file.
    const segments = readdirSync(path.join(dir, "partitions"));
    expect(segments.length).toBeLessThanOrEqual(1 + olderCheckpointFiles(dir).length);
  });
});
