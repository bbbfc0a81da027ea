/**
 * Restoring a live image from its golden copy, writing as little as possible:
 * only corrupted chunks are touched, and within each only the 4 KiB pages that
 * differ from the verified golden chunk are rewritten (flash and SD cards wear
 * with writes, and most of a restore's time on them is writing). Every golden
 * chunk is checked against the manifest before the first write, so a bad
 * golden copy leaves the live image untouched. After fsync, every rewritten
 * chunk is read back and verified. The page-wise writes are idempotent: a
 * restore killed at any instant leaves chunks the next verify reports and the
 * next restore completes.
 */
import { closeSync, fdatasyncSync, writeSync } from "node:fs";
import { digestChunk } from "./chunk-digest.js";
import { openImage, readFully } from "./image-file.js";
import type { Manifest } from "./manifest.js";
import { MediaError } from "./media-error.js";
import { type VerifyOptions, verifyImage } from "./verify.js";

export const PAGE_SIZE_BYTES = 4096;

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
  let live: ReturnType<typeof openImage> | undefined;
  try {
    if (golden.sizeBytes !== manifest.sizeBytes) {
      throw new MediaError(
        `${goldenPath}: the golden image is ${golden.sizeBytes} bytes but its manifest says ${manifest.sizeBytes}`,
      );
    }
    const goldenChunk = Buffer.allocUnsafe(manifest.chunkSizeBytes);
    const liveChunk = Buffer.allocUnsafe(manifest.chunkSizeBytes);
    const chunkAt = (i: number) => {
      const position = i * manifest.chunkSizeBytes;
      return { position, length: Math.min(manifest.chunkSizeBytes, manifest.sizeBytes - position) };
    };
    const readVerifiedGolden = (i: number) => {
      const { position, length } = chunkAt(i);
      readFully(golden.fd, goldenChunk, length, position, goldenPath);
      result.bytesRead += length;
      if (
        digestChunk(manifest.chunkAlgorithm, goldenChunk.subarray(0, length)).toString("hex") !==
        manifest.chunks[i]
      ) {
        throw new MediaError(
          `${goldenPath}: chunk ${i} of the golden image does not match its manifest; the golden copy is corrupted, nothing was written`,
        );
      }
    };

    // Every golden chunk needed is checked before anything is written.
    for (const i of check.badChunks) readVerifiedGolden(i);

    live = openImage(livePath, "r+", "live image");
    options.writeProtect?.lower();
    try {
      let done = 0;
      for (const i of check.badChunks) {
        readVerifiedGolden(i);
        const { position, length } = chunkAt(i);
        readFully(live.fd, liveChunk, length, position, livePath);
        result.bytesRead += length;
        writeDifferingPages(live.fd, livePath, goldenChunk, liveChunk, length, position, result);
        options.onRestoreProgress?.(++done, check.badChunks.length);
      }
      try {
        fdatasyncSync(live.fd);
      } catch (error) {
        throw new RestoreError(
          `${livePath}: fsync failed (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
        );
      }
    } finally {
      options.writeProtect?.raise();
    }

    // Read back what was rewritten; the rest was verified moments ago.
    for (const i of check.badChunks) {
      const { position, length } = chunkAt(i);
      readFully(live.fd, liveChunk, length, position, livePath);
      result.bytesRead += length;
      if (
        digestChunk(manifest.chunkAlgorithm, liveChunk.subarray(0, length)).toString("hex") ===
        manifest.chunks[i]
      ) {
        result.chunksRestored++;
      } else {
        result.stillBad.push(i);
      }
    }
    result.clean = result.stillBad.length === 0;
  } finally {
    closeSync(golden.fd);
    if (live !== undefined) closeSync(live.fd);
    result.restoreMs = performance.now() - started;
  }
  return result;
}

/** Writes the runs of 4 KiB pages where the live chunk differs from the golden one. */
function writeDifferingPages(
  fd: number,
  file: string,
  golden: Buffer,
  live: Buffer,
  length: number,
  position: number,
  result: RestoreResult,
): void {
  let runStart = -1;
  const flush = (end: number) => {
    if (runStart < 0) return;
    let written = 0;
    while (written < end - runStart) {
      try {
        written += writeSync(
          fd,
          golden,
          runStart + written,
          end - runStart - written,
          position + runStart + written,
        );
      } catch (error) {
        throw new RestoreError(
          `${file}: cannot write at byte ${position + runStart + written} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
        );
      }
    }
    result.bytesWritten += end - runStart;
    result.pagesWritten += Math.ceil((end - runStart) / PAGE_SIZE_BYTES);
    runStart = -1;
  };
  for (let page = 0; page < length; page += PAGE_SIZE_BYTES) {
    const end = Math.min(length, page + PAGE_SIZE_BYTES);
    const differs = golden.compare(live, page, end, page, end) !== 0;
    if (differs && runStart < 0) runStart = page;
    if (!differs) flush(page);
  }
  flush(length);
}
