/**
 * A frozen copy of the key-value state with its partition tree: what a
 * checkpoint holds, what state transfer serves partitions from, and the
 * checkpoint file format.
 *
 * A snapshot shares its partition maps with the store it came from
 * (KvStore clones a partition before writing to it once a snapshot has
 * seen it), so nothing here may write to them. Digests handed out are
 * copies, since a Buffer is mutable.
 *
 * File format:
 *   "SMWKV1\n"
 *   per non-empty partition, by increasing index: u32 index, u32 length, encoding
 *   the 32-byte root digest
 */
import {
  DIGEST_BYTES,
  decodePartition,
  EMPTY_PARTITION_DIGEST,
  encodedPartitionBytes,
  encodePartition,
  encodePartitionSlice,
  FANOUT,
  leafDigest,
  META_COUNT,
  metaDigestsOf,
  PARTITION_COUNT,
  pieceDigests,
  sha256,
  sortedEntries,
} from "./partition-tree.js";

export interface SnapshotParts {
  /** PARTITION_COUNT maps; the snapshot takes them over, nobody may write to them after. */
  partitions: ReadonlyArray<ReadonlyMap<string, string>>;
  /** PARTITION_COUNT leaf digests back to back (the snapshot keeps this buffer). */
  leafDigests: Buffer;
  /** META_COUNT meta digests back to back (the snapshot keeps this buffer). */
  metaDigests: Buffer;
  root: Buffer;
  sizeBytes: number;
  entryCount: number;
}

export class KvSnapshot {
  readonly #parts: SnapshotParts;
  /** Piece digests of partitions longer than a piece, as asked for (the snapshot never changes). */
  readonly #pieceDigests = new Map<number, Buffer[]>();

  /** Built by KvStore.snapshot() and decodeSnapshot(), which vouch that the digests match the maps. */
  constructor(parts: SnapshotParts) {
    if (parts.partitions.length !== PARTITION_COUNT)
      throw new RangeError(`${parts.partitions.length} partitions, expected ${PARTITION_COUNT}`);
    if (parts.leafDigests.length !== PARTITION_COUNT * DIGEST_BYTES)
      throw new RangeError("leaf digests: wrong length");
    if (parts.metaDigests.length !== META_COUNT * DIGEST_BYTES)
      throw new RangeError("meta digests: wrong length");
    if (parts.root.length !== DIGEST_BYTES) throw new RangeError("root digest: wrong length");
    this.#parts = { ...parts, partitions: parts.partitions.slice() };
  }

