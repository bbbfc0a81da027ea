/**
 * The signed manifest of a golden image: its size, chunk size, the digest of
 * every chunk, their Merkle root, the SHA-256 of the whole image (what
 * `sha256sum` prints, for people), when it was made, and an Ed25519 signature
 * over all of it. Reading is defensive: bounded size, exact fields, and the
 * signature checked over the fields as read, so any altered field fails.
 */
import { createHash, type KeyObject, sign, verify } from "node:crypto";
import { closeSync, fstatSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { CHUNK_ALGORITHMS, type ChunkAlgorithm, merkleRoot } from "./chunk-digest.js";
import { keyIdOf } from "./keys.js";
import { MediaError } from "./media-error.js";

export const MANIFEST_FORMAT = "smw-manifest/1";
/** 1 TiB in 1 MiB chunks is about 70 MB of manifest; allow some more. */
const MAX_MANIFEST_BYTES = 128 * 1024 * 1024;
export const MIN_CHUNK_SIZE_BYTES = 4096;
export const MAX_CHUNK_SIZE_BYTES = 64 * 1024 * 1024;

export interface ManifestBody {
  format: typeof MANIFEST_FORMAT;
  image: string;
  sizeBytes: number;
  chunkSizeBytes: number;
  chunkAlgorithm: ChunkAlgorithm;
  chunks: string[];
  merkleRoot: string;
  sha256: string;
  createdAt: string;
}

export interface Manifest extends ManifestBody {
  signature: { algorithm: "ed25519"; keyId: string; value: string };
}

const BODY_KEYS = [
  "format",
  "image",
  "sizeBytes",
  "chunkSizeBytes",
  "chunkAlgorithm",
  "chunks",
  "merkleRoot",
  "sha256",
  "createdAt",
] as const;

/** The exact bytes that are signed: the body's fields in a fixed order, no spaces. */
export function canonicalBody(body: ManifestBody): Buffer {
  const ordered: Record<string, unknown> = {};
  for (const key of BODY_KEYS) ordered[key] = body[key];
  return Buffer.from(JSON.stringify(ordered), "utf8");
}

export function signManifest(
  body: ManifestBody,
  privateKey: KeyObject,
  publicKey: KeyObject,
): Manifest {
  return {
    ...body,
    signature: {
      algorithm: "ed25519",
      keyId: keyIdOf(publicKey),
      value: sign(null, canonicalBody(body), privateKey).toString("base64"),
    },
  };
}

export function writeManifest(file: string, manifest: Manifest): void {
  writeFileSync(file, `${JSON.stringify(manifest, null, 1)}\n`);
}

export function chunkCount(sizeBytes: number, chunkSizeBytes: number): number {
  return Math.ceil(sizeBytes / chunkSizeBytes);
}

export function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0 && n <= 2 ** 30;
}

/**
 * Manifests already verified, by the SHA-256 of their bytes and the key that
 * checked them. Recomputing the Merkle root of a 64 GiB image takes about half a
 * second on the event loop; a board checks the same manifests every period.
 */
const verifiedManifests = new Map<string, Manifest>();
const VERIFIED_MANIFESTS_KEPT = 16;

/** Reads a manifest, checks every field and the signature; throws MediaError naming the problem. */
export function readVerifiedManifest(file: string, publicKey: KeyObject): Manifest {
  let text: string;
  try {
    const fd = openSync(file, "r");
    try {
      const stat = fstatSync(fd);
      if (!stat.isFile()) throw new MediaError(`${file}: the manifest is not a regular file`);
      if (stat.size > MAX_MANIFEST_BYTES)
        throw new MediaError(`${file}: ${stat.size} bytes is too large for a manifest`);
      text = readFileSync(fd, "utf8");
    } finally {
      closeSync(fd);
    }
  } catch (error) {
    if (error instanceof MediaError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    throw new MediaError(
      `${file}: cannot read the manifest (${code === "ENOENT" ? "no such file" : code})`,
    );
  }
  const cacheKey = `${createHash("sha256").update(text).digest("hex")}:${keyIdOf(publicKey)}`;
  const known = verifiedManifests.get(cacheKey);
  if (known !== undefined) return known;
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw new MediaError(`${file}: the manifest is not JSON (${(error as Error).message})`);
  }
  const manifest = checkShape(data, file);
  const expectedKeyId = keyIdOf(publicKey);
  if (manifest.signature.keyId !== expectedKeyId) {
    throw new MediaError(
      `${file}: signed by key ${manifest.signature.keyId}, not by the given public key (${expectedKeyId})`,
    );
  }
  const valid = verify(
    null,
    canonicalBody(manifest),
    publicKey,
    Buffer.from(manifest.signature.value, "base64"),
  );
  if (!valid)
    throw new MediaError(
      `${file}: the signature does not match the manifest's contents (altered, or signed by another key)`,
    );
  // Only now, with the signature good, check what the signer vouched for.
  const root = merkleRoot(
    manifest.chunkAlgorithm,
    manifest.chunks.map((hex) => Buffer.from(hex, "hex")),
  ).toString("hex");
  if (root !== manifest.merkleRoot)
    throw new MediaError(`${file}: the Merkle root does not match the chunk digests`);
  if (verifiedManifests.size >= VERIFIED_MANIFESTS_KEPT) {
    verifiedManifests.delete(verifiedManifests.keys().next().value as string);
  }
  verifiedManifests.set(cacheKey, manifest);
  return manifest;
}

