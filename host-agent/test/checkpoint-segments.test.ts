/**
 * Checkpoints written incrementally: each writes a segment with the partitions that changed, and
 * points at older segments for the rest; segments no kept checkpoint names are removed; whatever
 * a compromised host does to a segment makes the checkpoint unusable, never a different state.
 */
import { execFileSync } from "node:child_process";
import {
  closeSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { encodeSnapshot } from "../src/kv/kv-snapshot.js";
import { KvStore } from "../src/kv/kv-store.js";
import { checkpointDigest, clientTableDigest } from "../src/replica/client-table.js";
import {
  CHECKPOINT_FILE,
  olderCheckpointFileName,
  olderCheckpointFiles,
  readCheckpointFile,
  type StoredCheckpoint,
  writeCheckpointFile,
  writeCheckpointFileInBackground,
} from "../src/storage/checkpoint-file.js";
import { SEGMENT_DIR, StoredPartitions } from "../src/storage/partition-segments.js";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});
const newDir = () => {
  const dir = mkdtempSync(path.join(tmpdir(), "smw-segments-"));
  dirs.push(dir);
  return dir;
};

const checkpointOf = (store: KvStore, seq: number): StoredCheckpoint => {
  const snapshot = store.snapshot();
  const digest = checkpointDigest(snapshot.root().toString("hex"), clientTableDigest([]));
  return { seq, digest, snapshot, clients: [] };
};
const segments = (dir: string) => readdirSync(path.join(dir, SEGMENT_DIR)).sort();
const segmentBytes = (dir: string) =>
  segments(dir).reduce((sum, name) => sum + statSync(path.join(dir, SEGMENT_DIR, name)).size, 0);
const seqOf = (dir: string, name = CHECKPOINT_FILE) => {
  const read = readCheckpointFile(dir, name);
  return "checkpoint" in read ? read.checkpoint.seq : "none" in read ? null : read.error;
};
/** The checkpoint read back holds exactly `store`'s state. */
const expectReadsBack = (dir: string, store: KvStore) => {
  const read = readCheckpointFile(dir);
  expect("checkpoint" in read && read.checkpoint.snapshot.root()).toEqual(store.snapshot().root());
};
/** The checkpoint is refused, for the reason `pattern` names, without a throw. */
const expectRefused = (dir: string, pattern: RegExp) => {
  const read = readCheckpointFile(dir);
  expect("error" in read, JSON.stringify(read).slice(0, 200)).toBe(true);
  expect((read as { error: string }).error).toMatch(pattern);
};
/** A checkpoint of 300 keys written whole: its one segment's path and bytes. */
const oneSegment = (dir: string) => {
  writeCheckpointFile(dir, checkpointOf(storeWith(300), 16));
  const [segment] = segments(dir);
  const file = path.join(dir, SEGMENT_DIR, segment as string);
  return { file, bytes: readFileSync(file) };
};
/** A store of `keys` keys with values of `valueBytes` bytes: partitions all over. */
const storeWith = (keys: number, valueBytes = 16) => {
  const store = new KvStore();
  for (let i = 0; i < keys; i++)
    store.apply({ op: "put", key: `key-${i}`, value: String(i).padEnd(valueBytes, "x") });
  return store;
};