  root(): Buffer {
    return Buffer.from(this.#parts.root);
  }

  /** The META_COUNT (64) meta digests. */
  metaDigests(): Buffer[] {
    return digestsAt(this.#parts.metaDigests, 0, META_COUNT);
  }

  /** The FANOUT (64) leaf digests under one meta node. */
  leafDigests(meta: number): Buffer[] {
    checkIndex(meta, META_COUNT, "meta");
    return digestsAt(this.#parts.leafDigests, meta * FANOUT, FANOUT);
  }

  leafDigest(partition: number): Buffer {
    checkIndex(partition, PARTITION_COUNT, "partition");
    return digestsAt(this.#parts.leafDigests, partition, 1)[0] as Buffer;
  }

  /** Entries of one partition, sorted by key bytes. */
  partitionEntries(partition: number): Array<[string, string]> {
    return sortedEntries(this.partitionMap(partition));
  }

  /** Canonical bytes of one partition, as served to a replica fetching it. */
  encodePartition(partition: number): Buffer {
    return encodePartition(this.partitionEntries(partition));
  }

  /** The length of one partition's encoding, without encoding it. */
  partitionBytes(partition: number): number {
    return encodedPartitionBytes(this.partitionEntries(partition));
  }

  /** Bytes [from, to) of one partition's encoding, made without encoding the rest. */
  encodePartitionSlice(partition: number, from: number, to: number): Buffer {
    return encodePartitionSlice(this.partitionEntries(partition), from, to);
  }

  /**
   * The digests of a partition's pieces (`pieceDigests`), for one longer than a piece: made once
   * per snapshot and partition, however often a transfer asks for its first piece.
   */
  partitionPieceDigests(partition: number): Buffer[] {
    let digests = this.#pieceDigests.get(partition);
    if (digests === undefined) {
      digests = pieceDigests(this.encodePartition(partition));
      this.#pieceDigests.set(partition, digests);
    }
    return digests;
  }

  /** The shared map of one partition; for KvStore.fromSnapshot, read only. */
  partitionMap(partition: number): ReadonlyMap<string, string> {
    checkIndex(partition, PARTITION_COUNT, "partition");
    return this.#parts.partitions[partition] as ReadonlyMap<string, string>;
  }

  /** Sum of key and value UTF-8 bytes. */
  get sizeBytes(): number {
    return this.#parts.sizeBytes;
  }

  get entryCount(): number {
    return this.#parts.entryCount;
  }
}

// One map for every empty partition of decoded snapshots: nobody writes to a
// snapshot's maps (a store built from it clones before writing).
const NO_ENTRIES: ReadonlyMap<string, string> = new Map();

const MAGIC = Buffer.from("SMWKV1\n", "latin1");
const RECORD_HEADER_BYTES = 8;

export function encodeSnapshot(s: KvSnapshot): Buffer {
  const pieces: Buffer[] = [MAGIC];
  for (let p = 0; p < PARTITION_COUNT; p++) {
    if (s.partitionMap(p).size === 0) continue;
    const encoding = s.encodePartition(p);
    const header = Buffer.allocUnsafe(RECORD_HEADER_BYTES);
    header.writeUInt32BE(p, 0);
    header.writeUInt32BE(encoding.length, 4);
    pieces.push(header, encoding);
  }
  pieces.push(s.root());
  return Buffer.concat(pieces);
}

/**
 * Reads a checkpoint file, checking everything: the header, each record's
 * bounds and order, each partition's encoding (decodePartition), and that the
 * root computed from the contents equals the root stored at the end. Never
 * throws on bad input.
 */
export function decodeSnapshot(bytes: Uint8Array): KvSnapshot | { error: string } {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < MAGIC.length + DIGEST_BYTES)
    return { error: `${buf.length} bytes, too short for a snapshot` };
  if (!buf.subarray(0, MAGIC.length).equals(MAGIC)) return { error: "not a snapshot: bad magic" };
  const end = buf.length - DIGEST_BYTES;
  const records: SnapshotRecord[] = [];
  let offset = MAGIC.length;
  while (offset < end) {
    if (offset + RECORD_HEADER_BYTES > end)
      return { error: `record header at byte ${offset} runs into the root digest` };
    const index = buf.readUInt32BE(offset);
    const length = buf.readUInt32BE(offset + 4);
    const start = offset + RECORD_HEADER_BYTES;
    if (length > end - start)
      return { error: `partition ${index}: ${length} bytes run into the root digest` };
    records.push({ index, encoding: buf.subarray(start, start + length), at: `byte ${offset}` });
    offset = start + length;
  }
  return snapshotFromRecords(records, buf.subarray(end));
}

/** One partition's canonical bytes, and where they were found (for errors). */
export interface SnapshotRecord {
  index: number;
  encoding: Uint8Array;
  at: string;
}

/**
 * A snapshot from its non-empty partitions' bytes, by increasing index, checking each
 * partition's encoding (decodePartition) and that the root computed from them equals `root`.
 * Never throws on bad input. The checkpoint files that keep partitions in segments
 * (`storage/partition-segments.ts`) read through this too.
 */
/**
 * Partitions decoded while reading several checkpoints, by index and the digest of their bytes:
 * the same bytes give the same entries, so the checkpoints a cold start reads share one map for
 * each partition that did not change between them (snapshots never write to their maps), and
 * their memory is that of the distinct partitions, not of every checkpoint whole.
 */
export type DecodedPartitions = Map<string, ReadonlyMap<string, string>>;

export function snapshotFromRecords(
  records: readonly SnapshotRecord[],
  storedRoot: Uint8Array,
  decoded?: DecodedPartitions,
): KvSnapshot | { error: string } {
  const partitions = new Array<ReadonlyMap<string, string>>(PARTITION_COUNT);
  // Every leaf starts as the empty partition's; records overwrite theirs.
  const leafDigests = Buffer.alloc(PARTITION_COUNT * DIGEST_BYTES, EMPTY_PARTITION_DIGEST);
  let sizeBytes = 0;
  let entryCount = 0;
  let previous = -1;
  for (const { index, encoding, at } of records) {
    if (!Number.isInteger(index) || index < 0 || index >= PARTITION_COUNT)
      return { error: `record at ${at}: partition ${index} not below ${PARTITION_COUNT}` };
    if (index <= previous)
      return { error: `record at ${at}: partition ${index} not after ${previous}` };
    // decodePartition accepts only canonical bytes, so they are the leaf's input as they stand.
    const leaf = leafDigest(encoding);
    const key = decoded === undefined ? "" : `${index}:${leaf.toString("base64")}`;
    let map = decoded?.get(key);
    if (map === undefined) {
      const entries = decodePartition(encoding, index);
      if ("error" in entries) return { error: `partition ${index}: ${entries.error}` };
      if (entries.length === 0)
        return { error: `partition ${index}: empty, yet empty partitions are left out` };
      map = new Map(entries);
      decoded?.set(key, map);
    }
    partitions[index] = map;
    leaf.copy(leafDigests, index * DIGEST_BYTES);
    entryCount += map.size;
    // The encoding is a 4-byte count, then per entry two 4-byte lengths around key and value.
    sizeBytes += encoding.length - 4 - 8 * map.size;
    previous = index;
  }
  for (let p = 0; p < PARTITION_COUNT; p++) partitions[p] ??= NO_ENTRIES;
  const metaDigests = metaDigestsOf(leafDigests);
  const root = sha256(metaDigests);
  const stored = Buffer.from(storedRoot.buffer, storedRoot.byteOffset, storedRoot.byteLength);
  if (!root.equals(stored))
    return {
      error: `root digest mismatch: stored ${stored.toString("hex")}, contents give ${root.toString("hex")}`,
    };
  return new KvSnapshot({ partitions, leafDigests, metaDigests, root, sizeBytes, entryCount });
}

function digestsAt(all: Buffer, first: number, count: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = first; i < first + count; i++) {
    out.push(Buffer.from(all.subarray(i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES)));
  }
  return out;
}

function checkIndex(i: number, count: number, what: string): void {
  if (!Number.isInteger(i) || i < 0 || i >= count)
    throw new RangeError(`${what} index ${i} not in 0..${count - 1}`);
}
