/**
 * Verifying an image against its manifest: every chunk hashed, in parallel
 * across cores (worker threads), in batches handed out as workers finish.
 */
import { closeSync, existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { digestChunk } from "./chunk-digest.js";
import type { HashReply, HashRequest, HashWorkerData } from "./hash-worker.js";
import { openImage, readFully } from "./image-file.js";
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
  /** Worker threads (default: one per core but one, which the caller keeps; at a lower priority). */
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

/**
 * The digest of every chunk of `file`, in order. An image of more than one
 * batch is hashed by worker threads only, taking batches as they come free:
 * the calling thread (the board's event loop, its timers) never reads or
 * hashes. An image of one batch is hashed by the calling thread, one chunk at
 * a time with a yield between: done before a worker has even started (about
 * 60 ms).
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
  // One core is left to the calling thread: the board's timers must not wait behind hashing
  // (with every core hashing, trigger lateness reached 8-11 ms on two cores during a restore).
  const threads = Math.max(1, options.workers ?? availableParallelism() - 1);
  const batches = Math.ceil(count / batch);
  const workerCount = batches > 1 ? Math.min(threads, batches) : 0;
  const workerData: HashWorkerData = {
    file,
    sizeBytes: manifest.sizeBytes,
    chunkSizeBytes: manifest.chunkSizeBytes,
    algorithm: manifest.chunkAlgorithm,
  };
  let next = 0;
  let doneBytes = 0;
  let failure: Error | undefined;
  let hashed = 0;
  let finish: () => void = () => {};
  const finished = new Promise<void>((resolve) => {
    finish = resolve;
  });
  const fail = (error: Error) => {
    failure ??= error;
    finish();
  };
  const record = (from: number, batchDigests: readonly string[]) => {
    hashed += batchDigests.length;
    if (hashed >= count) finish();
    batchDigests.forEach((digest, i) => {
      digests[from + i] = digest;
    });
    doneBytes = Math.min(
      manifest.sizeBytes,
      doneBytes + batchDigests.length * manifest.chunkSizeBytes,
    );
    options.onProgress?.(doneBytes, manifest.sizeBytes);
  };
  const workers: Worker[] = [];
  // The batch each worker is hashing now, if any.
  const inFlight = new Map<Worker, Promise<void>>();
  for (let w = 0; w < workerCount; w++) {
    const worker = new Worker(workerPath("hash-worker"), { workerData });
    workers.push(worker);
    let settle: () => void = () => {};
    const feed = () => {
      settle();
      inFlight.delete(worker);
      if (next >= count || failure !== undefined) return;
      const from = next;
      next = Math.min(count, next + batch);
      inFlight.set(
        worker,
        new Promise<void>((resolve) => {
          settle = resolve;
        }),
      );
      worker.postMessage({ from, to: next } satisfies HashRequest);
    };
    worker.on("message", (reply: HashReply) => {
      if ("error" in reply) fail(new MediaError(reply.error));
      else record(reply.from, reply.digests);
      feed();
    });
    worker.on("error", (error) => {
      fail(new MediaError(`hashing ${file}: ${error.message}`));
      feed();
    });
    worker.on("online", feed);
    worker.on("exit", () => {
      if (hashed < count) fail(new MediaError(`hashing ${file}: a worker stopped`));
    });
  }
  try {
    if (workerCount > 0) await finished;
    const fd = workerCount > 0 ? undefined : openImage(file, "r", options.what ?? "image").fd;
    if (fd !== undefined)
      try {
        const buffer = Buffer.allocUnsafe(manifest.chunkSizeBytes);
        while (next < count && failure === undefined) {
          const i = next++;
          const position = i * manifest.chunkSizeBytes;
          const length = Math.min(manifest.chunkSizeBytes, manifest.sizeBytes - position);
          readFully(fd, buffer, length, position, file);
          record(i, [
            digestChunk(manifest.chunkAlgorithm, buffer.subarray(0, length)).toString("hex"),
          ]);
          await new Promise<void>((resolve) => setImmediate(resolve));
        }
      } finally {
        closeSync(fd);
      }
    // Workers still busy with a batch finish it; those not yet started are not waited for.
    while (inFlight.size > 0) await Promise.all(inFlight.values());
  } finally {
    await Promise.all(workers.map((worker) => worker.terminate()));
  }
  if (failure !== undefined) throw failure;
  return digests;
}

/**
 * The compiled worker `name` beside this module; tests run the TypeScript sources, where the
 * worker is taken from the build output instead.
 */
export function workerPath(name: "hash-worker" | "restore-worker"): string {
  const here = fileURLToPath(new URL(`./${name}.js`, import.meta.url));
  if (existsSync(here)) return here;
  const built = here.replace(/([\\/])src([\\/]media[\\/][\w-]+\.js)$/, "$1dist$2");
  if (existsSync(built)) return built;
  throw new MediaError(`the worker ${here} is missing; build smw first (npm run build)`);
}
