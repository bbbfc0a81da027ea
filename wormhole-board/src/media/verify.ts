/**
 * Verifying an image against its manifest: every chunk hashed, in parallel
 * across cores (worker threads), in batches handed out as workers finish.
 */
import { closeSync } from "node:fs";
import type { HashBatchJob } from "./hash-batch.js";
import { openImage } from "./image-file.js";
import { chunkCount, type Manifest } from "./manifest.js";
import { MediaError } from "./media-error.js";
import { MediaWorkers } from "./media-workers.js";

export interface VerifyResult {
  clean: boolean;
  /** Indexes of chunks whose digest differs from the manifest's. */
  badChunks: number[];
  bytesRead: number;
  /** Wall time of the check: T_checkcode for this image. */
  checkMs: number;
}

export interface VerifyOptions {
  /** What the file is, for messages: "live image", "golden image". */
  what?: string;
  /** The media worker threads (default: the process's shared pool, `MediaWorkers.shared()`). */
  mediaWorkers?: MediaWorkers;
  /** Batches in flight at once (default: one per thread of the pool). */
  batchesInFlight?: number;
  /** Chunks per batch handed to a worker. */
  batchChunks?: number;
  onProgress?: (doneBytes: number, totalBytes: number) => void;
}

export async function verifyImage(
  file: string,
  manifest: Manifest,
  options: VerifyOptions = {},
): Promise<VerifyResult> {
  const started = performance.now();
  const what = options.what ?? "image";
  const image = openImage(file, "r", what);
  closeSync(image.fd);
  if (image.sizeBytes !== manifest.sizeBytes) {
    throw new MediaError(
      `${file}: the ${what} is ${image.sizeBytes} bytes but the manifest of "${manifest.image}" says ${manifest.sizeBytes} (${image.sizeBytes < manifest.sizeBytes ? "truncated" : "oversized"}, or the wrong ${image.kind === "block-device" ? "device" : "file"})`,
    );
  }
  const digests = await hashChunks(file, manifest, options);
  const badChunks: number[] = [];
  digests.forEach((digest, i) => {
    if (digest !== manifest.chunks[i]) badChunks.push(i);
  });
  return {
    clean: badChunks.length === 0,
    badChunks,
    bytesRead: manifest.sizeBytes,
    checkMs: performance.now() - started,
  };
}

/**
 * The digest of every chunk of `file`, in order, hashed by the media worker threads in batches
 * taken as they come free: the calling thread (the board's event loop, its timers) never reads
 * or hashes.
 */
export async function hashChunks(
  file: string,
  manifest: Manifest,
  options: VerifyOptions = {},
): Promise<string[]> {
  const count = chunkCount(manifest.sizeBytes, manifest.chunkSizeBytes);
  const digests: string[] = new Array(count);
  if (count === 0) return digests;
  // Batches of about 16 MiB: long enough for read-ahead, short enough to balance.
  const batch =
    options.batchChunks ?? Math.max(1, Math.floor((16 * 1024 * 1024) / manifest.chunkSizeBytes));
  const batches = Math.ceil(count / batch);
  let doneBytes = 0;
  const record = (from: number, batchDigests: readonly string[]) => {
    batchDigests.forEach((digest, i) => {
      digests[from + i] = digest;
    });
    doneBytes = Math.min(
      manifest.sizeBytes,
      doneBytes + batchDigests.length * manifest.chunkSizeBytes,
    );
    options.onProgress?.(doneBytes, manifest.sizeBytes);
  };
  const pool = options.mediaWorkers ?? MediaWorkers.shared();
  // As many batches in flight as the pool has threads (or as asked): each thread takes the next
  // batch as it finishes one.
  const inFlightMax = Math.min(batches, Math.max(1, options.batchesInFlight ?? pool.threads));
  let next = 0;
  let failure: Error | undefined;
  const lane = async () => {
    while (next < count && failure === undefined) {
      const from = next;
      next = Math.min(count, next + batch);
      try {
        const job: HashBatchJob = {
          kind: "hash",
          file,
          sizeBytes: manifest.sizeBytes,
          chunkSizeBytes: manifest.chunkSizeBytes,
          algorithm: manifest.chunkAlgorithm,
          from,
          to: next,
        };
        record(from, await pool.run<string[]>(job));
      } catch (error) {
        failure ??= new MediaError(`hashing ${file}: ${(error as Error).message}`);
      }
    }
  };
  await Promise.all(Array.from({ length: inFlightMax }, lane));
  if (failure !== undefined) throw failure;
  return digests;
}
