/**
 * Where a replica's stored checkpoints keep their partitions: segment files in `partitions/`
 * beside the checkpoint files. A checkpoint file lists, per non-empty partition, the segment,
 * offset and length of its bytes; a new checkpoint writes one segment with the partitions that
 * changed since the last one written (by leaf digest) and points at the older segments for the
 * rest, so a checkpoint costs what changed, not the whole state (issue: checkpoints written
 * incrementally). A segment is written once, synced and renamed into place before any checkpoint
 * file names it, and never changed; one that no kept checkpoint file names is removed after the
 * next checkpoint is in place.
 *
 * Nothing here is trusted on reading: a checkpoint is rebuilt from the bytes its file points at
 * and checked against its root (`decodeSnapshot`), so a segment changed on disk makes the
 * checkpoint unusable, never a different state.
 */
import { randomBytes } from "node:crypto";
import { closeSync, constants, fstatSync, openSync, readdirSync, readSync, rmSync } from "node:fs";
import path from "node:path";

export const SEGMENT_DIR = "partitions";
const SEGMENT_NAME = /^[0-9]{1,16}-[0-9a-f]{8}\.seg$/;

/** Where one partition's bytes are. */
export interface PartitionLocation {
  segment: string;
  offset: number;
  length: number;
}

/**
 * Partitions on disk that this process wrote, or read back and checked, by leaf digest (hex):
 * only those are pointed at again. One a compromised host changed while the replica was down
 * fails the check at start and is not among them.
 */
export class StoredPartitions {
  readonly byDigest = new Map<string, PartitionLocation>();
  /** Size of every segment the locations point into. */
  readonly segmentBytes = new Map<string, number>();

  add(digest: string, location: PartitionLocation, segmentBytes: number): void {
    this.byDigest.set(digest, location);
    this.segmentBytes.set(location.segment, segmentBytes);
  }

  /** Forgets the locations in segments that are gone. */
  keepOnly(segments: ReadonlySet<string>): void {
    for (const [digest, location] of this.byDigest)
      if (!segments.has(location.segment)) this.byDigest.delete(digest);
    for (const segment of this.segmentBytes.keys())
      if (!segments.has(segment)) this.segmentBytes.delete(segment);
  }
}

export function segmentDir(dir: string): string {
  return path.join(dir, SEGMENT_DIR);
}

/** A new segment's name: the checkpoint's sequence number, and a random part (a seq may recur). */
export function newSegmentName(seq: number): string {
  return `${seq}-${randomBytes(4).toString("hex")}.seg`;
}

export function isSegmentName(name: string): boolean {
  return SEGMENT_NAME.test(name);
}

/** A segment open for reading. */
export interface OpenSegment {
  file: string;
  fd: number;
  sizeBytes: number;
}

/**
 * Opens a segment to read, or says why it cannot: it must be a regular file of its own (no link
 * followed, no second name: a file a compromised host linked there could be changed through its
 * other name), and opening it must not block (a FIFO).
 */
export function openSegment(dir: string, name: string): OpenSegment | { error: string } {
  const file = path.join(segmentDir(dir), name);
  if (!isSegmentName(name))
    return { error: `names a segment "${name}" that is no segment file name` };
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    return { error: `${file}: ${(error as NodeJS.ErrnoException).code ?? "cannot open"}` };
  }
  const stat = fstatSync(fd);
  if (!stat.isFile() || stat.nlink !== 1) {
    closeSync(fd);
    return { error: `${file}: not a regular file of its own` };
  }
  return { file, fd, sizeBytes: stat.size };
}

/** Reads one partition's bytes from an open segment, checked against its size first. */
export function readPartitionBytes(
  segment: OpenSegment,
  location: PartitionLocation,
): Buffer | { error: string } {
  if (location.offset + location.length > segment.sizeBytes)
    return {
      error: `${segment.file}: bytes ${location.offset} to ${location.offset + location.length} asked, the file has ${segment.sizeBytes}`,
    };
  const bytes = Buffer.allocUnsafe(location.length);
  let got = 0;
  try {
    while (got < location.length) {
      const n = readSync(segment.fd, bytes, got, location.length - got, location.offset + got);
      if (n === 0)
        return { error: `${segment.file}: ends before byte ${location.offset + location.length}` };
      got += n;
    }
  } catch (error) {
    return { error: `${segment.file}: ${(error as NodeJS.ErrnoException).code ?? "read error"}` };
  }
  return bytes;
}

/**
 * Removes every segment (and leftover temporary file) in `partitions/` that no name in `keep`
 * matches. Run only once the checkpoint files that name the kept ones are in place.
 */
export function removeSegmentsExcept(dir: string, keep: ReadonlySet<string>): void {
  let names: string[];
  try {
    names = readdirSync(segmentDir(dir));
  } catch {
    return;
  }
  for (const name of names) {
    // Only what this module names: anything else there is not its to remove.
    const segment = name.endsWith(".tmp") ? name.slice(0, -4) : name;
    if (!isSegmentName(segment) || keep.has(name)) continue;
    try {
      rmSync(path.join(segmentDir(dir), name), { force: true });
    } catch {
      // Not removable (a folder in its place): left, and named by no checkpoint.
    }
  }
}
