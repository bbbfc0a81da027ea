/**
 * Verifying an image against its manifest: every chunk hashed, in parallel
 * across cores (worker threads), in batches handed out as workers finish.
 */
import { closeSync, existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import type { HashReply, HashRequest, HashWorkerData } from "./hash-worker.js";
import { openImage } from "./image-file.js";
import { chunkCount, type Manifest } from "./manifest.js";
import { MediaError } from "./media-error.js";

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
  /** Worker threads (default: one per core). */
  workers?: number;
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

/** The digest of every chunk of `file`, in order. */
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
  const workerCount = Math.max(1, Math.min(options.workers ?? availableParallelism(), batches));
  const workerData: HashWorkerData = {
    file,
    sizeBytes: manifest.sizeBytes,
    chunkSizeBytes: manifest.chunkSizeBytes,
    algorithm: manifest.chunkAlgorithm,
  };
  let next = 0;
  let doneBytes = 0;
  const workers: Worker[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      let running = 0;
      const feed = (worker: Worker) => {
        if (next >= count) {
          worker.postMessage({ stop: true } satisfies HashRequest);
          running--;
          if (running === 0) resolve();
          return;
        }
        const from = next;
        next = Math.min(count, next + batch);
        worker.postMessage({ from, to: next } satisfies HashRequest);
      };
      for (let w = 0; w < workerCount; w++) {
        const worker = new Worker(hashWorkerPath(), { workerData });
        workers.push(worker);
        running++;
        worker.on("message", (reply: HashReply) => {
          if ("error" in reply) {
            reject(new MediaError(reply.error));
            return;
          }
          reply.digests.forEach((digest, i) => {
            digests[reply.from + i] = digest;
          });
          doneBytes = Math.min(
            manifest.sizeBytes,
            doneBytes + reply.digests.length * manifest.chunkSizeBytes,
          );
          options.onProgress?.(doneBytes, manifest.sizeBytes);
          feed(worker);
        });
        worker.on("error", (error) => reject(new MediaError(`hashing ${file}: ${error.message}`)));
        feed(worker);
      }
    });
  } finally {
    await Promise.all(workers.map((worker) => worker.terminate()));
  }
  return digests;
}

/**
 * The compiled worker beside this module; tests run the TypeScript sources,
 * where the worker is taken from the build output instead.
 */
function hashWorkerPath(): string {
  const here = fileURLToPath(new URL("./hash-worker.js", import.meta.url));
  if (existsSync(here)) return here;
  const built = here.replace(/([\\/])src([\\/]media[\\/]hash-worker\.js)$/, "$1dist$2");
  if (existsSync(built)) return built;
  throw new MediaError(`the hash worker ${here} is missing; build smw first (npm run build)`);
}
