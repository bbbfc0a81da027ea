/**
 * Shape of the state digest, after the partition tree of Castro & Liskov's
 * BFT-PR: keys hash into PARTITION_COUNT leaves, grouped FANOUT to a meta
 * node, and the root hashes the metas. A replica that fell behind compares
 * digests top-down and fetches only the partitions whose leaf differs; each
 * fetched partition is checked against its leaf digest, then decoded here.
 *
 *   partition encoding = u32 count, then per entry (sorted by key bytes)
 *                        u32 keyLen, key, u32 valueLen, value   (big-endian)
 *   leaf digest        = sha256(partition encoding), for an encoding of at most PIECE_BYTES;
 *                        for a longer one, sha256(PIECES_TAG, then the sha256 of each piece of
 *                        PIECE_BYTES in order, the last what remains)
 *   meta digest i      = sha256(leaf digests 64i .. 64i+63, back to back)
 *   root digest        = sha256(the 64 meta digests, back to back)
 */
import { sha256Bytes } from "../replica/canonical.js";
import { compareKeys } from "./key-order.js";
import { MAX_KEY_BYTES, MAX_VALUE_BYTES } from "./kv-operation.js";

export const PARTITION_COUNT = 4096;
export const FANOUT = 64;
export const META_COUNT = PARTITION_COUNT / FANOUT;
export const DIGEST_BYTES = 32;
/**
 * A partition's encoding longer than this is digested, and fetched by state transfer, in pieces
 * of this length: each piece fetched is checked against its own digest on arrival, so a peer
 * that lies about a piece is found out at that piece, not once a partition of megabytes is in.
 * A partition that holds one value of the largest size (1 MiB, and its key) fits in one piece:
 * at 1 MiB, each such partition took two round trips, the second for a few bytes.
 */
export const PIECE_BYTES = 2 * 1024 * 1024;
/**
 * Begins the input of a pieced leaf digest. No encoding begins so (its first four bytes are an
 * entry count, and 2^32 - 1 entries cannot fit in a partition), so a list of piece digests never
 * passes for a partition's bytes, nor the reverse.
 */
const PIECES_TAG = Buffer.concat([Buffer.alloc(4, 0xff), Buffer.from("smw-pieces-1\n", "latin1")]);

export function sha256(bytes: Uint8Array): Buffer {
  return sha256Bytes(bytes);
}

/** First 4 bytes (big-endian) of sha256(UTF-8 key), mod PARTITION_COUNT. */
export function partitionOf(key: string): number {
  return sha256Bytes(key).readUInt32BE(0) % PARTITION_COUNT;
}

/** The meta node above a partition. */
export function metaOf(partition: number): number {
  return Math.floor(partition / FANOUT);
}

/**
 * Canonical bytes of one partition. Entries are sorted here if they are not
 * already; keys and values must be well-formed strings (KvStore only holds
 * such), or the bytes would not decode back to them.
 */
export function encodePartition(entries: ReadonlyArray<readonly [string, string]>): Buffer {
  const plan = planEncoding(entries);
  // Every byte is written, so the buffer need not be zeroed first.
  return writeEncoding(plan, Buffer.allocUnsafe(plan.totalBytes));
}

/** encodePartition(entries).length, without encoding them. */
export function encodedPartitionBytes(entries: ReadonlyArray<readonly [string, string]>): number {
  return planEncoding(entries).totalBytes;
}

/**
 * encodePartition(entries).subarray(from, to), writing only the entries that reach into it: a
 * piece of 2 MiB of a partition of 32 MiB costs about a piece's worth of work, not the whole.
 */
export function encodePartitionSlice(
  entries: ReadonlyArray<readonly [string, string]>,
  from: number,
  to: number,
): Buffer {
  const plan = planEncoding(entries);
  const end = Math.min(to, plan.totalBytes);
  const out = Buffer.allocUnsafe(Math.max(0, end - from));
  if (out.length === 0) return out;
  // Each field written at its place in the whole encoding, clipped to [from, end).
  const put = (field: Buffer, at: number) => {
    const a = Math.max(at, from);
    const b = Math.min(at + field.length, end);
    if (a < b) field.copy(out, a - from, a - at, b - at);
  };
  const u32 = (n: number) => {
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32BE(n, 0);
    return b;
  };
  put(u32(plan.sorted.length), 0);
  let at = 4;
  for (let i = 0; i < plan.sorted.length && at < end; i++) {
    const keyBytes = plan.lengths[2 * i] as number;
    const valueBytes = plan.lengths[2 * i + 1] as number;
    const entryEnd = at + 8 + keyBytes + valueBytes;
    if (entryEnd > from) {
      const [key, value] = entryAt(plan.sorted, i);
      put(u32(keyBytes), at);
      put(Buffer.from(key, "utf8"), at + 4);
      put(u32(valueBytes), at + 4 + keyBytes);
      put(Buffer.from(value, "utf8"), at + 8 + keyBytes);
    }
    at = entryEnd;
  }
  return out;
}

