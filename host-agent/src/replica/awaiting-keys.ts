/**
 * Messages from a peer that this replica cannot check yet, kept until it can: the peer's key
 * epoch is not known here (`unknown-epoch`), or its MAC'd message came before its session half
 * (`no-session`). A replica that has just started learns its peers' keys at once (one peer's
 * answer to its KEY_QUERY carries them all) but their session halves one by one, over 100–250 ms
 * on a loaded testbed, each when that peer's own connection to it is up; meanwhile the peers,
 * which hold its half already, MAC to it. Refused, the PRE_PREPAREs, COMMITs and CHECKPOINTs of
 * that window were lost to it, and its recovery waited for the next ones. A peer's SESSION can
 * likewise overtake its NEW_KEY.
 *
 * Kept messages are checked in full when taken again, once the peer's key or session half
 * arrives: one that was not the peer's fails then, as it would have on arrival. Keeping grants
 * nothing but the delay a network may add anyway. Bounded in bytes per peer: the oldest go first,
 * so a forger claiming to be a peer can push real messages out only by sending more than the
 * bound after them, and the replica is then where it was without this store.
 */

/** Per peer: a quarter of a second of a six-replica testbed's traffic under load, with room. */
export const AWAITING_KEYS_BYTES_PER_PEER = 256 * 1024;

export class AwaitingKeys {
  private readonly byPeer = new Map<string, { bytes: number; wires: Buffer[] }>();
  private readonly due = new Set<string>();

  constructor(private readonly maxBytesPerPeer = AWAITING_KEYS_BYTES_PER_PEER) {}

  /** Keeps a message `peer` sent; returns how many older ones of its were dropped for room. */
  keep(peer: string, wire: Buffer): number {
    if (wire.length > this.maxBytesPerPeer) return 1;
    const kept = this.byPeer.get(peer) ?? { bytes: 0, wires: [] };
    this.byPeer.set(peer, kept);
    let dropped = 0;
    while (kept.bytes + wire.length > this.maxBytesPerPeer) {
      kept.bytes -= (kept.wires.shift() as Buffer).length;
      dropped++;
    }
    kept.wires.push(wire);
    kept.bytes += wire.length;
    return dropped;
  }

  /** `peer`'s key or session half arrived: what it sent before is due to be taken again. */
  release(peer: string): void {
    if (this.byPeer.has(peer)) this.due.add(peer);
  }

  /** The messages due again, each peer's in the order they came; each is handed out once. */
  takeDue(): Buffer[] {
    const wires: Buffer[] = [];
    for (const peer of this.due) {
      wires.push(...(this.byPeer.get(peer)?.wires ?? []));
      this.byPeer.delete(peer);
    }
    this.due.clear();
    return wires;
  }

  /** Bytes kept for `peer`. */
  bytesOf(peer: string): number {
    return this.byPeer.get(peer)?.bytes ?? 0;
  }
}