describe("checkpoints written incrementally", () => {
  it("write only the partitions that changed, and read back the whole state", async () => {
    const dir = newDir();
    const store = storeWith(500);
    const stored = new StoredPartitions();
    writeCheckpointFile(dir, checkpointOf(store, 16), stored);
    const whole = segmentBytes(dir);
    store.apply({ op: "put", key: "key-7", value: "changed" });
    await writeCheckpointFileInBackground(dir, checkpointOf(store, 32), stored);
    // Two segments: the first with every partition, the second with the one that changed.
    const [first, second] = segments(dir).map((n) => statSync(path.join(dir, SEGMENT_DIR, n)).size);
    expect(segments(dir)).toHaveLength(2);
    expect(first).toBe(whole);
    expect(second).toBeLessThan(whole / 50);
    const back = readCheckpointFile(dir);
    if (!("checkpoint" in back)) throw new Error(JSON.stringify(back));
    expect(back.checkpoint.seq).toBe(32);
    expect(back.checkpoint.snapshot.root()).toEqual(store.snapshot().root());
    const again = KvStore.fromSnapshot(back.checkpoint.snapshot);
    expect(again.read({ op: "get", key: "key-7" })).toEqual({ op: "get", value: "changed" });
    expect(again.read({ op: "get", key: "key-499" })).toMatchObject({ op: "get" });
    // The one before it reads back too, from the first segment alone.
    expect(seqOf(dir, olderCheckpointFileName(16))).toBe(16);
  });

  it("remove the segments no kept checkpoint names, and what a reset left half-written", () => {
    const dir = newDir();
    const store = storeWith(200);
    const stored = new StoredPartitions();
    writeCheckpointFile(dir, checkpointOf(store, 8), stored);
    // A reset in the middle of a later write: a segment written, its file never put in place,
    // and a temporary file.
    writeFileSync(path.join(dir, SEGMENT_DIR, "9-0000abcd.seg"), "orphan");
    writeFileSync(path.join(dir, SEGMENT_DIR, "9-0000abce.seg.tmp"), "half");
    for (let seq = 16; seq <= 48; seq += 8) {
      store.apply({ op: "put", key: "key-3", value: `at ${seq}` });
      writeCheckpointFile(dir, checkpointOf(store, seq), stored);
    }
    expect([seqOf(dir), ...olderCheckpointFiles(dir).map((f) => seqOf(dir, f.name))]).toEqual([
      48, 40, 32,
    ]);
    // What is left is what the three kept checkpoints name: the first segment (the partitions
    // that never changed) and those of 32, 40 and 48 (each with key-3's partition as it was
    // then); 16's and 24's, and the orphan and the temporary file, are gone.
    expect(segments(dir).map((name) => name.split("-")[0])).toEqual(["32", "40", "48", "8"]);
  });

  it("after a cold start went back, keep only the segments of the checkpoint it went back to", () => {
    const dir = newDir();
    const store = storeWith(100);
    const stored = new StoredPartitions();
    for (const seq of [64, 128, 192]) {
      store.apply({ op: "put", key: "seq", value: String(seq) });
      writeCheckpointFile(dir, checkpointOf(store, seq), stored);
    }
    const back = storeWith(100);
    back.apply({ op: "put", key: "other", value: "era" });
    writeCheckpointFile(dir, checkpointOf(back, 128), stored);
    // 192 is of a state no longer agreed on; 64 came before the point gone back to.
    expect([seqOf(dir), ...olderCheckpointFiles(dir).map((f) => seqOf(dir, f.name))]).toEqual([
      128, 64,
    ]);
    expect(segments(dir).every((name) => /^(64|128)-/.test(name))).toBe(true);
    const read = readCheckpointFile(dir);
    expect("checkpoint" in read && read.checkpoint.snapshot.root()).toEqual(back.snapshot().root());
  });

  it("point again only at partitions read back and checked: a changed segment is written anew", () => {
    const dir = newDir();
    const store = storeWith(300);
    writeCheckpointFile(dir, checkpointOf(store, 16), new StoredPartitions());
    const [segment] = segments(dir);
    const file = path.join(dir, SEGMENT_DIR, segment as string);
    // While the host was down, its disk was written: one byte of a partition changed.
    const fd = openSync(file, "r+");
    writeSync(fd, Buffer.from("!"), 0, 1, 40);
    closeSync(fd);
    const read = readCheckpointFile(dir);
    expect("error" in read && read.error).toMatch(/partition \d+|root digest mismatch/);
    // The replica recovered its state from its peers; its next checkpoint points at nothing old.
    store.apply({ op: "put", key: "key-1", value: "after" });
    writeCheckpointFile(dir, checkpointOf(store, 32), new StoredPartitions());
    expectReadsBack(dir, store);
  });

  it("never crash on, and never trust, a segment that is missing, short or changed, or a file that points past one", () => {
    const dir = newDir();
    const { file, bytes } = oneSegment(dir);
    const cp = path.join(dir, CHECKPOINT_FILE);
    const cpBytes = readFileSync(cp);
    writeFileSync(file, bytes.subarray(0, bytes.length - 10));
    expectRefused(dir, /the file has|ends before/);
    rmSync(file);
    expectRefused(dir, /ENOENT/);
    writeFileSync(file, bytes);
    expect(seqOf(dir)).toBe(16);
    // Rows point past the segment: the last row's length made huge, and an offset past the end.
    const huge = Buffer.from(cpBytes);
    huge.writeUInt32BE(0xffffffff, huge.length - 4);
    writeFileSync(cp, huge);
    expectRefused(dir, /asked, the file has|its rows claim/);
    const far = Buffer.from(cpBytes);
    far.writeUIntBE(2 ** 40, far.length - 10, 6);
    writeFileSync(cp, far);
    expectRefused(dir, /asked, the file has|its rows claim/);
    // A row cut short, and a segment name that is no segment's.
    writeFileSync(cp, cpBytes.subarray(0, cpBytes.length - 3));
    expectRefused(dir, /not a whole number of rows/);
    writeFileSync(
      cp,
      Buffer.from(
        cpBytes.toString("latin1").replace(/"16-[0-9a-f]{8}\.seg"/, '"../../etc/passwd"'),
        "latin1",
      ),
    );
    expectRefused(dir, /header|segment/);
  });

  it("write the whole state again once old segments are mostly stale, so the disk used stays bounded", () => {
    const dir = newDir();
    // Over a mebibyte, so that compaction (at twice the live bytes plus 1 MiB) comes into play.
    const store = storeWith(3000, 1000);
    const stored = new StoredPartitions();
    writeCheckpointFile(dir, checkpointOf(store, 1), stored);
    const live = segmentBytes(dir);
    expect(live).toBeGreaterThan(2 * 1024 * 1024);
    let most = 0;
    let mostFiles = 0;
    let wholeAgain = 0;
    for (let seq = 2; seq <= 40; seq++) {
      // A tenth of the keys change each time.
      for (let i = seq % 10; i < 3000; i += 10)
        store.apply({ op: "put", key: `key-${i}`, value: `${seq}`.padEnd(1000, "y") });
      const before = new Set(segments(dir));
      // An interval of 1: the older checkpoints kept are spaced as a replica's are.
      writeCheckpointFile(dir, checkpointOf(store, seq), stored, 1);
      const added = segments(dir).filter((name) => !before.has(name));
      if (added.some((name) => statSync(path.join(dir, SEGMENT_DIR, name)).size >= live))
        wholeAgain++;
      most = Math.max(most, segmentBytes(dir));
      mostFiles = Math.max(mostFiles, 1 + olderCheckpointFiles(dir).length);
    }
    expect(wholeAgain).toBeGreaterThan(0);
    expect(mostFiles).toBeGreaterThan(3);
    // Each kept checkpoint points into at most twice its bytes plus 1 MiB.
    expect(most).toBeLessThan(mostFiles * (2 * live + 1024 * 1024) + live);
    expect(seqOf(dir)).toBe(40);
    expectReadsBack(dir, store);
  });

  it("still read a checkpoint file of the first format, the whole state inline, and write the next one in segments", () => {
    const dir = newDir();
    const store = storeWith(100);
    const cp = checkpointOf(store, 64);
    const header = Buffer.from(JSON.stringify({ seq: 64, digest: cp.digest, clients: [] }));
    const length = Buffer.alloc(4);
    length.writeUInt32BE(header.length);
    writeFileSync(
      path.join(dir, CHECKPOINT_FILE),
      Buffer.concat([Buffer.from("SMWCP1\n"), length, header, encodeSnapshot(cp.snapshot)]),
    );
    const read = readCheckpointFile(dir);
    if (!("checkpoint" in read)) throw new Error(JSON.stringify(read));
    expect(read.checkpoint.snapshot.root()).toEqual(cp.snapshot.root());
    store.apply({ op: "put", key: "key-1", value: "next" });
    writeCheckpointFile(dir, checkpointOf(store, 128), read.stored);
    expect(seqOf(dir)).toBe(128);
    expect(seqOf(dir, olderCheckpointFileName(64))).toBe(64);
  });

  it("refuse, without blocking or allocating without end, what a compromised host can put in a segment's place", () => {
    const dir = newDir();
    const { file, bytes } = oneSegment(dir);
    // A folder, a FIFO (opening one to read would wait for a writer), a second name.
    rmSync(file);
    mkdirSync(file);
    expectRefused(dir, /not a regular file of its own/);
    rmSync(file, { recursive: true });
    execFileSync("mkfifo", [file]);
    expectRefused(dir, /not a regular file of its own/);
    rmSync(file);
    writeFileSync(file, bytes);
    linkSync(file, path.join(dir, "elsewhere"));
    expectRefused(dir, /not a regular file of its own/);
    rmSync(path.join(dir, "elsewhere"));
    expect(seqOf(dir)).toBe(16);
    // Every row pointing at the whole segment: more bytes claimed than the segment holds.
    const cp = path.join(dir, CHECKPOINT_FILE);
    const cpBytes = readFileSync(cp);
    const greedy = Buffer.from(cpBytes);
    const rowsStart = 7 + 4 + greedy.readUInt32BE(7);
    for (let at = rowsStart; at < greedy.length; at += 16) {
      greedy.writeUIntBE(0, at + 6, 6);
      greedy.writeUInt32BE(bytes.length, at + 12);
    }
    writeFileSync(cp, greedy);
    expectRefused(dir, /its rows claim \d+ bytes, the file has/);
  });

  it("write through no link a compromised host left: not the segments' folder, not a temporary file's name", () => {
    const dir = newDir();
    const store = storeWith(200);
    writeCheckpointFile(dir, checkpointOf(store, 16));
    const [segment] = segments(dir);
    const segmentFile = path.join(dir, SEGMENT_DIR, segment as string);
    const before = readFileSync(segmentFile);
    // The next checkpoint file's temporary name, linked to the segment the current one uses.
    linkSync(segmentFile, path.join(dir, `${CHECKPOINT_FILE}.tmp`));
    // And elsewhere, a folder the segments' folder will be made to point at, with a file of its own.
    const outside = newDir();
    writeFileSync(path.join(outside, "precious"), "keep me");
    writeFileSync(path.join(outside, "1-0000abcd.seg"), "looks like a segment");
    store.apply({ op: "put", key: "key-1", value: "next" });
    writeCheckpointFile(dir, checkpointOf(store, 32), new StoredPartitions());
    expect(readFileSync(segmentFile)).toEqual(before);
    expect(seqOf(dir, olderCheckpointFileName(16))).toBe(16);
    // Now the segments' folder is replaced by a link to `outside`.
    const realSegments = path.join(dir, "segments-moved");
    renameSync(path.join(dir, SEGMENT_DIR), realSegments);
    symlinkSync(outside, path.join(dir, SEGMENT_DIR));
    store.apply({ op: "put", key: "key-2", value: "after" });
    writeCheckpointFile(dir, checkpointOf(store, 48), new StoredPartitions());
    expect(readFileSync(path.join(outside, "precious"), "utf8")).toBe("keep me");
    expect(readFileSync(path.join(outside, "1-0000abcd.seg"), "utf8")).toBe("looks like a segment");
    expect(lstatSync(path.join(dir, SEGMENT_DIR)).isDirectory()).toBe(true);
    // The new checkpoint was written whole into the real folder, and reads back.
    expectReadsBack(dir, store);
  });

  it("keep the client table as written: the batch and the request each reply names, and an entry older than either", () => {
    const dir = newDir();
    const snapshot = storeWith(10).snapshot();
    const clients = [
      { client: "c1", ts: 7, result: { op: "put" as const, previous: null }, seq: 3 },
      {
        client: "c2",
        ts: 9,
        result: { op: "get" as const, value: "v" },
        seq: 4,
        batch: "b".repeat(64),
        op: "c".repeat(64),
      },
    ];
    const digest = checkpointDigest(snapshot.root().toString("hex"), clientTableDigest(clients));
    writeCheckpointFile(dir, { seq: 16, digest, snapshot, clients });
    const read = readCheckpointFile(dir);
    expect("checkpoint" in read && read.checkpoint.clients).toEqual(clients);
  });
});
