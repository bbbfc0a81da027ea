/**
 * Signatures already found valid in this process, so that the same signed bytes are checked
 * once: a board's lease reaches every client in a load generator's process (16 in the demo's)
 * from every replica, four times a lease, and each client checked it anew (a quarter of the
 * clients' CPU in the rolling benchmark). A signature is valid for one key and one message, so an
 * entry is the three together, compared whole. Only valid signatures over at most
 * `MAX_REMEMBERED_BYTES` are kept: leases and session proofs, not the messages of up to 8 MiB a
 * Byzantine replica may sign at will (remembered, 4096 of them would fill any host's memory).
 * A flood of valid small ones evicts the oldest, and costs what each check costs anyway.
 */
export const MAX_REMEMBERED_BYTES = 1024;

export class VerifiedSignatures {
  private readonly seen = new Set<string>();
  /** Checks answered from the memo (for tests and benchmarks). */
  hits = 0;

  constructor(private readonly capacity = 4096) {}

  private static keyOf(publicKey: string, bytes: Buffer, signature: string): string {
    // Lengths first: no two different triples join into the same text.
    return `${publicKey.length}:${signature.length}:${publicKey}${signature}${bytes.toString("latin1")}`;
  }

  has(publicKey: string, bytes: Buffer, signature: string): boolean {
    if (bytes.length > MAX_REMEMBERED_BYTES) return false;
    const found = this.seen.has(VerifiedSignatures.keyOf(publicKey, bytes, signature));
    if (found) this.hits++;
    return found;
  }

  add(publicKey: string, bytes: Buffer, signature: string): void {
    if (bytes.length > MAX_REMEMBERED_BYTES) return;
    const key = VerifiedSignatures.keyOf(publicKey, bytes, signature);
    if (this.seen.has(key)) return;
    // Oldest out first (a Set keeps insertion order).
    if (this.seen.size >= this.capacity)
      this.seen.delete(this.seen.values().next().value as string);
    this.seen.add(key);
  }
}

/** The process's memo, shared by every signature scheme in it. */
export const processVerifiedSignatures = new VerifiedSignatures();
