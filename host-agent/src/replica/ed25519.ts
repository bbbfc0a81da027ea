/**
 * Ed25519 through node's crypto: the signature scheme on real hosts. Public
 * keys travel as base64 SPKI DER (what the host link's BOOTED carries).
 */
import { createPublicKey, generateKeyPairSync, type KeyObject, sign, verify } from "node:crypto";
import type { SignatureScheme, Signer } from "./key-ring.js";
import type { KeyAgreement } from "./sessions.js";
import { processVerifiedSignatures, type VerifiedSignatures } from "./verified-signatures.js";
import { newX25519 } from "./x25519.js";

export class Ed25519Scheme implements SignatureScheme {
  private readonly keys = new Map<string, KeyObject | null>();

  /** `verified`: signatures found valid before (by default, the process's, shared by every scheme). */
  constructor(private readonly verified: VerifiedSignatures = processVerifiedSignatures) {}

  newKeyAgreement(): KeyAgreement {
    return newX25519();
  }

  verify(publicKey: string, bytes: Buffer, signature: string): boolean {
    if (this.verified.has(publicKey, bytes, signature)) return true;
    let key = this.keys.get(publicKey);
    if (key === undefined) {
      try {
        key = createPublicKey({
          key: Buffer.from(publicKey, "base64"),
          format: "der",
          type: "spki",
        });
      } catch {
        key = null;
      }
      if (this.keys.size > 10_000) this.keys.clear();
      this.keys.set(publicKey, key);
    }
    if (key === null) return false;
    let valid: boolean;
    try {
      valid = verify(null, bytes, key, Buffer.from(signature, "base64"));
    } catch {
      return false;
    }
    if (valid) this.verified.add(publicKey, bytes, signature);
    return valid;
  }
}

export function publicKeyText(key: KeyObject): string {
  return key.export({ type: "spki", format: "der" }).toString("base64");
}

export function signerFor(privateKey: KeyObject): Signer {
  return {
    publicKey: publicKeyText(createPublicKey(privateKey)),
    sign: (bytes) => sign(null, bytes, privateKey).toString("base64"),
  };
}

/** A fresh key pair: a replica makes one at every boot, for its board to certify. */
export function newReplicaSigner(): Signer {
  return signerFor(generateKeyPairSync("ed25519").privateKey);
}
