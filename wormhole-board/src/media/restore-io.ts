/**
 * The I/O of a restore, in three steps that each run as one job on a media worker thread
 * (`media-worker.ts`), so that the board's event loop (its timers, its heartbeats) never waits
 * for a disk: a whole image rewritten on an SD card takes minutes. The main thread keeps the
 * write-protect line and lowers it only between the first step and the second.
 *
 * 1. check-golden: every golden chunk needed verifies against the manifest (nothing written).
 * 2. write: each chunk's differing pages rewritten (each golden chunk verified again as it is
 *    read: the copy could change between the steps), then fdatasync.
 * 3. read-back: each rewritten chunk read and verified (the medium protected again).
 */
import { closeSync, fdatasyncSync, writeSync } from "node:fs";
import { type ChunkAlgorithm, digestChunk } from "./chunk-digest.js";
import { openImage, PAGE_SIZE_BYTES, readFully } from "./image-file.js";
import { MediaError } from "./media-error.js";

export interface RestoreJobData {
  livePath: string;
  goldenPath: string;
  sizeBytes: number;
  chunkSizeBytes: number;
  algorithm: ChunkAlgorithm;
  /** The manifest's digest of each chunk to restore, by index. */
  chunks: Array<{ index: number; digest: string }>;
}

export interface RestoreJob {
  kind: "restore-check-golden" | "restore-write" | "restore-read-back";
  restore: RestoreJobData;
}

export type RestoreStepResult =
  | { bytesRead: number }
  | { bytesRead: number; bytesWritten: number; pagesWritten: number }
  | { bytesRead: number; chunksRestored: number; stillBad: number[] };

/** The restore itself failed (a write, fsync): not bad input. */
export class RestoreFailure extends Error {}

export interface RestoreBuffers {
  golden: Buffer;
  live: Buffer;
}

export function runRestoreStep(
  job: RestoreJob,
  buffers: RestoreBuffers,
  onProgress: (done: number, total: number) => void,
): RestoreStepResult {
  const data = job.restore;
  const goldenChunk = buffers.golden.subarray(0, data.chunkSizeBytes);
  const liveChunk = buffers.live.subarray(0, data.chunkSizeBytes);
  const counts = { bytesRead: 0, bytesWritten: 0, pagesWritten: 0 };
  const chunkAt = (index: number) => {
    const position = index * data.chunkSizeBytes;
    return { position, length: Math.min(data.chunkSizeBytes, data.sizeBytes - position) };
  };
  const readVerifiedGolden = (golden: number, index: number, digest: string) => {
    const { position, length } = chunkAt(index);
    readFully(golden, goldenChunk, length, position, data.goldenPath);
    counts.bytesRead += length;
    if (digestChunk(data.algorithm, goldenChunk.subarray(0, length)).toString("hex") !== digest) {
      throw new MediaError(
        `${data.goldenPath}: chunk ${index} of the golden image does not match its manifest; the golden copy is corrupted, nothing was written`,
      );
    }
  };

  if (job.kind === "restore-read-back") {
    const live = openImage(data.livePath, "r", "live image").fd;
    try {
      let chunksRestored = 0;
      const stillBad: number[] = [];
      for (const { index, digest } of data.chunks) {
        const { position, length } = chunkAt(index);
        readFully(live, liveChunk, length, position, data.livePath);
        counts.bytesRead += length;
        if (digestChunk(data.algorithm, liveChunk.subarray(0, length)).toString("hex") === digest)
          chunksRestored++;
        else stillBad.push(index);
      }
      return { bytesRead: counts.bytesRead, chunksRestored, stillBad };
    } finally {
      closeSync(live);
    }
  }

  const golden = openImage(data.goldenPath, "r", "golden image").fd;
  try {
    if (job.kind === "restore-check-golden") {
      for (const { index, digest } of data.chunks) readVerifiedGolden(golden, index, digest);
      return { bytesRead: counts.bytesRead };
    }
    const live = openImage(data.livePath, "r+", "live image").fd;
    try {
      let done = 0;
      for (const { index, digest } of data.chunks) {
        readVerifiedGolden(golden, index, digest);
        const { position, length } = chunkAt(index);
        readFully(live, liveChunk, length, position, data.livePath);
        counts.bytesRead += length;
        writeDifferingPages(live, goldenChunk, liveChunk, length, position, data.livePath, counts);
        onProgress(++done, data.chunks.length);
      }
      try {
        fdatasyncSync(live);
      } catch (error) {
        throw new RestoreFailure(
          `${data.livePath}: fsync failed (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
        );
      }
      return { ...counts };
    } finally {
      closeSync(live);
    }
  } finally {
    closeSync(golden);
  }
}

/** Writes the runs of 4 KiB pages where the live chunk differs from the golden one. */
function writeDifferingPages(
  fd: number,
  goldenChunk: Buffer,
  liveChunk: Buffer,
  length: number,
  position: number,
  livePath: string,
  counts: { bytesWritten: number; pagesWritten: number },
): void {
  let runStart = -1;
  const flush = (end: number) => {
    if (runStart < 0) return;
    let written = 0;
    while (written < end - runStart) {
      try {
        written += writeSync(
          fd,
          goldenChunk,
          runStart + written,
          end - runStart - written,
          position + runStart + written,
        );
      } catch (error) {
        throw new RestoreFailure(
          `${livePath}: cannot write at byte ${position + runStart + written} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
        );
      }
    }
    counts.bytesWritten += end - runStart;
    counts.pagesWritten += Math.ceil((end - runStart) / PAGE_SIZE_BYTES);
    runStart = -1;
  };
  for (let page = 0; page < length; page += PAGE_SIZE_BYTES) {
    const end = Math.min(length, page + PAGE_SIZE_BYTES);
    const differs = goldenChunk.compare(liveChunk, page, end, page, end) !== 0;
    if (differs && runStart < 0) runStart = page;
    if (!differs) flush(page);
  }
  flush(length);
}
