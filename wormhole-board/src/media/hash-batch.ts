/**
 * Hashing one batch of chunks of an image, on a media worker thread (`media-worker.ts`): the
 * batch is read sequentially, so the kernel's read-ahead works while other workers hash other
 * batches.
 */
import { closeSync, openSync } from "node:fs";
import { type ChunkAlgorithm, digestChunk } from "./chunk-digest.js";
import { readFully } from "./image-file.js";

export interface HashBatchJob {
  kind: "hash";
  file: string;
  sizeBytes: number;
  chunkSizeBytes: number;
  algorithm: ChunkAlgorithm;
  /** Chunks [from, to). */
  from: number;
  to: number;
}

/** The hex digest of each chunk of the batch, in order. */
export function hashBatch(job: HashBatchJob, buffer: Buffer): string[] {
  const fd = openSync(job.file, "r");
  try {
    const digests: string[] = [];
    for (let i = job.from; i < job.to; i++) {
      const position = i * job.chunkSizeBytes;
      const length = Math.min(job.chunkSizeBytes, job.sizeBytes - position);
      readFully(fd, buffer, length, position, job.file);
      digests.push(digestChunk(job.algorithm, buffer.subarray(0, length)).toString("hex"));
    }
    return digests;
  } finally {
    closeSync(fd);
  }
}
