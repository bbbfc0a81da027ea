/**
 * A replica's last checkpoints on stable storage: the newest (`checkpoint.smw`), written to a
 * temporary file, fsynced, renamed over the old one and the folder fsynced, so a reset at any
 * instant leaves either the old checkpoint or the new one; and older ones
 * (`checkpoint.<seq>.smw`, kept by hard links, chosen by `checkpoint-retention.ts`), which a cold
 * start may need: the replicas then agree on a checkpoint several of them hold, and they took
 * their last ones at different times. Read back defensively: a corrupted file, or anything else in
 * its place (a FIFO, a folder, a link), is reported and ignored (the replica then recovers
 * everything from its peers), never trusted, never waited on and never a crash.
 *
 * A checkpoint file names where its partitions are, in segment files that later checkpoints
 * share (`partition-segments.ts`): each checkpoint writes only the partitions that changed.
 *
 *   SMWCP2\n <u32 header length> <header JSON: seq, digest, clients, root, segments>
 *            per non-empty partition, by index: <u32 index> <u16 segment> <u48 offset> <u32 length>
 *
 * Files of the first format (the whole state inline) are still read:
 *
 *   SMWCP1\n <u32 header length> <header JSON: seq, digest, clients> <snapshot bytes>
 */
import {
  closeSync,
  constants,
  copyFileSync,
  fstatSync,
  fsyncSync,
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  writeSync,
} from "node:fs";
import { open } from "node:fs/promises";
import path from "node:path";
import { parseKvResult } from "../kv/kv-operation.js";
import {
  type DecodedPartitions,
  decodeSnapshot,
  type KvSnapshot,
  type SnapshotRecord,
  snapshotFromRecords,
} from "../kv/kv-snapshot.js";
import { PARTITION_COUNT } from "../kv/partition-tree.js";
import { checkpointDigest, clientTableDigest } from "../replica/client-table.js";
import type { ClientTableEntry } from "../replica/messages.js";
import { keptCheckpointSeqs } from "./checkpoint-retention.js";
import {
  isSegmentName,
  newSegmentName,
  openSegment,
  type PartitionLocation,
  readPartitionBytes,
  removeSegmentsExcept,
  StoredPartitions,
  segmentDir,
} from "./partition-segments.js";

const MAGIC_INLINE = Buffer.from("SMWCP1\n", "latin1");
const MAGIC = Buffer.from("SMWCP2\n", "latin1");
const ROW_BYTES = 16;
/**
 * A checkpoint is written whole, in one new segment, once the older segments it would point into
 * hold more than this many times its own bytes (plus a mebibyte): partitions kept alive in old
 * segments among many stale ones would otherwise pin any amount of disk.
 */
const COMPACT_AT_RATIO = 2;
/** And once it would point into more segments than this: a reader opens each of them. */
const MAX_SEGMENTS = 64;
export const CHECKPOINT_FILE = "checkpoint.smw";
/** An older checkpoint's file: its sequence number in the name. */
const OLDER_NAME = /^checkpoint\.(\d{1,15})\.smw$/;
const OLDER_TEMPORARY_NAME = /^checkpoint\.\d{1,15}\.smw\.tmp$/;
/** The names earlier releases gave the two older checkpoints: still read, and removed in time. */
const LEGACY_OLDER_NAMES = ["checkpoint.previous.smw", "checkpoint.previous-2.smw"];

export function olderCheckpointFileName(seq: number): string {
  return `checkpoint.${seq}.smw`;
}

/**
 * The older checkpoint files in `dir`, newest first by the number they hold (`seq` undefined,
 * last, for a file of the earlier names whose header cannot be read). A name says nothing
 * trusted: each file is read and checked like the newest.
 */
export function olderCheckpointFiles(
  dir: string,
): Array<{ name: string; seq: number | undefined }> {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const found: Array<{ name: string; seq: number | undefined }> = [];
  for (const name of names) {
    const match = OLDER_NAME.exec(name);
    if (match) found.push({ name, seq: Number(match[1]) });
    else if (LEGACY_OLDER_NAMES.includes(name))
      found.push({ name, seq: storedSeq(path.join(dir, name)) });
  }
  return found.sort((a, b) => (b.seq ?? -1) - (a.seq ?? -1));
}

