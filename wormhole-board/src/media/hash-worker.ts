/**
 * A worker thread that hashes batches of chunks of one image. It opens the
 * file itself and reads each batch sequentially, so the kernel's read-ahead
 * works while the other workers hash other batches.
 */
import { closeSync, openSync } from "node:fs";
import { parentPort, workerData } from "node:worker_threads";
import { type ChunkAlgorithm, digestChunk } from "./chunk-digest.js";
import { readFully, yieldToTheBoard } from "./image-file.js";

export interface HashWorkerData {
  file: string;
  sizeBytes: number;
  chunkSizeBytes: number;
  algorithm: ChunkAlgorithm;
}

/** Main → worker: hash chunks [from, to); or stop. */
export type HashRequest = { from: number; to: number } | { stop: true };
/** Worker → main: the digests of a batch, or what went wrong. */
export type HashReply = { from: number; digests: string[] } | { error: string };

yieldToTheBoard();
const data = workerData as HashWorkerData;
const port = parentPort;
if (port === null) throw new Error("hash-worker runs as a worker thread");

let fd: number | undefined;
const buffer = Buffer.allocUnsafe(data.chunkSizeBytes);

port.on("message", (request: HashRequest) => {
  if ("stop" in request) {
    if (fd !== undefined) closeSync(fd);
    port.close();
    return;
  }
  try {
    fd ??= openSync(data.file, "r");
    const digests: string[] = [];
    for (let i = request.from; i < request.to; i++) {
      const position = i * data.chunkSizeBytes;
      const length = Math.min(data.chunkSizeBytes, data.sizeBytes - position);
      readFully(fd, buffer, length, position, data.file);
      digests.push(digestChunk(data.algorithm, buffer.subarray(0, length)).toString("hex"));
    }
    port.postMessage({ from: request.from, digests } satisfies HashReply);
  } catch (error) {
    port.postMessage({ error: (error as Error).message } satisfies HashReply);
  }
});
