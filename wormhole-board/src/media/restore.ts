/**
 * Restoring a live image from its golden copy, writing as little as possible:
 * only corrupted chunks are touched, and within each only the 4 KiB pages that
 * differ from the verified golden chunk are rewritten (flash and SD cards wear
 * with writes, and most of a restore's time on them is writing). Every golden
 * chunk is checked against the manifest before the first write, so a bad
 * golden copy leaves the live image untouched. After fsync, every rewritten
 * chunk is read back and verified. The page-wise writes are idempotent: a
 * restore killed at any instant leaves chunks the next verify reports and the
 * next restore completes. The I/O runs on the media worker threads (`restore-io.ts`): the
 * board's timers never wait for a disk.
 */
import { closeSync } from "node:fs";
import { openImage } from "./image-file.js";
import type { Manifest } from "./manifest.js";
import { MediaError } from "./media-error.js";
import { MediaWorkers } from "./media-workers.js";
import {
  RestoreFailure,
  type RestoreJob,
  type RestoreJobData,
  type RestoreStepResult,
} from "./restore-io.js";
import { type VerifyOptions, verifyImage } from "./verify.js";

export { PAGE_SIZE_BYTES } from "./image-file.js";

/** The write-protect switch of the live medium: lowered only for the writes. */
export interface WriteProtect {
  /** Makes the medium writable; throws if it does not read back as writable. */
  lower(): void;
  /** Protects the medium again; throws if it does not read back as protected. */
  raise(): void;
}

export interface RestoreOptions extends VerifyOptions {
  livePath: string;
  goldenPath: string;
  manifest: Manifest;
  writeProtect?: WriteProtect;
  onRestoreProgress?: (doneChunks: number, totalChunks: number) => void;
}

export interface RestoreResult {
  /** Whether the live image matches the manifest at the end. */
  clean: boolean;
  /** Chunks found corrupted by the first check. */
  badChunks: number[];
  /** Corrupted chunks repaired (read back and verified). */
  chunksRestored: number;
  /** Bytes actually written to the live image. */
  bytesWritten: number;
  pagesWritten: number;
  /** Bytes read: the check, the golden chunks, the read-back. */
  bytesRead: number;
  /** T_checkcode: the check before the restore. */
  checkMs: number;
  /** T_restorecode: golden check, writes, fsync and read-back. */
  restoreMs: number;
  /** Chunks still corrupted after the restore (empty when clean). */
  stillBad: number[];
}

export class RestoreError extends MediaError {
  override name = "RestoreError";
}

export async function restoreImage(options: RestoreOptions): Promise<RestoreResult> {
  const { manifest, livePath, goldenPath } = options;
  const check = await verifyImage(livePath, manifest, { ...options, what: "live image" });
  const result: RestoreResult = {
    clean: check.clean,
    badChunks: check.badChunks,
    chunksRestored: 0,
    bytesWritten: 0,
    pagesWritten: 0,
    bytesRead: check.bytesRead,
    checkMs: check.checkMs,
    restoreMs: 0,
    stillBad: [],
  };
  if (check.clean) return result;
  const started = performance.now();
  const golden = openImage(goldenPath, "r", "golden image");
  closeSync(golden.fd);
  if (golden.sizeBytes !== manifest.sizeBytes) {
    throw new MediaError(
      `${goldenPath}: the golden image is ${golden.sizeBytes} bytes but its manifest says ${manifest.sizeBytes}`,
    );
  }
  const data: RestoreJobData = {
    livePath,
    goldenPath,
    sizeBytes: manifest.sizeBytes,
    chunkSizeBytes: manifest.chunkSizeBytes,
    algorithm: manifest.chunkAlgorithm,
    chunks: check.badChunks.map((index) => ({ index, digest: manifest.chunks[index] as string })),
  };
  const pool = options.mediaWorkers ?? MediaWorkers.shared();
  const step = async <Result extends RestoreStepResult>(
    kind: RestoreJob["kind"],
    onProgress?: (done: number, total: number) => void,
  ): Promise<Result> => {
    try {
      return await pool.run<Result>({ kind, restore: data }, onProgress);
    } catch (error) {
      if (error instanceof RestoreFailure)
        throw new RestoreError(`restoring ${livePath}: ${error.message}`);
      if (error instanceof MediaError) throw error;
      throw new RestoreError(`restoring ${livePath}: ${(error as Error).message}`);
    }
  };
  let lowered = false;
  try {
    const checked = await step<{ bytesRead: number }>("restore-check-golden");
    options.writeProtect?.lower();
    lowered = true;
    const written = await step<{ bytesRead: number; bytesWritten: number; pagesWritten: number }>(
      "restore-write",
      options.onRestoreProgress,
    );
    result.bytesWritten = written.bytesWritten;
    result.pagesWritten = written.pagesWritten;
    lowered = false;
    options.writeProtect?.raise();
    const back = await step<{ bytesRead: number; chunksRestored: number; stillBad: number[] }>(
      "restore-read-back",
    );
    result.bytesRead += checked.bytesRead + written.bytesRead + back.bytesRead;
    result.chunksRestored = back.chunksRestored;
    result.stillBad = back.stillBad;
    result.clean = back.stillBad.length === 0;
  } finally {
    // The medium is never left writable, whatever went wrong.
    if (lowered) options.writeProtect?.raise();
    result.restoreMs = performance.now() - started;
  }
  return result;
}
