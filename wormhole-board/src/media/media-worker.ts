/**
 * A media worker thread: runs hash and restore jobs one at a time, for as long as the board
 * runs (`media-workers.ts` keeps the pool). Started once, so that no job waits for a thread to
 * start and the board's event loop never pays for one mid-period.
 */
import { parentPort } from "node:worker_threads";
import { type HashBatchJob, hashBatch } from "./hash-batch.js";
import { yieldToTheBoard } from "./image-file.js";
import { RestoreFailure, type RestoreJob, runRestoreStep } from "./restore-io.js";

export type MediaJob = HashBatchJob | RestoreJob;

/** Main → worker. */
export interface MediaJobRequest {
  id: number;
  job: MediaJob;
}

/**
 * Worker → main: loaded and ready (at this nice value, when it set one); progress of a job, its result, or why it failed (`media`: bad
 * input).
 */
export type MediaJobReply =
  | { ready: true; nice?: number }
  | { id: number; progress: { done: number; total: number } }
  | { id: number; result: unknown }
  | { id: number; error: string; media: boolean };

const nice = yieldToTheBoard();
const port = parentPort;
if (port === null) throw new Error("media-worker runs as a worker thread");

// Buffers grow to the largest chunk seen and are kept: one allocation per worker, not per job.
let buffers = { golden: Buffer.alloc(0), live: Buffer.alloc(0) };
const ensure = (sizeBytes: number) => {
  if (buffers.golden.length < sizeBytes)
    buffers = { golden: Buffer.allocUnsafe(sizeBytes), live: Buffer.allocUnsafe(sizeBytes) };
  return buffers;
};

port.on("message", ({ id, job }: MediaJobRequest) => {
  try {
    const result =
      job.kind === "hash"
        ? hashBatch(job, ensure(job.chunkSizeBytes).golden)
        : runRestoreStep(job, ensure(job.restore.chunkSizeBytes), (done, total) =>
            port.postMessage({ id, progress: { done, total } } satisfies MediaJobReply),
          );
    port.postMessage({ id, result } satisfies MediaJobReply);
  } catch (error) {
    port.postMessage({
      id,
      error: (error as Error).message,
      media: !(error instanceof RestoreFailure),
    } satisfies MediaJobReply);
  }
});

port.postMessage(
  (nice === undefined ? { ready: true } : { ready: true, nice }) satisfies MediaJobReply,
);
