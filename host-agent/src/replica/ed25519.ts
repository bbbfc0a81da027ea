/**
 * Ed25519 through node's crypto: the signature scheme on real hosts. Public
 * keys travel as base64 SPKI DER (what the host link's BOOTED carries).
 */
import { createPublicKey, generateKeyPairSync, type KeyObject, sign, verify } from "node:crypto";
import type { SignatureScheme, Signer } from "./key-ring.js";
import type { KeyAgreement } from "./sessions.js";
import { newX25519 } from "./x25519.js";

export class Ed25519Scheme implements SignatureScheme {
  private readonly keys = new Map<string, KeyObject | null>();

  newKeyAgreement(): KeyAgreement {
    return newX25519();
  }

  verify(publicKey: string, bytes: Buffer, signature: string): boolean {
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
    try {
      return verify(null, bytes, key, Buffer.from(signature, "base64"));
    } catch {
      return false;
    }
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