/**
 * leafDigest(encodePartition(entries)), but encoded into a reused scratch
 * buffer: rehashing a large state then allocates no buffer per partition
 * (allocation and first-touch page faults cost more than the hashing).
 */
export function partitionDigest(entries: ReadonlyArray<readonly [string, string]>): Buffer {
  const plan = planEncoding(entries);
  if (plan.totalBytes > SCRATCH_MAX_BYTES)
    return leafDigest(writeEncoding(plan, Buffer.allocUnsafe(plan.totalBytes)));
  if (scratch.length < plan.totalBytes)
    scratch = Buffer.allocUnsafe(
      Math.min(SCRATCH_MAX_BYTES, Math.max(plan.totalBytes, 2 * scratch.length)),
    );
  return leafDigest(writeEncoding(plan, scratch));
}

// Large enough for most partitions; a bigger one gets its own buffer, so a
// single huge partition does not pin memory here for good.
const SCRATCH_MAX_BYTES = 4 << 20;
let scratch = Buffer.allocUnsafe(64 << 10);

interface EncodingPlan {
  sorted: ReadonlyArray<readonly [string, string]>;
  /** UTF-8 bytes of key i at 2i, of value i at 2i + 1. */
  lengths: number[];
  totalBytes: number;
}

function planEncoding(entries: ReadonlyArray<readonly [string, string]>): EncodingPlan {
  let sorted = entries;
  for (let i = 1; i < entries.length; i++) {
    if (compareKeys(entryAt(entries, i - 1)[0], entryAt(entries, i)[0]) >= 0) {
      sorted = [...entries].sort((a, b) => compareKeys(a[0], b[0]));
      break;
    }
  }
  const lengths = new Array<number>(sorted.length * 2);
  let totalBytes = 4;
  for (let i = 0; i < sorted.length; i++) {
    const [key, value] = entryAt(sorted, i);
    if (i > 0 && entryAt(sorted, i - 1)[0] === key)
      throw new RangeError(`duplicate key in partition: ${JSON.stringify(key)}`);
    const keyBytes = Buffer.byteLength(key, "utf8");
    const valueBytes = Buffer.byteLength(value, "utf8");
    lengths[2 * i] = keyBytes;
    lengths[2 * i + 1] = valueBytes;
    totalBytes += 8 + keyBytes + valueBytes;
  }
  return { sorted, lengths, totalBytes };
}

/** Writes the encoding at the start of out; returns the part of out written. */
function writeEncoding({ sorted, lengths, totalBytes }: EncodingPlan, out: Buffer): Buffer {
  let offset = out.writeUInt32BE(sorted.length, 0);
  for (let i = 0; i < sorted.length; i++) {
    const [key, value] = entryAt(sorted, i);
    offset = out.writeUInt32BE(lengths[2 * i] as number, offset);
    offset += out.write(key, offset, "utf8");
    offset = out.writeUInt32BE(lengths[2 * i + 1] as number, offset);
    offset += out.write(value, offset, "utf8");
  }
  return out.subarray(0, totalBytes);
}

// fatal: invalid UTF-8 is an error, not U+FFFD; ignoreBOM: a leading U+FEFF is part of the key.
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Decodes bytes received from another replica as partition `partition`.
 * Refuses, with a message, anything but the canonical encoding of entries
 * that belong there: bad lengths, truncation, trailing bytes, invalid UTF-8,
 * keys out of order or repeated, keys that hash to another partition.
 */
export function decodePartition(
  bytes: Uint8Array,
  partition: number,
): Array<[string, string]> | { error: string } {
  if (!Number.isInteger(partition) || partition < 0 || partition >= PARTITION_COUNT)
    return { error: `partition index ${partition} not in 0..${PARTITION_COUNT - 1}` };
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < 4) return { error: `${buf.length} bytes, too short for the entry count` };
  const count = buf.readUInt32BE(0);
  // Each entry takes at least 9 bytes (two lengths, a 1-byte key): refuse an
  // impossible count before looping on it.
  if (count > (buf.length - 4) / 9)
    return { error: `${count} entries cannot fit in ${buf.length} bytes` };
  const entries: Array<[string, string]> = [];
  let offset = 4;
  let previousKey: Buffer | null = null;
  for (let i = 0; i < count; i++) {
    const keyField = readField(buf, offset, 1, MAX_KEY_BYTES);
    if ("error" in keyField) return { error: `entry ${i} key: ${keyField.error}` };
    const valueField = readField(buf, keyField.end, 0, MAX_VALUE_BYTES);
    if ("error" in valueField) return { error: `entry ${i} value: ${valueField.error}` };
    if (previousKey !== null) {
      const order = Buffer.compare(previousKey, keyField.bytes);
      if (order === 0) return { error: `entry ${i}: duplicate key` };
      if (order > 0) return { error: `entry ${i}: key sorts before the previous one` };
    }
    const key = decodeUtf8(keyField.bytes);
    if (key === null) return { error: `entry ${i} key: not valid UTF-8` };
    const value = decodeUtf8(valueField.bytes);
    if (value === null) return { error: `entry ${i} value: not valid UTF-8` };
    const home = partitionOf(key);
    if (home !== partition)
      return { error: `entry ${i}: key belongs to partition ${home}, not ${partition}` };
    entries.push([key, value]);
    previousKey = keyField.bytes;
    offset = valueField.end;
  }
  if (offset !== buf.length)
    return { error: `${buf.length - offset} trailing bytes after ${count} entries` };
  return entries;
}