function checkShape(data: unknown, file: string): Manifest {
  const fail = (what: string): never => {
    throw new MediaError(`${file}: ${what}`);
  };
  if (typeof data !== "object" || data === null || Array.isArray(data))
    fail("the manifest is not a JSON object");
  const record = data as Record<string, unknown>;
  const allowed = new Set<string>([...BODY_KEYS, "signature"]);
  for (const key of Object.keys(record)) if (!allowed.has(key)) fail(`unknown field "${key}"`);
  for (const key of allowed) if (!(key in record)) fail(`missing field "${key}"`);
  if (record.format !== MANIFEST_FORMAT)
    fail(`format is ${JSON.stringify(record.format)}, expected "${MANIFEST_FORMAT}"`);
  if (typeof record.image !== "string" || record.image.length === 0 || record.image.length > 256)
    fail("image must be a name of 1-256 characters");
  const size = record.sizeBytes;
  if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0)
    fail("sizeBytes must be a whole number of bytes");
  const chunkSize = record.chunkSizeBytes;
  if (
    typeof chunkSize !== "number" ||
    !isPowerOfTwo(chunkSize) ||
    chunkSize < MIN_CHUNK_SIZE_BYTES ||
    chunkSize > MAX_CHUNK_SIZE_BYTES
  ) {
    fail(
      `chunkSizeBytes ${JSON.stringify(chunkSize)} is not a power of two between ${MIN_CHUNK_SIZE_BYTES} and ${MAX_CHUNK_SIZE_BYTES}`,
    );
  }
  if (!CHUNK_ALGORITHMS.includes(record.chunkAlgorithm as ChunkAlgorithm))
    fail(
      `chunkAlgorithm ${JSON.stringify(record.chunkAlgorithm)} is not one of ${CHUNK_ALGORITHMS.join(", ")}`,
    );
  const hex64 = /^[0-9a-f]{64}$/;
  if (!Array.isArray(record.chunks)) fail("chunks must be a list of digests");
  const chunks = record.chunks as unknown[];
  if (chunks.length !== chunkCount(size as number, chunkSize as number)) {
    fail(
      `${chunks.length} chunk digests for ${size} bytes in ${chunkSize}-byte chunks (expected ${chunkCount(size as number, chunkSize as number)})`,
    );
  }
  chunks.forEach((digest, i) => {
    if (typeof digest !== "string" || !hex64.test(digest))
      fail(`chunks[${i}] is not a 32-byte hex digest`);
  });
  if (typeof record.merkleRoot !== "string" || !hex64.test(record.merkleRoot))
    fail("merkleRoot is not a 32-byte hex digest");
  if (typeof record.sha256 !== "string" || !hex64.test(record.sha256))
    fail("sha256 is not a 32-byte hex digest");
  if (typeof record.createdAt !== "string" || Number.isNaN(Date.parse(record.createdAt)))
    fail("createdAt is not a date");
  const signature = record.signature as Record<string, unknown> | null;
  if (typeof signature !== "object" || signature === null || Array.isArray(signature))
    fail("signature is not an object");
  const sig = signature as Record<string, unknown>;
  for (const key of Object.keys(sig))
    if (!["algorithm", "keyId", "value"].includes(key)) fail(`unknown field "signature.${key}"`);
  if (sig.algorithm !== "ed25519")
    fail(`signature.algorithm ${JSON.stringify(sig.algorithm)} is not "ed25519"`);
  if (typeof sig.keyId !== "string" || !/^[0-9a-f]{32}$/.test(sig.keyId))
    fail("signature.keyId is malformed");
  if (typeof sig.value !== "string" || !/^[A-Za-z0-9+/]{86}==$/.test(sig.value))
    fail("signature.value is not a base64 Ed25519 signature");
  return record as unknown as Manifest;
}
