/**
 * HMAC-SHA256 (RFC 2104) of a 32-byte digest under a session key, made fast for the normal
 * case's many MACs: the key's two padded blocks are prepared once per session, and each MAC is two
 * one-shot SHA-256 calls over 96 bytes. A `createHmac` object per MAC cost about half again as
 * much, mostly in preparing the key every time. Where node has no one-shot `crypto.hash` (before
 * 20.12), `createHmac`: the same value.
 */
import * as nodeCrypto from "node:crypto";

const BLOCK_BYTES = 64;
const DIGEST_BYTES = 32;
const oneShot = (nodeCrypto as { hash?: typeof nodeCrypto.hash }).hash;

export class HmacKey {
  /** The key XOR ipad, then room for the digest; reused (one MAC at a time, synchronously). */
  private readonly inner = Buffer.alloc(BLOCK_BYTES + DIGEST_BYTES);
  /** The key XOR opad, then room for the inner hash. */
  private readonly outer = Buffer.alloc(BLOCK_BYTES + DIGEST_BYTES);

  constructor(private readonly key: Buffer) {
    if (key.length > BLOCK_BYTES)
      throw new Error(`an HMAC key of ${key.length} bytes (at most 64)`);
    for (let i = 0; i < BLOCK_BYTES; i++) {
      const byte = key[i] ?? 0;
      this.inner[i] = byte ^ 0x36;
      this.outer[i] = byte ^ 0x5c;
    }
  }

  /** HMAC-SHA256 of `digest` (32 bytes). */
  of(digest: Buffer): Buffer {
    if (digest.length !== DIGEST_BYTES) throw new Error(`a digest of ${digest.length} bytes`);
    if (oneShot === undefined)
      return nodeCrypto.createHmac("sha256", this.key).update(digest).digest();
    digest.copy(this.inner, BLOCK_BYTES);
    const innerHash = oneShot("sha256", this.inner, "buffer") as unknown as Buffer;
    innerHash.copy(this.outer, BLOCK_BYTES);
    return oneShot("sha256", this.outer, "buffer") as unknown as Buffer;
  }
}