export interface StoredCheckpoint {
  seq: number;
  digest: string;
  snapshot: KvSnapshot;
  clients: ClientTableEntry[];
}

/** What writing one checkpoint takes: a new segment (if any partition is new), and the file. */
interface CheckpointPlan {
  segment?: { name: string; pieces: Buffer[]; sizeBytes: number };
  file: Buffer[];
  /** The partitions of the new segment, by leaf digest (hex), once it is in place. */
  written: Array<[string, PartitionLocation]>;
}

/**
 * Decides which partitions go into a new segment: those `stored` does not hold (by leaf
 * digest), or all of them when the old segments it would point into are mostly stale.
 */
function planCheckpoint(
  cp: StoredCheckpoint,
  stored: StoredPartitions | undefined,
): CheckpointPlan {
  const present: number[] = [];
  for (let p = 0; p < PARTITION_COUNT; p++)
    if (cp.snapshot.partitionMap(p).size > 0) present.push(p);
  const digestOf = (p: number) => cp.snapshot.leafDigest(p).toString("hex");
  const reused = new Map<number, PartitionLocation>();
  if (stored !== undefined) {
    for (const p of present) {
      const location = stored.byDigest.get(digestOf(p));
      if (location !== undefined) reused.set(p, location);
    }
    let liveBytes = 0;
    for (const location of reused.values()) liveBytes += location.length;
    const pinned = new Set([...reused.values()].map((l) => l.segment));
    let pinnedBytes = 0;
    for (const segment of pinned) pinnedBytes += stored.segmentBytes.get(segment) ?? 0;
    if (pinnedBytes > COMPACT_AT_RATIO * liveBytes + 1024 * 1024 || pinned.size > MAX_SEGMENTS)
      reused.clear();
  }
  const name = newSegmentName(cp.seq);
  const pieces: Buffer[] = [];
  const written: Array<[string, PartitionLocation]> = [];
  const locations = new Map<number, PartitionLocation>();
  let at = 0;
  for (const p of present) {
    const old = reused.get(p);
    if (old !== undefined) {
      locations.set(p, old);
      continue;
    }
    const encoding = cp.snapshot.encodePartition(p);
    const location = { segment: name, offset: at, length: encoding.length };
    pieces.push(encoding);
    written.push([digestOf(p), location]);
    locations.set(p, location);
    at += encoding.length;
  }
  const segments = [...new Set([...locations.values()].map((l) => l.segment))].sort();
  const segmentIndex = new Map(segments.map((name, i) => [name, i]));
  const rows = Buffer.alloc(present.length * ROW_BYTES);
  present.forEach((p, i) => {
    const location = locations.get(p) as PartitionLocation;
    const row = i * ROW_BYTES;
    rows.writeUInt32BE(p, row);
    rows.writeUInt16BE(segmentIndex.get(location.segment) as number, row + 4);
    rows.writeUIntBE(location.offset, row + 6, 6);
    rows.writeUInt32BE(location.length, row + 12);
  });
  const header = Buffer.from(
    JSON.stringify({
      seq: cp.seq,
      digest: cp.digest,
      clients: cp.clients,
      root: cp.snapshot.root().toString("hex"),
      segments,
    }),
    "utf8",
  );
  const length = Buffer.alloc(4);
  length.writeUInt32BE(header.length);
  return {
    ...(pieces.length > 0 ? { segment: { name, pieces, sizeBytes: at } } : {}),
    file: [MAGIC, length, header, rows],
    written,
  };
}

/** After a checkpoint is in place: the segments no kept file names go, and `stored` forgets them. */
function collectSegments(dir: string, stored: StoredPartitions | undefined): void {
  try {
    if (!lstatSync(segmentDir(dir)).isDirectory()) return;
  } catch {
    return;
  }
  const keep = new Set<string>();
  for (const name of [CHECKPOINT_FILE, ...olderCheckpointFiles(dir).map((f) => f.name)]) {
    const named = segmentsNamedBy(path.join(dir, name));
    if (named === undefined) {
      // The newest whose header cannot be read: keep every segment rather than guess. An older
      // one is of no use to anyone (a cold start refuses it); junk a compromised host left at an
      // older name the rule keeps long must not stop collection for as long.
      if (name === CHECKPOINT_FILE) return;
      continue;
    }
    for (const segment of named) keep.add(segment);
  }
  removeSegmentsExcept(dir, keep);
  stored?.keepOnly(keep);
}

