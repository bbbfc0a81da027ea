/**
 * Frames on a TCP stream: a u32 big-endian payload length, then the payload.
 * The decoder is the only thing between an unauthenticated peer and our
 * memory, so it never holds more than one maximal frame plus its prefix, and
 * it allocates only for bytes that have actually arrived (a 4-byte prefix
 * claiming 4 GiB costs nothing).
 */

export const FRAME_HEADER_BYTES = 4;
export const DEFAULT_MAX_FRAME_BYTES = 8 * 1024 * 1024;
/** The largest length a u32 prefix can state. */
export const MAX_ENCODABLE_FRAME_BYTES = 0xffff_ffff;

export function encodeFrame(payload: Buffer): Buffer {
  if (payload.length > MAX_ENCODABLE_FRAME_BYTES)
    throw new RangeError(
      `a payload of ${payload.length} bytes does not fit a frame (at most ${MAX_ENCODABLE_FRAME_BYTES} bytes)`,
    );
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.length);
  frame.writeUInt32BE(payload.length, 0);
  payload.copy(frame, FRAME_HEADER_BYTES);
  return frame;
}

export function assertMaxFrameBytes(maxFrameBytes: number): void {
  if (
    !Number.isInteger(maxFrameBytes) ||
    maxFrameBytes < 0 ||
    maxFrameBytes > MAX_ENCODABLE_FRAME_BYTES
  )
    throw new RangeError(
      `maxFrameBytes must be a whole number from 0 to ${MAX_ENCODABLE_FRAME_BYTES}, not ${maxFrameBytes}`,
    );
}

export interface DecodeResult {
  /** Whole frames completed by this chunk, in order; each owns its memory. */
  frames: Buffer[];
  /** Set once a length over the maximum was seen; the stream cannot be resynchronised after it. */
  error?: string;
  /** Where `each` stopped reading: the chunk's bytes after the frame it was handed last, if any. */
  rest?: Buffer;
}

export class FrameDecoder {
  private readonly header = Buffer.alloc(FRAME_HEADER_BYTES);
  private headerBytes = 0;
  /** Payload length of the frame being read, once its prefix is complete. */
  private bodyLength: number | undefined;
  /** Copies of the parts of a frame split across chunks, joined once when it completes. */
  private parts: Buffer[] = [];
  private partsBytes = 0;
  private failure: string | undefined;

  constructor(private maxFrameBytes: number) {
    assertMaxFrameBytes(maxFrameBytes);
  }

  /** A connection trusted further (its hello proven) may send longer frames from now on. */
  setMaxFrameBytes(maxFrameBytes: number): void {
    assertMaxFrameBytes(maxFrameBytes);
    this.maxFrameBytes = maxFrameBytes;
  }

  /** Bytes held for frames not yet complete; never more than maxFrameBytes + 4. */
  get bufferedBytes(): number {
    return this.headerBytes + this.partsBytes;
  }

  /**
   * Frames that precede a bad length in the same chunk are still returned
   * with the error: they were well formed, and the caller decides what to do.
   * With `each`, every frame is handed over as soon as it is complete, before the next one's
   * length is checked (so a frame can raise the bound for those after it), and none are
   * returned; `each` returning false stops reading this chunk, and what it did not read is
   * returned as `rest` (to push later, or to drop if the connection is closing).
   */
  push(chunk: Buffer, each?: (frame: Buffer) => boolean): DecodeResult {
    if (this.failure !== undefined) return { frames: [], error: this.failure };
    const frames: Buffer[] = [];
    let stopped = false;
    const complete = (frame: Buffer) => {
      if (each === undefined) frames.push(frame);
      else if (!each(frame)) stopped = true;
    };
    let offset = 0;
    const stop = (): DecodeResult =>
      offset < chunk.length ? { frames, rest: chunk.subarray(offset) } : { frames };
    while (offset < chunk.length) {
      if (this.bodyLength === undefined) {
        const take = Math.min(FRAME_HEADER_BYTES - this.headerBytes, chunk.length - offset);
        chunk.copy(this.header, this.headerBytes, offset, offset + take);
        this.headerBytes += take;
        offset += take;
        if (this.headerBytes < FRAME_HEADER_BYTES) break;
        this.headerBytes = 0;
        const length = this.header.readUInt32BE(0);
        if (length > this.maxFrameBytes) {
          this.failure = `frame of ${length} bytes exceeds the ${this.maxFrameBytes}-byte maximum`;
          return { frames, error: this.failure };
        }
        if (length === 0) complete(Buffer.alloc(0));
        else this.bodyLength = length;
        if (stopped) return stop();
        continue;
      }
      const missing = this.bodyLength - this.partsBytes;
      const available = chunk.length - offset;
      // Copies rather than views: a retained frame must not pin a whole socket chunk.
      if (this.partsBytes === 0 && available >= missing) {
        offset += missing;
        this.bodyLength = undefined;
        complete(Buffer.from(chunk.subarray(offset - missing, offset)));
        if (stopped) return stop();
        continue;
      }
      const take = Math.min(missing, available);
      this.parts.push(Buffer.from(chunk.subarray(offset, offset + take)));
      this.partsBytes += take;
      offset += take;
      if (this.partsBytes === this.bodyLength) {
        const frame = Buffer.concat(this.parts, this.bodyLength);
        this.parts = [];
        this.partsBytes = 0;
        this.bodyLength = undefined;
        complete(frame);
        if (stopped) return stop();
      }
    }
    return { frames };
  }
}
