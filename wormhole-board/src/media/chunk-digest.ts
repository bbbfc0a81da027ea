/**
 * Chunk digests. BLAKE3 (native, several GB/s per core, and the Pi 3/4 have no
 * SHA instructions) is the default; SHA-256 stays available. The manifest
 * names its algorithm.
 */
import { createHash } from "node:crypto";
import { blake3 } from "@napi-rs/blake-hash";

export const CHUNK_ALGORITHMS = ["blake3", "sha256"] as const;
export type ChunkAlgorithm = (typeof CHUNK_ALGORITHMS)[number];

export function digestChunk(algorithm: ChunkAlgorithm, data: Buffer): Buffer {
  return algorithm === "blake3" ? blake3(data) : createHash("sha256").update(data).digest();
}

/**
 * Merkle root over chunk digests, shaped as RFC 6962 (Certificate
 * Transparency): leaves H(0x00 || d), nodes H(0x01 || left || right), the
 * split at the largest power of two below the count.
 */
export function merkleRoot(algorithm: ChunkAlgorithm, digests: readonly Buffer[]): Buffer {
  if (digests.length === 0) return digestChunk(algorithm, Buffer.alloc(0));
  const leaves = digests.map((d) => digestChunk(algorithm, Buffer.concat([Buffer.from([0]), d])));
  const node = (from: number, to: number): Buffer => {
    if (to - from === 1) return leaves[from] as Buffer;
    let split = 1;
    while (split * 2 < to - from) split *= 2;
    return digestChunk(
      algorithm,
      Buffer.concat([Buffer.from([1]), node(from, from + split), node(from + split, to)]),
    );
  };
  return node(0, leaves.length);
}
