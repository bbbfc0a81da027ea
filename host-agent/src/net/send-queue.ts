/**
 * Encoded frames waiting for a socket that is down or pushing back. Bounded
 * in bytes: when full, the oldest frames go first, because in a replicated
 * protocol the newest messages supersede the old ones (and lost messages are
 * retransmitted above this layer), while unbounded growth would let one slow
 * or absent peer exhaust our memory.
 */

export const DEFAULT_MAX_QUEUED_BYTES = 64 * 1024 * 1024;

/**
 * The bound while the far end is unreachable. A replica held in reset comes back as a new
 * process that catches up by state transfer: what was queued for the old one only delays the
 * frames that matter to the new one (its peers' certificates come after the backlog, and every
 * frame of it is refused first: a second of downtime queued about 400 frames per peer in the
 * rolling benchmark). A short absence that was only the network loses the oldest frames, which
 * the protocol retransmits as it retransmits any lost message.
 */
export const DEFAULT_MAX_QUEUED_BYTES_WHILE_DOWN = 256 * 1024;

/**
 * Frames queued while the far end was down are sent on reconnection only if younger than this. A
 * short break (the network) loses nothing; a far end that was down longer is most likely a new
 * process (a host held in reset, a replica restarted), for which frames made for the old one are
 * only work to refuse: in the rolling benchmark each restarted replica read and refused about
 * 270 such frames from each peer before its peers' certificates reached it.
 */
export const DEFAULT_MAX_QUEUED_AGE_WHILE_DOWN_MS = 250;

/** Put in a sent frame's slot so the array does not keep it alive. */
const EMPTY = Buffer.alloc(0);

export class SendQueue {
  // An array with a moving head: shift() on a long array would copy it every time.
  private frames: Buffer[] = [];
  /** When each frame was queued (ms, the caller's clock), in queue order. */
  private times: number[] = [];
  private head = 0;
  private queuedBytes = 0;

  constructor(private maxBytes: number) {
    assertQueueBound(maxBytes);
  }

  /** A new bound; returns how many of the oldest frames were dropped to keep within it. */
  setMaxBytes(maxBytes: number): number {
    assertQueueBound(maxBytes);
    this.maxBytes = maxBytes;
    let dropped = 0;
    while (this.queuedBytes > maxBytes) {
      this.shift();
      dropped++;
    }
    return dropped;
  }

  get bytes(): number {
    return this.queuedBytes;
  }

  get length(): number {
    return this.frames.length - this.head;
  }

  /**
   * Queues a frame, queued at `atMs` (the caller's clock; never earlier than the frame before);
   * returns how many frames were dropped to make room (possibly this one).
   */
  push(frame: Buffer, atMs: number): number {
    if (frame.length > this.maxBytes) return 1;
    let dropped = 0;
    while (this.queuedBytes + frame.length > this.maxBytes) {
      this.shift();
      dropped++;
    }
    this.frames.push(frame);
    this.times.push(atMs);
    this.queuedBytes += frame.length;
    return dropped;
  }

  /** Drops the frames queued before `cutoffMs`; returns how many. */
  dropQueuedBefore(cutoffMs: number): number {
    let dropped = 0;
    while (this.head < this.frames.length && (this.times[this.head] as number) < cutoffMs) {
      this.shift();
      dropped++;
    }
    return dropped;
  }

  shift(): Buffer | undefined {
    if (this.head === this.frames.length) return undefined;
    const frame = this.frames[this.head] as Buffer;
    this.frames[this.head] = EMPTY;
    this.head++;
    this.queuedBytes -= frame.length;
    if (this.head === this.frames.length) {
      this.frames = [];
      this.times = [];
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.frames.length) {
      // Compact once the dead prefix is at least half: amortised constant per frame.
      this.frames = this.frames.slice(this.head);
      this.times = this.times.slice(this.head);
      this.head = 0;
    }
    return frame;
  }

  clear(): void {
    this.frames = [];
    this.times = [];
    this.head = 0;
    this.queuedBytes = 0;
  }
}

function assertQueueBound(maxBytes: number): void {
  if (!Number.isInteger(maxBytes) || maxBytes < 0)
    throw new RangeError(`the queue bound must be a whole number of bytes, not ${maxBytes}`);
}
