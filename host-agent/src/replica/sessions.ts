/**
 * Session keys between replicas, for the normal case's MACs (SAFETY.md, "MACs and signatures").
 * Per key epoch each replica makes a key agreement pair and announces its public half in a
 * SESSION message signed with its certified key. For a pair of replicas at a pair of epochs the
 * shared secret gives two keys, one per direction (HKDF-SHA256, the ids and epochs in its info),
 * so a MAC binds sender, receiver and both epochs: a rejuvenated replica's old sessions die with
 * its old key, and a MAC from i to j is no use from j to i. Pure bookkeeping: the key agreement
 * is given (X25519 on hosts, seeded X25519 in the simulation).
 */
import { hkdfSync, timingSafeEqual } from "node:crypto";
import { sha256Bytes } from "./canonical.js";
import { HmacKey } from "./hmac-key.js";

export interface KeyAgreement {
  /** The public half, base64, as SESSION carries it. */
  readonly publicKey: string;
  /** The shared secret with a peer's public half, or undefined if that is no valid key. */
  agree(peerPublic: string): Buffer | undefined;
}

const MAC_BYTES = 16;

interface PeerSession {
  epoch: number;
  publicKey: string;
  /** Derived on first use, for the own epoch they were derived at. */
  keys?: { ownEpoch: number; send: HmacKey; receive: HmacKey };
  /** The public half gives no secret: never derive again from it. */
  invalid?: boolean;
}

export class Sessions {
  private own: KeyAgreement;
  private readonly peers = new Map<string, PeerSession>();

  constructor(
    private readonly self: string,
    private ownEpoch: number,
    private readonly newAgreement: () => KeyAgreement,
  ) {
    this.own = newAgreement();
  }

  get publicKey(): string {
    return this.own.publicKey;
  }

  /** A new key epoch of this replica: a new pair, and every session derived from the old one gone. */
  renew(epoch: number): void {
    this.ownEpoch = epoch;
    this.own = this.newAgreement();
    for (const peer of this.peers.values()) {
      delete peer.keys;
      delete peer.invalid;
    }
  }

  /**
   * A peer's public half, from its SESSION signed under `epoch` (the caller checked that); true
   * if it is new here.
   */
  learn(peer: string, epoch: number, publicKey: string): boolean {
    const known = this.peers.get(peer);
    if (known !== undefined && known.epoch === epoch && known.publicKey === publicKey) return false;
    if (known !== undefined && known.epoch > epoch) return false;
    this.peers.set(peer, { epoch, publicKey });
    return true;
  }

  forget(peer: string): void {
    this.peers.delete(peer);
  }

  /** Whether this replica can MAC to (and check MACs from) `peer` at its key epoch `epoch`. */
  has(peer: string, epoch: number): boolean {
    return this.keysFor(peer, epoch) !== undefined;
  }

  private keysFor(peer: string, epoch: number): PeerSession["keys"] {
    const session = this.peers.get(peer);
    if (session === undefined || session.epoch !== epoch || session.invalid) return undefined;
    if (session.keys?.ownEpoch === this.ownEpoch) return session.keys;
    const secret = this.own.agree(session.publicKey);
    if (secret === undefined) {
      session.invalid = true;
      return undefined;
    }
    const derive = (from: string, fromEpoch: number, to: string, toEpoch: number) =>
      new HmacKey(
        Buffer.from(
          hkdfSync("sha256", secret, "smw-session-1", `${from}@${fromEpoch}>${to}@${toEpoch}`, 32),
        ),
      );
    session.keys = {
      ownEpoch: this.ownEpoch,
      send: derive(this.self, this.ownEpoch, peer, epoch),
      receive: derive(peer, epoch, this.self, this.ownEpoch),
    };
    return session.keys;
  }

  /** The MAC of `bytes` for `peer` at the newest epoch its half is known for, if any. */
  macNewest(peer: string, bytes: Buffer): string | undefined {
    const session = this.peers.get(peer);
    return session && this.mac(peer, session.epoch, bytes);
  }

  /** The MAC of `bytes` for `peer` at its epoch `epoch`, or undefined without a session. */
  mac(peer: string, epoch: number, bytes: Buffer): string | undefined {
    return this.macOfDigest(peer, epoch, macDigest(bytes));
  }

  /**
   * The MAC for `peer` of bytes whose `macDigest` is `digest`: a message to many receivers is
   * hashed once, then MAC'd for each.
   */
  macOfDigest(peer: string, epoch: number, digest: Buffer): string | undefined {
    const keys = this.keysFor(peer, epoch);
    return keys && macText(keys.send.of(digest));
  }

  check(peer: string, epoch: number, bytes: Buffer, mac: string): "ok" | "no-session" | "bad-mac" {
    const keys = this.keysFor(peer, epoch);
    if (keys === undefined) return "no-session";
    const expected = keys.receive.of(macDigest(bytes)).subarray(0, MAC_BYTES);
    const got = Buffer.from(mac, "base64url");
    return got.length === MAC_BYTES && timingSafeEqual(got, expected) ? "ok" : "bad-mac";
  }
}

/**
 * What a MAC is made over: the SHA-256 of the bytes it covers (as PBFT's authenticators MAC a
 * digest), so that an authenticator for n - 1 receivers hashes its message once.
 */
export function macDigest(bytes: Buffer): Buffer {
  return sha256Bytes(bytes);
}

function macText(hmac: Buffer): string {
  return hmac.subarray(0, MAC_BYTES).toString("base64url");
}
