/**
 * Signatures for the simulation: a keyed hash whose secret only the
 * simulator's key table holds. As unforgeable as Ed25519 within the
 * simulation (a Byzantine replica's code only ever holds its own signers)
 * and a hundred times cheaper, so ten thousand seeds run in minutes.
 */
import { createHash } from "node:crypto";
import { sha256Base64 } from "../replica/canonical.js";
import type { SignatureScheme, Signer } from "../replica/key-ring.js";
import type { KeyAgreement } from "../replica/sessions.js";
import { x25519FromSeed } from "../replica/x25519.js";

export class SimCrypto implements SignatureScheme {
  private readonly secrets = new Map<string, string>();
  private issued = 0;

  constructor(private readonly seed: number) {}

  newSigner(label: string): Signer {
    const publicKey = Buffer.from(`${label}/${this.issued++}`).toString("base64");
    const secret = createHash("sha256").update(`${this.seed}:${publicKey}`).digest("hex");
    this.secrets.set(publicKey, secret);
    return {
      publicKey,
      sign: (bytes) => mac(secret, bytes),
    };
  }

  /** Real X25519 (a replica's halves must give secrets only it and its peer know), seeded. */
  newKeyAgreement(): KeyAgreement {
    return x25519FromSeed(
      createHash("sha256")
        .update(`${this.seed}:agreement:${this.issued++}`)
        .digest(),
    );
  }

  verify(publicKey: string, bytes: Buffer, signature: string): boolean {
    const secret = this.secrets.get(publicKey);
    return secret !== undefined && mac(secret, bytes) === signature;
  }
}

function mac(secret: string, bytes: Buffer): string {
  return sha256Base64(Buffer.concat([Buffer.from(secret), bytes]));
}
