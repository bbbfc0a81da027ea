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
 * Kept messages are handled again from the start, every check included, once what they waited
 * for arrives: one that was not the peer's fails then, as it would have on arrival, so keeping
 * grants nothing but the delay a network may add anyway. What bounds the work a forger can cause:
 * - bytes per peer (the oldest go first; a message larger than the bound is not kept), each kept
 *   message copied out of the shared buffer pool and counted with an overhead;
 * - a message is due again only when the key epoch it names arrives (kept for a key), or a
 *   usable half at that epoch arrives where there was none (kept for a half); one kept for a key
 *   at an epoch below the one installed is dropped unread (it would be stale);
 * - handled again, a message is kept again only for the other reason (a key came, its half not
 *   yet), so each is handled at most three times.
 * SESSIONs have a budget of their own per peer, apart from the rest, and one larger than a real
 * one is not kept: the traffic a peer sends before its key is known cannot push out the half that
 * the traffic after it needs, and forged SESSIONs push out the real one only by filling that
 * budget after it.
 */

export type KeptFor = "unknown-epoch" | "no-session";

export interface KeptMessage {
  wire: Buffer;
  /** The sender's key epoch the message names. */
  epoch: number;
  /** The verdict it was refused with: what it waits for. */
  keptFor: KeptFor;
}

/** Per peer: a quarter of a second of a six-replica testbed's traffic under load, with room. */
export const AWAITING_KEYS_BYTES_PER_PEER = 256 * 1024;
/** What a kept message costs beyond its bytes (its record), so that tiny ones are bounded too. */
export const KEPT_MESSAGE_OVERHEAD_BYTES = 128;
/** Per peer, for SESSIONs, apart from the rest: some 140 forged ones to push out the real one. */
export const AWAITING_SESSION_BYTES_PER_PEER = 32 * 1024;
/** A SESSION is a public half and a flag: a few hundred bytes. A larger one is not kept. */
export const MAX_KEPT_SESSION_BYTES = 1024;

interface PeerStore {
  bytes: number;
  messages: KeptMessage[];
  sessionBytes: number;
  sessions: KeptMessage[];
}

/** What keeping one message did. */
export interface KeepResult {
  kept: boolean;
  /** Older messages of the same peer dropped to make room. */
  dropped: number;
}

const costOf = (m: KeptMessage) => m.wire.length + KEPT_MESSAGE_OVERHEAD_BYTES;

export class AwaitingKeys {
  private readonly byPeer = new Map<string, PeerStore>();
  private readonly due: KeptMessage[] = [];

  constructor(private readonly maxBytesPerPeer = AWAITING_KEYS_BYTES_PER_PEER) {}

  /** Keeps a message `peer` sent (`isSession`: a SESSION, kept apart). */
  keep(peer: string, message: KeptMessage, isSession: boolean): KeepResult {
    const cost = costOf(message);
    const limit = isSession ? AWAITING_SESSION_BYTES_PER_PEER : this.maxBytesPerPeer;
    if (cost > limit || (isSession && message.wire.length > MAX_KEPT_SESSION_BYTES))
      return { kept: false, dropped: 0 };
    const store = this.storeOf(peer);
    if (isSession && store.sessions.some((s) => s.wire.equals(message.wire)))
      return { kept: false, dropped: 0 };
    // Its own copy: a frame under 4 KiB is a view of a pooled 8 KiB block it would keep alive.
    const wire = Buffer.allocUnsafeSlow(message.wire.length);
    message.wire.copy(wire);
    const list = isSession ? store.sessions : store.messages;
    let bytes = isSession ? store.sessionBytes : store.bytes;
    let dropped = 0;
    while (bytes + cost > limit) {
      bytes -= costOf(list.shift() as KeptMessage);
      dropped++;
    }
    list.push({ ...message, wire });
    bytes += cost;
    if (isSession) store.sessionBytes = bytes;
    else store.bytes = bytes;
    return { kept: true, dropped };
  }

  /**
   * `peer`'s key of `epoch` was installed: what named that epoch is due again (its SESSIONs
   * first); what was kept under an earlier epoch of its is dropped.
   */
  keyInstalled(peer: string, epoch: number): void {
    const store = this.byPeer.get(peer);
    if (store === undefined) return;
    const [sessionsDue, sessionsLeft] = split(store.sessions, (m) => m.epoch === epoch);
    const [due, left] = split(
      store.messages,
      (m) => m.keptFor === "unknown-epoch" && m.epoch === epoch,
    );
    store.sessions = sessionsLeft.filter((m) => m.epoch > epoch);
    store.sessionBytes = store.sessions.reduce((n, m) => n + costOf(m), 0);
    this.setMessages(
      store,
      left.filter((m) => m.epoch > epoch),
    );
    this.due.push(...sessionsDue, ...due);
  }

  /** A usable half of `peer` at `epoch` came where there was none: its MAC'd messages are due. */
  halfLearned(peer: string, epoch: number): void {
    const store = this.byPeer.get(peer);
    if (store === undefined) return;
    const [due, left] = split(
      store.messages,
      (m) => m.keptFor === "no-session" && m.epoch === epoch,
    );
    this.setMessages(store, left);
    this.due.push(...due);
  }

  /** The messages due again, in the order they became due; each is handed out once. */
  takeDue(): KeptMessage[] {
    return this.due.splice(0);
  }

  /** Bytes counted for `peer`: its SESSIONs, and the rest. */
  bytesOf(peer: string): { sessions: number; messages: number } {
    const store = this.byPeer.get(peer);
    return { sessions: store?.sessionBytes ?? 0, messages: store?.bytes ?? 0 };
  }

  private storeOf(peer: string): PeerStore {
    let store = this.byPeer.get(peer);
    if (store === undefined) {
      store = { bytes: 0, messages: [], sessionBytes: 0, sessions: [] };
      this.byPeer.set(peer, store);
    }
    return store;
  }

  private setMessages(store: PeerStore, messages: KeptMessage[]): void {
    store.messages = messages;
    store.bytes = messages.reduce((n, m) => n + costOf(m), 0);
  }
}

function split<T>(items: readonly T[], take: (item: T) => boolean): [T[], T[]] {
  const taken: T[] = [];
  const left: T[] = [];
  for (const item of items) (take(item) ? taken : left).push(item);
  return [taken, left];
}
