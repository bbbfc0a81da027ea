/**
 * X25519 key agreement through node's crypto: each replica makes a key pair per key epoch and
 * announces the public half in a SESSION message signed with its certified key; two replicas'
 * halves give them a shared secret no one else can compute, from which their MAC keys derive.
 */
import {
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  type KeyObject,
} from "node:crypto";
import type { KeyAgreement } from "./sessions.js";

// DER prefixes of an X25519 key in SPKI (public) and PKCS#8 (private) form: the raw 32 bytes follow.
const SPKI_PREFIX = Buffer.from("302a300506032b656e032100", "hex");
const PKCS8_PREFIX = Buffer.from("302e020100300506032b656e04220420", "hex");

function agreementFrom(privateKey: KeyObject): KeyAgreement {
  const spki = createPublicKey(privateKey).export({ type: "spki", format: "der" });
  return {
    publicKey: spki.subarray(SPKI_PREFIX.length).toString("base64"),
    agree(peerPublic: string): Buffer | undefined {
      const raw = Buffer.from(peerPublic, "base64");
      if (raw.length !== 32) return undefined;
      try {
        const publicKey = createPublicKey({
          key: Buffer.concat([SPKI_PREFIX, raw]),
          format: "der",
          type: "spki",
        });
        return diffieHellman({ privateKey, publicKey });
      } catch {
        // A point that is not on the curve, or a low-order one: no session with it.
        return undefined;
      }
    },
  };
}

/** A fresh key pair from the system's randomness: what a replica uses. */
export function newX25519(): KeyAgreement {
  return agreementFrom(generateKeyPairSync("x25519").privateKey);
}

/** A key pair from 32 given bytes: the simulation's, replayable from its seed. */
export function x25519FromSeed(seed: Buffer): KeyAgreement {
  if (seed.length !== 32) throw new RangeError("an X25519 private key is 32 bytes");
  return agreementFrom(
    createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: "der", type: "pkcs8" }),
  );
}