/** A partition's leaf digest, from its canonical encoding (pieced when longer than a piece). */
export function leafDigest(encodedPartition: Uint8Array): Buffer {
  if (encodedPartition.length <= PIECE_BYTES) return sha256(encodedPartition);
  return leafOfPieces(pieceDigests(encodedPartition));
}

/** The digest of each piece of PIECE_BYTES of an encoding, in order (the last: what remains). */
export function pieceDigests(encodedPartition: Uint8Array): Buffer[] {
  const digests: Buffer[] = [];
  for (let at = 0; at < encodedPartition.length; at += PIECE_BYTES)
    digests.push(sha256(encodedPartition.subarray(at, at + PIECE_BYTES)));
  return digests;
}

/** The leaf digest of a partition longer than a piece, from its pieces' digests. */
export function leafOfPieces(digests: readonly Uint8Array[]): Buffer {
  return sha256(Buffer.concat([PIECES_TAG, ...digests]));
}

/** sha256 of the FANOUT leaf digests under one meta node, in order. */
export function metaDigest(leafDigests: readonly Uint8Array[]): Buffer {
  return sha256(concatDigests(leafDigests, FANOUT, "leaf"));
}

/** sha256 of the META_COUNT meta digests, in order. */
export function rootDigest(metaDigests: readonly Uint8Array[]): Buffer {
  return sha256(concatDigests(metaDigests, META_COUNT, "meta"));
}

/** Meta digests, back to back, of PARTITION_COUNT leaf digests stored back to back. */
export function metaDigestsOf(leafDigests: Buffer): Buffer {
  if (leafDigests.length !== PARTITION_COUNT * DIGEST_BYTES)
    throw new RangeError(
      `${leafDigests.length} bytes of leaf digests, expected ${PARTITION_COUNT * DIGEST_BYTES}`,
    );
  const metas = Buffer.alloc(META_COUNT * DIGEST_BYTES);
  for (let m = 0; m < META_COUNT; m++) metaDigestAt(leafDigests, m).copy(metas, m * DIGEST_BYTES);
  return metas;
}

/** Digest of meta node m from PARTITION_COUNT leaf digests stored back to back. */
export function metaDigestAt(leafDigests: Buffer, meta: number): Buffer {
  const span = FANOUT * DIGEST_BYTES;
  return sha256(leafDigests.subarray(meta * span, (meta + 1) * span));
}

/** Entries of a partition map, sorted by key bytes. */
export function sortedEntries(map: ReadonlyMap<string, string>): Array<[string, string]> {
  return [...map].sort((a, b) => compareKeys(a[0], b[0]));
}

export const EMPTY_PARTITION_DIGEST: Buffer = leafDigest(encodePartition([]));
export const EMPTY_META_DIGEST: Buffer = metaDigest(
  new Array<Buffer>(FANOUT).fill(EMPTY_PARTITION_DIGEST),
);
export const EMPTY_ROOT_DIGEST: Buffer = rootDigest(
  new Array<Buffer>(META_COUNT).fill(EMPTY_META_DIGEST),
);

function concatDigests(digests: readonly Uint8Array[], count: number, what: string): Buffer {
  if (digests.length !== count)
    throw new RangeError(`${digests.length} ${what} digests, expected ${count}`);
  for (const d of digests) {
    if (d.length !== DIGEST_BYTES)
      throw new RangeError(`a ${what} digest of ${d.length} bytes, expected ${DIGEST_BYTES}`);
  }
  return Buffer.concat(digests);
}

function readField(
  buf: Buffer,
  offset: number,
  minBytes: number,
  maxBytes: number,
): { bytes: Buffer; end: number } | { error: string } {
  if (offset + 4 > buf.length) return { error: `length field runs past the end at byte ${offset}` };
  const length = buf.readUInt32BE(offset);
  if (length < minBytes || length > maxBytes)
    return { error: `${length} bytes, expected ${minBytes}..${maxBytes}` };
  const start = offset + 4;
  if (start + length > buf.length)
    return { error: `${length} bytes at byte ${start} run past the end (${buf.length})` };
  return { bytes: buf.subarray(start, start + length), end: start + length };
}

function decodeUtf8(bytes: Uint8Array): string | null {
  try {
    return utf8.decode(bytes);
  } catch {
    return null;
  }
}

function entryAt<T>(entries: ReadonlyArray<T>, i: number): T {
  return entries[i] as T;
}
