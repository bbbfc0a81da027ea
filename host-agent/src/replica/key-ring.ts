/**
 * Key epochs. A replica signs with the key its board certified at its last
 * rejuvenation; every peer keeps, per replica, the newest certified key and
 * accepts messages under that key only, so keys a compromised host learned
 * are useless once it has been rejuvenated. Board public keys come from the
 * testbed; client public keys from the service's client list.
 */
import {
  certificateSigningBytes,
  type KeyCertificate,
  type KeyLease,
  leaseSigningBytes,
} from "@smw/wiring";
import type { KeyAgreement } from "./sessions.js";

/** Signing and verifying, pluggable: Ed25519 on real hosts, a cheap keyed hash in simulation. */
export interface SignatureScheme {
  verify(publicKey: string, bytes: Buffer, signature: string): boolean;
  /** A key agreement pair for session keys (`sessions.ts`); without it, everything is signed. */
  newKeyAgreement?(): KeyAgreement;
}

export interface Signer {
  readonly publicKey: string;
  sign(bytes: Buffer): string;
}

export interface ReplicaKey {
  epoch: number;
  publicKey: string;
  certificate: KeyCertificate | undefined;
}

export type InstallVerdict =
  | "installed"
  | "same"
  | "stale"
  | "revoked"
  | "bad-signature"
  | "unknown-host";

export class KeyRing {
  private readonly replicaKeys = new Map<string, ReplicaKey>();
  /** Per host: keys certified before this epoch are revoked (its rejuvenation began). */
  private readonly revokedBefore = new Map<string, number>();
  /** Per host: the newest lease its board gave, on the newest key epoch heard of (`KeyLease`). */
  private readonly leases = new Map<string, { epoch: number; notAfterMs: number }>();

  constructor(
    private readonly scheme: SignatureScheme,
    /** Host id -> public key of the board that guards it. */
    private readonly boardKeys: ReadonlyMap<string, string>,
    /** Client id -> public key. */
    private readonly clientKeys: ReadonlyMap<string, string>,
  ) {}

  /** Accepts a board-signed certificate if it is newer than the key held for that host. */
  install(certificate: KeyCertificate): InstallVerdict {
    const boardKey = this.boardKeys.get(certificate.host);
    if (boardKey === undefined) return "unknown-host";
    if (certificate.period < (this.revokedBefore.get(certificate.host) ?? 0)) return "revoked";
    const current = this.replicaKeys.get(certificate.host);
    if (current !== undefined) {
      if (certificate.period < current.epoch) return "stale";
      if (certificate.period === current.epoch)
        return current.publicKey === certificate.publicKey ? "same" : "stale";
    }
    const { signature, ...signed } = certificate;
    if (!this.scheme.verify(boardKey, certificateSigningBytes(signed), signature))
      return "bad-signature";
    this.replicaKeys.set(certificate.host, {
      epoch: certificate.period,
      publicKey: certificate.publicKey,
      certificate,
    });
    return "installed";
  }

  /**
   * The host's rejuvenation began (its board's schedule says so): no key of it certified before
   * `before` speaks for it any more, whatever the host's thief still holds. Its next key is later.
   */
  revoke(host: string, before: number): void {
    if (before > (this.revokedBefore.get(host) ?? 0)) this.revokedBefore.set(host, before);
  }

  /** A message of `replica` under `epoch` would count here now (its signature aside). */
  counts(replica: string, epoch: number): boolean {
    const key = this.replicaKeys.get(replica);
    return (
      key !== undefined && key.epoch === epoch && epoch >= (this.revokedBefore.get(replica) ?? 0)
    );
  }

  keyOf(replica: string): ReplicaKey | undefined {
    return this.replicaKeys.get(replica);
  }

  /** The certificates of the replicas' current keys, none revoked (those are only refused). */
  certificates(): KeyCertificate[] {
    const out: KeyCertificate[] = [];
    for (const [host, key] of this.replicaKeys)
      if (key.certificate && key.epoch >= (this.revokedBefore.get(host) ?? 0))
        out.push(key.certificate);
    return out;
  }

  /**
   * Takes a board-signed lease if it is newer than the one held for that host: on a later key
   * epoch, or lasting longer on the same one. A lease on a later epoch ends the earlier key's at
   * once here, certificate or not: its board certified a newer key.
   */
  installLease(lease: KeyLease): "installed" | "older" | "unknown-host" | "bad-signature" {
    const boardKey = this.boardKeys.get(lease.host);
    if (boardKey === undefined) return "unknown-host";
    const held = this.leases.get(lease.host);
    if (
      held !== undefined &&
      (lease.epoch < held.epoch ||
        (lease.epoch === held.epoch && lease.notAfterMs <= held.notAfterMs))
    )
      return "older";
    const { signature, ...signed } = lease;
    if (!this.scheme.verify(boardKey, leaseSigningBytes(signed), signature)) return "bad-signature";
    this.leases.set(lease.host, { epoch: lease.epoch, notAfterMs: lease.notAfterMs });
    return "installed";
  }

  /** Whether a lease held here vouches for `replica`'s key `epoch` at `atMs` (the boards' clock). */
  leaseCovers(replica: string, epoch: number, atMs: number): boolean {
    const lease = this.leases.get(replica);
    return lease !== undefined && lease.epoch === epoch && atMs < lease.notAfterMs;
  }

  /** "ok", or why a replica's signature is not accepted. */
  checkReplica(
    replica: string,
    epoch: number,
    bytes: Buffer,
    signature: string,
  ): "ok" | "stale-epoch" | "unknown-epoch" | "revoked-key" | "bad-signature" {
    const verdict = this.checkEpoch(replica, epoch);
    if (verdict !== "ok") return verdict;
    const key = this.replicaKeys.get(replica) as ReplicaKey;
    return this.scheme.verify(key.publicKey, bytes, signature) ? "ok" : "bad-signature";
  }

  /** "ok" if `epoch` is the replica's current, unrevoked key epoch here; else why not. */
  checkEpoch(
    replica: string,
    epoch: number,
  ): "ok" | "stale-epoch" | "unknown-epoch" | "revoked-key" {
    const key = this.replicaKeys.get(replica);
    if (key === undefined || epoch > key.epoch) return "unknown-epoch";
    if (epoch < key.epoch) return "stale-epoch";
    if (epoch < (this.revokedBefore.get(replica) ?? 0)) return "revoked-key";
    return "ok";
  }

  get agreesKeys(): boolean {
    return this.scheme.newKeyAgreement !== undefined;
  }

  /** A key agreement pair, if the scheme makes them (session keys); undefined: sign everything. */
  newKeyAgreement(): KeyAgreement | undefined {
    return this.scheme.newKeyAgreement?.();
  }

  hasClient(client: string): boolean {
    return this.clientKeys.has(client);
  }

  checkClient(client: string, bytes: Buffer, signature: string): boolean {
    const key = this.clientKeys.get(client);
    return key !== undefined && this.scheme.verify(key, bytes, signature);
  }
}
