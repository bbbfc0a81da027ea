/**
 * Restoring a live image from its golden copy, writing as little as possible:
 * only corrupted chunks are touched, and within each only the 4 KiB pages that
 * differ from the verified golden chunk are rewritten (flash and SD cards wear
 * with writes, and most of a restore's time on them is writing). Every golden
 * chunk is checked against the manifest before the first write, so a bad
 * golden copy leaves the live image untouched. After fsync, every rewritten
 * chunk is read back and verified. The page-wise writes are idempotent: a
 * restore killed at any instant leaves chunks the next verify reports and the
 * next restore completes. The I/O runs in a worker thread (`restore-worker.ts`): the board's
 * timers never wait for a disk.
 */
import { closeSync } from "node:fs";
import { Worker } from "node:worker_threads";
import { openImage } from "./image-file.js";
import type { Manifest } from "./manifest.js";
import { MediaError } from "./media-error.js";
import type { RestoreCommand, RestoreReply, RestoreWorkerData } from "./restore-worker.js";
import { type VerifyOptions, verifyImage, workerPath } from "./verify.js";

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
  const workerData: RestoreWorkerData = {
    livePath,
    goldenPath,
    sizeBytes: manifest.sizeBytes,
    chunkSizeBytes: manifest.chunkSizeBytes,
    algorithm: manifest.chunkAlgorithm,
    chunks: check.badChunks.map((index) => ({ index, digest: manifest.chunks[index] as string })),
  };
  const worker = new Worker(workerPath("restore-worker"), { workerData });
  const baseRead = result.bytesRead;
  let lowered = false;
  try {
    await new Promise<void>((resolve, reject) => {
      worker.on("error", (error) =>
        reject(new RestoreError(`restoring ${livePath}: ${error.message}`)),
      );
      worker.on("exit", () =>
        reject(new RestoreError(`restoring ${livePath}: the worker stopped`)),
      );
      worker.on("message", (reply: RestoreReply) => {
        try {
          switch (reply.kind) {
            case "ready":
              options.writeProtect?.lower();
              lowered = true;
              worker.postMessage("write" satisfies RestoreCommand);
              return;
            case "progress":
              options.onRestoreProgress?.(reply.done, reply.total);
              return;
            case "written":
              result.bytesWritten = reply.bytesWritten;
              result.pagesWritten = reply.pagesWritten;
              lowered = false;
              options.writeProtect?.raise();
              worker.postMessage("read-back" satisfies RestoreCommand);
              return;
            case "done":
              result.bytesRead = baseRead + reply.bytesRead;
              result.chunksRestored = reply.chunksRestored;
              result.stillBad = reply.stillBad;
              result.clean = reply.stillBad.length === 0;
              resolve();
              return;
            case "error":
              reject(reply.media ? new MediaError(reply.message) : new RestoreError(reply.message));
              return;
          }
        } catch (error) {
          reject(error);
        }
      });
    });
  } finally {
    // The medium is never left writable, whatever went wrong.
    if (lowered) options.writeProtect?.raise();
    await worker.terminate();
    result.restoreMs = performance.now() - started;
  }
  return result;
}