/** The segments a checkpoint file names ([] for none, or an inline one); undefined: unreadable. */
function segmentsNamedBy(file: string): string[] | undefined {
  const bytes = readStoredFile(file);
  if (bytes === "none") return [];
  if (!Buffer.isBuffer(bytes)) return undefined;
  if (bytes.subarray(0, MAGIC_INLINE.length).equals(MAGIC_INLINE)) return [];
  const header = readHeader(bytes, MAGIC);
  if ("error" in header) return undefined;
  const segments = header.value.segments;
  return Array.isArray(segments) && segments.every((s) => typeof s === "string" && isSegmentName(s))
    ? (segments as string[])
    : undefined;
}

function readHeader(
  bytes: Buffer,
  magic: Buffer,
): { value: Record<string, unknown>; end: number } | { error: string } {
  if (bytes.length < magic.length + 4 || !bytes.subarray(0, magic.length).equals(magic))
    return { error: "not a checkpoint file (bad magic)" };
  const headerLength = bytes.readUInt32BE(magic.length);
  const start = magic.length + 4;
  if (headerLength > bytes.length - start) return { error: "header runs past the end of the file" };
  try {
    const value = JSON.parse(bytes.subarray(start, start + headerLength).toString("utf8"));
    if (typeof value !== "object" || value === null || Array.isArray(value))
      return { error: "header is not a JSON object" };
    return { value, end: start + headerLength };
  } catch {
    return { error: "header is not JSON" };
  }
}

/**
 * The renames that put a written and synced `checkpoint.smw.tmp` in place, one function per
 * system call, in order (both writers run them; a test stops after each). The one it replaces
 * is kept as `checkpoint.<seq>.smw` if it is older, by a hard link made before the rename, so
 * `checkpoint.smw` exists at every instant (moving it aside first left a moment with none, and a
 * reset then made the replica start with no stored state at all). Then the older ones go that
 * the retention rule no longer keeps, and every one at or above the new number: after a cold
 * start rolled the state back, those are of a state no longer agreed on.
 */
export function installSteps(dir: string, seq: number, intervalSeqs?: number): Array<() => void> {
  const file = path.join(dir, CHECKPOINT_FILE);
  const replaced = storedSeq(file);
  const older = olderCheckpointFiles(dir);
  const steps: Array<() => void> = [];
  // Whatever is at a name that goes, a folder a compromised host left included: one left there
  // must not fail every checkpoint after it.
  const remove = (name: string) =>
    steps.push(() => rmSync(path.join(dir, name), { force: true, recursive: true }));
  // Links a reset interrupted.
  for (const name of safeReaddir(dir)) if (OLDER_TEMPORARY_NAME.test(name)) remove(name);
  const keptName =
    replaced !== undefined && replaced < seq ? olderCheckpointFileName(replaced) : "";
  if (keptName !== "") {
    const to = path.join(dir, keptName);
    const temporary = `${to}.tmp`;
    steps.push(
      () => rmSync(temporary, { force: true, recursive: true }),
      () => linkOrCopy(file, temporary),
      () => clearUnlessFile(to),
      () => renameSync(temporary, to),
    );
  }
  // A rename cannot replace a folder: one a compromised host left at a name failed every write.
  steps.push(
    () => clearUnlessFile(file),
    () => renameSync(`${file}.tmp`, file),
  );
  // With no readable file replaced, nothing says which older ones are of the agreed history.
  if (replaced === undefined) return steps;
  const candidates = definedSeqs(older);
  if (keptName !== "") candidates.push(replaced as number);
  const kept = keptCheckpointSeqs(seq, candidates, intervalSeqs);
  // One file per number: the one just linked, else the first found.
  const held = new Set<number>();
  if (keptName !== "") {
    if (kept.has(replaced as number)) held.add(replaced as number);
    else remove(keptName);
  }
  for (const { name, seq: olderSeq } of older) {
    if (name === keptName) continue;
    if (olderSeq !== undefined && kept.has(olderSeq) && !held.has(olderSeq)) held.add(olderSeq);
    else remove(name);
  }
  return steps;
}

/** Removes what is at `file` if it is there and not a regular file (a folder, a FIFO, a link). */
function clearUnlessFile(file: string): void {
  try {
    if (lstatSync(file).isFile()) return;
  } catch {
    return;
  }
  rmSync(file, { force: true, recursive: true });
}

