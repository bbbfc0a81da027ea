/** Sealing a golden image: one sequential read computes every chunk digest and the whole-image SHA-256. */
import { createHash, type KeyObject } from "node:crypto";
import { closeSync } from "node:fs";
import path from "node:path";
import { type ChunkAlgorithm, digestChunk, merkleRoot } from "./chunk-digest.js";
import { openImage, readFully } from "./image-file.js";
import {
  chunkCount,
  isPowerOfTwo,
  MANIFEST_FORMAT,
  MAX_CHUNK_SIZE_BYTES,
  type Manifest,
  MIN_CHUNK_SIZE_BYTES,
  signManifest,
} from "./manifest.js";
import { MediaError } from "./media-error.js";

export const DEFAULT_CHUNK_SIZE_BYTES = 1024 * 1024;

export interface SealOptions {
  goldenPath: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** Name recorded in the manifest (default: the file's name). */
  image?: string;
  chunkSizeBytes?: number;
  algorithm?: ChunkAlgorithm;
  now?: Date;
  onProgress?: (doneBytes: number, totalBytes: number) => void;
}

export function sealImage(options: SealOptions): Manifest {
  const chunkSizeBytes = options.chunkSizeBytes ?? DEFAULT_CHUNK_SIZE_BYTES;
  if (
    !isPowerOfTwo(chunkSizeBytes) ||
    chunkSizeBytes < MIN_CHUNK_SIZE_BYTES ||
    chunkSizeBytes > MAX_CHUNK_SIZE_BYTES
  ) {
    throw new MediaError(
      `chunk size ${chunkSizeBytes} is not a power of two between ${MIN_CHUNK_SIZE_BYTES} and ${MAX_CHUNK_SIZE_BYTES} bytes`,
    );
  }
  const algorithm = options.algorithm ?? "blake3";
  const image = openImage(options.goldenPath, "r", "golden image");
  try {
    const whole = createHash("sha256");
    const chunks: Buffer[] = [];
    const buffer = Buffer.allocUnsafe(chunkSizeBytes);
    const count = chunkCount(image.sizeBytes, chunkSizeBytes);
    for (let i = 0; i < count; i++) {
      const position = i * chunkSizeBytes;
      const length = Math.min(chunkSizeBytes, image.sizeBytes - position);
      readFully(image.fd, buffer, length, position, options.goldenPath);
      const data = buffer.subarray(0, length);
      whole.update(data);
      chunks.push(digestChunk(algorithm, data));
      options.onProgress?.(position + length, image.sizeBytes);
    }
    return signManifest(
      {
        format: MANIFEST_FORMAT,
        image: options.image ?? path.basename(options.goldenPath),
        sizeBytes: image.sizeBytes,
        chunkSizeBytes,
        chunkAlgorithm: algorithm,
        chunks: chunks.map((d) => d.toString("hex")),
        merkleRoot: merkleRoot(algorithm, chunks).toString("hex"),
        sha256: whole.digest("hex"),
        createdAt: (options.now ?? new Date()).toISOString(),
      },
      options.privateKey,
      options.publicKey,
    );
  } finally {
    closeSync(image.fd);
  }
}
