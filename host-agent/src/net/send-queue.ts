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

/** Put in a sent frame's slot so the array does not keep it alive. */
const EMPTY = Buffer.alloc(0);

export class SendQueue {
  // An array with a moving head: shift() on a long array would copy it every time.
  private frames: Buffer[] = [];
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

  /** Queues a frame; returns how many frames were dropped to make room (possibly this one). */
  push(frame: Buffer): number {
    if (frame.length > this.maxBytes) return 1;
    let dropped = 0;
    while (this.queuedBytes + frame.length > this.maxBytes) {
      this.shift();
      dropped++;
    }
    this.frames.push(frame);
    this.queuedBytes += frame.length;
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
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.frames.length) {
      // Compact once the dead prefix is at least half: amortised constant per frame.
      this.frames = this.frames.slice(this.head);
      this.head = 0;
    }
    return frame;
  }

  clear(): void {
    this.frames = [];
    this.head = 0;
    this.queuedBytes = 0;
  }
}

function assertQueueBound(maxBytes: number): void {
  if (!Number.isInteger(maxBytes) || maxBytes < 0)
    throw new RangeError(`the queue bound must be a whole number of bytes, not ${maxBytes}`);
}