function definedSeqs(files: ReadonlyArray<{ seq: number | undefined }>): number[] {
  const seqs: number[] = [];
  for (const { seq } of files) if (seq !== undefined) seqs.push(seq);
  return seqs;
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** A hard link; a copy, synced, where the file system has none (FAT). */
function linkOrCopy(from: string, to: string): void {
  try {
    linkSync(from, to);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP") throw error;
    copyFileSync(from, to);
    const fd = openSync(to, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
}

/**
 * Writes `cp` as the newest checkpoint: its new partitions into a segment (synced and in place
 * first), then the file that names them (to a temporary file, synced, renamed into place, the
 * folder synced), then the segments no kept file names removed. `stored`: the partitions on disk
 * it may point at instead of writing them again; it learns the new ones. Without it, every
 * partition is written. `intervalSeqs`: the checkpoint interval, which spaces the older ones kept
 * (`keptCheckpointSeqs`); without it, the two before the newest are.
 */
export function writeCheckpointFile(
  dir: string,
  cp: StoredCheckpoint,
  stored?: StoredPartitions,
  intervalSeqs?: number,
): void {
  // What an earlier write that failed (a full disk) left is removed first.
  collectSegments(dir, stored);
  const plan = planCheckpoint(cp, stored);
  if (plan.segment !== undefined) {
    const folder = segmentFolder(dir, syncFolder);
    const file = path.join(folder, plan.segment.name);
    writeSynced(`${file}.tmp`, plan.segment.pieces);
    renameSync(`${file}.tmp`, file);
    syncFolder(folder);
  }
  writeSynced(path.join(dir, `${CHECKPOINT_FILE}.tmp`), plan.file);
  for (const step of installSteps(dir, cp.seq, intervalSeqs)) step();
  syncFolder(dir);
  learn(stored, plan);
  collectSegments(dir, stored);
}

/**
 * The segments' folder, made if missing (and the state folder synced, so that no checkpoint file
 * is ever durable without it). Anything else in its place (a link a compromised host left, to
 * send writes and removals elsewhere) is removed first.
 */
function segmentFolder(dir: string, sync: (folder: string) => void): string {
  const folder = segmentDir(dir);
  let made = false;
  try {
    if (!lstatSync(folder).isDirectory()) {
      rmSync(folder, { force: true });
      made = true;
    }
  } catch {
    made = true;
  }
  if (made) {
    mkdirSync(folder);
    sync(dir);
  }
  return folder;
}

function learn(stored: StoredPartitions | undefined, plan: CheckpointPlan): void {
  if (stored === undefined || plan.segment === undefined) return;
  for (const [digest, location] of plan.written)
    stored.add(digest, location, plan.segment.sizeBytes);
}

/**
 * Writes a new file, synced. Whatever was at its name is removed first and the file is created
 * afresh ("wx"): writing through a name a compromised host left as a link to another file (a
 * segment) would change that file.
 */
function writeSynced(file: string, parts: readonly Buffer[]): void {
  rmSync(file, { force: true, recursive: true });
  const fd = openSync(file, "wx", 0o600);
  try {
    for (const part of parts) {
      let written = 0;
      while (written < part.length) written += writeSync(fd, part, written);
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function syncFolder(folder: string): void {
  const fd = openSync(folder, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * The same, with the writes and syncs of the segment and the file on node's thread pool: the
 * replica's event loop goes on ordering requests meanwhile. The new partitions are encoded
 * first, on the caller's thread, so later changes to the state cannot reach the disk.
 */
export async function writeCheckpointFileInBackground(
  dir: string,
  cp: StoredCheckpoint,
  stored?: StoredPartitions,
  intervalSeqs?: number,
): Promise<void> {
  collectSegments(dir, stored);
  const plan = planCheckpoint(cp, stored);
  if (plan.segment !== undefined) {
    const folder = segmentFolder(dir, syncFolder);
    const file = path.join(folder, plan.segment.name);
    await writeSyncedInBackground(`${file}.tmp`, plan.segment.pieces);
    renameSync(`${file}.tmp`, file);
    await syncFolderInBackground(folder);
  }
  await writeSyncedInBackground(path.join(dir, `${CHECKPOINT_FILE}.tmp`), plan.file);
  for (const step of installSteps(dir, cp.seq, intervalSeqs)) step();
  await syncFolderInBackground(dir);
  learn(stored, plan);
  collectSegments(dir, stored);
}

async function writeSyncedInBackground(file: string, parts: readonly Buffer[]): Promise<void> {
  rmSync(file, { force: true, recursive: true });
  const handle = await open(file, "wx", 0o600);
  try {
    for (const part of parts) {
      let written = 0;
      while (written < part.length)
        written += (await handle.write(part, written, part.length - written)).bytesWritten;
    }
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function syncFolderInBackground(folder: string): Promise<void> {
  const handle = await open(folder, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Opens a checkpoint file to read: a regular file, not through a link, without blocking. What a
 * compromised host leaves in its place is untrusted: opening a FIFO to read would wait for a
 * writer for ever, and the replica would never start (nor recover from its peers).
 */
function openStoredFile(file: string): number | "none" | { error: string } {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code === "ENOENT" ? "none" : { error: `${file}: ${code ?? "cannot open"}` };
  }
  if (!fstatSync(fd).isFile()) {
    closeSync(fd);
    return { error: `${file}: not a regular file` };
  }
  return fd;
}

function readStoredFile(file: string): Buffer | "none" | { error: string } {
  const fd = openStoredFile(file);
  if (typeof fd !== "number") return fd;
  try {
    return readFileSync(fd);
  } catch (error) {
    return { error: `${file}: ${(error as Error).message}` };
  } finally {
    closeSync(fd);
  }
}

/** The sequence number in a checkpoint file's header, if it has a readable one. */
function storedSeq(file: string): number | undefined {
  const fd = openStoredFile(file);
  if (typeof fd !== "number") return undefined;
  try {
    const head = Buffer.alloc(MAGIC.length + 4 + 64);
    const got = readSync(fd, head, 0, head.length, 0);
    const match = /"seq":(\d+)/.exec(head.subarray(MAGIC.length + 4, got).toString("utf8"));
    return match ? Number(match[1]) : undefined;
  } finally {
    closeSync(fd);
  }
}

export type StoredCheckpointRead =
  | {
      checkpoint: StoredCheckpoint;
      /** Its partitions on disk, checked: what the next checkpoint may point at again. */
      stored: StoredPartitions;
    }
  | { none: true }
  | { error: string };

/** The stored checkpoint, none, or why the file cannot be used. */
export function readCheckpointFile(
  dir: string,
  name = CHECKPOINT_FILE,
  decoded?: DecodedPartitions,
): StoredCheckpointRead {
  const file = path.join(dir, name);
  const bytes = readStoredFile(file);
  if (bytes === "none") return { none: true };
  if (!Buffer.isBuffer(bytes)) return bytes;
  const bad = (why: string) => ({ error: `${file}: ${why}` });
  const inline = bytes.subarray(0, MAGIC_INLINE.length).equals(MAGIC_INLINE);
  const header = readHeader(bytes, inline ? MAGIC_INLINE : MAGIC);
  if ("error" in header) return bad(header.error);
  const { seq, digest: claimed } = header.value;
  if (!Number.isSafeInteger(seq) || (seq as number) < 0)
    return bad("header: seq is not a sequence number");
  if (typeof claimed !== "string" || !/^[0-9a-f]{64}$/.test(claimed))
    return bad("header: digest is not a SHA-256 digest");
  if (!Array.isArray(header.value.clients)) return bad("header: clients is not a list");
  const clients: ClientTableEntry[] = [];
  for (const c of header.value.clients as Array<Record<string, unknown>>) {
    const result = parseKvResult(c?.result);
    if (
      typeof c?.client !== "string" ||
      !Number.isSafeInteger(c.ts) ||
      !Number.isSafeInteger(c.seq) ||
      (c.seq as number) < 0 ||
      (c.batch !== undefined && (typeof c.batch !== "string" || !/^[0-9a-f]{64}$/.test(c.batch))) ||
      (c.op !== undefined && (typeof c.op !== "string" || !/^[0-9a-f]{64}$/.test(c.op))) ||
      "error" in result
    )
      return bad("header: a client entry is malformed");
    clients.push({
      client: c.client,
      ts: c.ts as number,
      result,
      seq: c.seq as number,
      // Absent in a file written before batches had origins: its digest still checks.
      ...(typeof c.batch === "string" ? { batch: c.batch } : {}),
      // Absent in a file written before replies named the request.
      ...(typeof c.op === "string" ? { op: c.op } : {}),
    });
  }
  const read = inline
    ? { snapshot: decodeSnapshot(bytes.subarray(header.end)), locations: [] }
    : readSegmented(dir, header.value, bytes.subarray(header.end), decoded);
  if ("error" in read) return bad(read.error);
  const snapshot = read.snapshot;
  if ("error" in snapshot) return bad(`state: ${snapshot.error}`);
  const digest = checkpointDigest(snapshot.root().toString("hex"), clientTableDigest(clients));
  if (digest !== claimed) return bad("the state does not match the digest in the header");
  const stored = new StoredPartitions();
  for (const [partition, location, segmentBytes] of read.locations)
    stored.add(snapshot.leafDigest(partition).toString("hex"), location, segmentBytes);
  return { checkpoint: { seq: seq as number, digest, snapshot, clients }, stored };
}

/** The state a segmented checkpoint file points at, and where each partition was found. */
function readSegmented(
  dir: string,
  header: Record<string, unknown>,
  rows: Buffer,
  decoded: DecodedPartitions | undefined,
):
  | {
      snapshot: ReturnType<typeof snapshotFromRecords>;
      locations: Array<[number, PartitionLocation, number]>;
    }
  | { error: string } {
  const { root, segments } = header;
  if (typeof root !== "string" || !/^[0-9a-f]{64}$/.test(root))
    return { error: "header: root is not a SHA-256 digest" };
  if (
    !Array.isArray(segments) ||
    segments.length > PARTITION_COUNT ||
    !segments.every((name) => typeof name === "string" && isSegmentName(name))
  )
    return { error: "header: segments is not a list of segment file names" };
  if (rows.length % ROW_BYTES !== 0 || rows.length / ROW_BYTES > PARTITION_COUNT)
    return { error: `${rows.length} bytes of partition rows, not a whole number of rows` };
  const count = rows.length / ROW_BYTES;
  const located: Array<{ index: number; location: PartitionLocation }> = [];
  for (let i = 0; i < count; i++) {
    const at = i * ROW_BYTES;
    const segment = segments[rows.readUInt16BE(at + 4)] as string | undefined;
    if (segment === undefined) return { error: `partition row ${i}: no such segment` };
    located.push({
      index: rows.readUInt32BE(at),
      location: { segment, offset: rows.readUIntBE(at + 6, 6), length: rows.readUInt32BE(at + 12) },
    });
  }
  // One segment open at a time, its rows read in turn; a segment must hold at least the bytes its
  // rows claim (rows repeated to make the reader allocate without end are refused).
  const bySegment = new Map<string, number[]>();
  located.forEach((row, i) => {
    const list = bySegment.get(row.location.segment) ?? [];
    list.push(i);
    bySegment.set(row.location.segment, list);
  });
  const bytes = new Array<Buffer>(count);
  const segmentBytes = new Map<string, number>();
  for (const [segment, list] of bySegment) {
    const opened = openSegment(dir, segment);
    if ("error" in opened) return opened;
    try {
      let claimed = 0;
      for (const i of list)
        claimed += (located[i] as { location: PartitionLocation }).location.length;
      if (claimed > opened.sizeBytes)
        return {
          error: `${opened.file}: its rows claim ${claimed} bytes, the file has ${opened.sizeBytes}`,
        };
      segmentBytes.set(segment, opened.sizeBytes);
      for (const i of list) {
        const read = readPartitionBytes(
          opened,
          (located[i] as { location: PartitionLocation }).location,
        );
        if ("error" in read) return { error: `partition ${located[i]?.index}: ${read.error}` };
        bytes[i] = read;
      }
    } finally {
      closeSync(opened.fd);
    }
  }
  const records: SnapshotRecord[] = located.map((row, i) => ({
    index: row.index,
    encoding: bytes[i] as Buffer,
    at: `row ${i}`,
  }));
  return {
    snapshot: snapshotFromRecords(records, Buffer.from(root, "hex"), decoded),
    locations: located.map((row) => [
      row.index,
      row.location,
      segmentBytes.get(row.location.segment) ?? 0,
    ]),
  };
}
