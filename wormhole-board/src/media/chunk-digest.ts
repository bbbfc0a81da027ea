/**
 * Chunk digests. BLAKE3 (native, several GB/s per core, and the Pi 3/4 have no
 * SHA instructions) is the default; SHA-256 stays available. The manifest
 * names its algorithm.
 *
 * The native BLAKE3 binding exists for some platforms only (none for 32-bit
 * ARM): where it cannot load, the same digests come from the pure-JS
 * implementation in @noble/hashes, with a one-line warning, so that nothing
 * dies at load time. The digests are identical; only the speed differs.
 */
import { createHash } from "node:crypto";
import { isMainThread } from "node:worker_threads";
import { blake3 as blake3Js } from "@noble/hashes/blake3.js";

export const CHUNK_ALGORITHMS = ["blake3", "sha256"] as const;
export type ChunkAlgorithm = (typeof CHUNK_ALGORITHMS)[number];

/** Where BLAKE3 comes from in this process, and why not native if it is not. */
export type Blake3Backend = { kind: "native" } | { kind: "pure-js"; reason: string };

const native = await loadNativeBlake3();
export const blake3Backend: Blake3Backend =
  typeof native === "function" ? { kind: "native" } : { kind: "pure-js", reason: native };
const blake3: (data: Buffer) => Buffer =
  typeof native === "function"
    ? native
    : (data) => {
        const digest = blake3Js(data);
        return Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength);
      };
if (typeof native !== "function" && isMainThread)
  process.emitWarning(
    `the native BLAKE3 binding (@napi-rs/blake-hash) cannot load here (${native}); hashing with the pure-JS one, over 100x slower (npm run bench -- media measures it): seal this board's images with --algorithm sha256 to keep checks fast`,
    { code: "SMW_BLAKE3_PURE_JS" },
  );

async function loadNativeBlake3(): Promise<((data: Buffer) => Buffer) | string> {
  try {
    const module = await import("@napi-rs/blake-hash");
    return module.blake3;
  } catch (error) {
    return ((error as Error).message ?? String(error)).split("\n")[0] as string;
  }
}

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
