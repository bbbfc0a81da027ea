import fc from "fast-check";
import { afterEach, describe, expect, it, vi } from "vitest";
import { encodeFrame, FrameDecoder } from "../src/net/frame-codec.js";

const payloads = [Buffer.from("first"), Buffer.alloc(0), Buffer.from("the third frame, longer")];
const stream = Buffer.concat(payloads.map(encodeFrame));

/** Feeds the chunks in order and collects every frame; fails on any error. */
function decodeAll(decoder: FrameDecoder, chunks: Buffer[]): Buffer[] {
  const frames: Buffer[] = [];
  for (const chunk of chunks) {
    const result = decoder.push(chunk);
    expect(result.error).toBeUndefined();
    frames.push(...result.frames);
  }
  return frames;
}

const asStrings = (frames: Buffer[]) => frames.map((f) => f.toString("utf8"));

describe("encodeFrame", () => {
  it("prefixes the payload with its length, u32 big-endian", () => {
    expect(encodeFrame(Buffer.from("abc"))).toEqual(Buffer.from([0, 0, 0, 3, 97, 98, 99]));
    expect(encodeFrame(Buffer.alloc(0))).toEqual(Buffer.from([0, 0, 0, 0]));
    expect(encodeFrame(Buffer.alloc(0x0102)).subarray(0, 4)).toEqual(Buffer.from([0, 0, 1, 2]));
  });
});

describe("FrameDecoder", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("decodes many frames, zero-length ones included, from one chunk", () => {
    expect(asStrings(decodeAll(new FrameDecoder(1024), [stream]))).toEqual(asStrings(payloads));
  });

  it("decodes a three-frame stream split in two at every byte position", () => {
    for (let at = 0; at <= stream.length; at++) {
      const frames = decodeAll(new FrameDecoder(1024), [
        stream.subarray(0, at),
        stream.subarray(at),
      ]);
      expect(asStrings(frames), `split at ${at}`).toEqual(asStrings(payloads));
    }
  });

  it("decodes the stream fed one byte at a time", () => {
    const decoder = new FrameDecoder(1024);
    const chunks = [...stream].map((byte) => Buffer.from([byte]));
    expect(asStrings(decodeAll(decoder, chunks))).toEqual(asStrings(payloads));
    expect(decoder.bufferedBytes).toBe(0);
  });

  it("hands back what it did not read when its consumer stops, to push later", () => {
    // Stopped after each frame in turn: the rest, pushed again, gives the frames after it; a
    // stop at the chunk's end leaves no rest. (Split first inside the third frame, so that a
    // frame completed across chunks stops too.)
    for (let stopAfter = 1; stopAfter <= payloads.length; stopAfter++) {
      const decoder = new FrameDecoder(1024);
      const got: Buffer[] = [];
      let seen = 0;
      const each = (frame: Buffer) => {
        got.push(frame);
        seen++;
        return seen !== stopAfter;
      };
      const cut = stream.length - 3;
      const first = decoder.push(stream.subarray(0, cut), each);
      let rest = first.rest;
      if (rest !== undefined) rest = decoder.push(rest, each).rest;
      expect(rest, `stopped after ${stopAfter}`).toBeUndefined();
      const last = decoder.push(stream.subarray(cut), each);
      if (last.rest !== undefined) decoder.push(last.rest, each);
      expect(asStrings(got), `stopped after ${stopAfter}`).toEqual(asStrings(payloads));
      expect(decoder.bufferedBytes).toBe(0);
    }
  });

  it("decodes any frames cut into any chunks (property)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 8 }),
        fc.array(fc.integer({ min: 0, max: 10_000 }), { maxLength: 12 }),
        (frames, cuts) => {
          const bytes = Buffer.concat(frames.map((f) => encodeFrame(Buffer.from(f))));
          const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort(
            (a, b) => a - b,
          );
          const chunks: Buffer[] = [];
          let start = 0;
          for (const point of [...points, bytes.length]) {
            chunks.push(bytes.subarray(start, point));
            start = point;
          }
          const decoder = new FrameDecoder(300);
          const decoded = decodeAll(decoder, chunks);
          expect(decoded.map((f) => [...f])).toEqual(frames.map((f) => [...f]));
          expect(decoder.bufferedBytes).toBe(0);
        },
      ),
    );
  });

  it("returns frames that own their bytes: reusing the chunk does not change them", () => {
    const chunk = Buffer.from(stream);
    const frames = decodeAll(new FrameDecoder(1024), [chunk]);
    chunk.fill(0);
    expect(asStrings(frames)).toEqual(asStrings(payloads));
  });

  it("emits zero-length frames, alone and split", () => {
    const decoder = new FrameDecoder(0);
    expect(decoder.push(Buffer.from([0, 0])).frames).toEqual([]);
    const { frames } = decoder.push(Buffer.from([0, 0, 0, 0, 0, 0]));
    expect(frames.map((f) => f.length)).toEqual([0, 0]);
    expect(decoder.bufferedBytes).toBe(0);
  });

  it("accepts a frame of exactly the maximum, holding at most maximum + 4 bytes", () => {
    const max = 1000;
    const decoder = new FrameDecoder(max);
    const frame = encodeFrame(Buffer.alloc(max, 7));
    let decoded: Buffer[] = [];
    for (let at = 0; at < frame.length; at += 33) {
      decoded = decoded.concat(decoder.push(frame.subarray(at, at + 33)).frames);
      expect(decoder.bufferedBytes).toBeLessThanOrEqual(max + 4);
    }
    expect(decoded).toHaveLength(1);
    expect(decoded[0]).toEqual(Buffer.alloc(max, 7));
  });

  it("rejects a length over the maximum, naming both, and stays failed", () => {
    const decoder = new FrameDecoder(8_388_608);
    const header = Buffer.alloc(4);
    header.writeUInt32BE(20_000_000);
    const message = "frame of 20000000 bytes exceeds the 8388608-byte maximum";
    // The frame before the bad prefix, in the same chunk, was well formed.
    const first = decoder.push(
      Buffer.concat([encodeFrame(Buffer.from("ok")), header.subarray(0, 2)]),
    );
    expect(asStrings(first.frames)).toEqual(["ok"]);
    expect(first.error).toBeUndefined();
    expect(decoder.push(header.subarray(2))).toEqual({ frames: [], error: message });
    expect(decoder.push(encodeFrame(Buffer.from("later")))).toEqual({ frames: [], error: message });
    expect(decoder.bufferedBytes).toBe(0);
  });

  it("allocates nothing near the size an oversized prefix claims", () => {
    const sizes: number[] = [];
    const record = (size: number) => {
      sizes.push(size);
    };
    for (const method of ["alloc", "allocUnsafe", "allocUnsafeSlow"] as const) {
      const original = Buffer[method];
      vi.spyOn(Buffer, method).mockImplementation(((size: number, ...rest: []) => {
        record(size);
        return original.call(Buffer, size, ...rest);
      }) as typeof original);
    }
    const before = process.memoryUsage().arrayBuffers;
    const decoder = new FrameDecoder(1024);
    const header = Buffer.from([0xff, 0xff, 0xff, 0xfe]);
    expect(decoder.push(Buffer.concat([header, Buffer.alloc(100)])).error).toBe(
      "frame of 4294967294 bytes exceeds the 1024-byte maximum",
    );
    // Just under the maximum: only what arrived is held, not the whole claimed length.
    const big = new FrameDecoder(64 * 1024 * 1024);
    const claim = Buffer.alloc(4);
    claim.writeUInt32BE(60 * 1024 * 1024);
    big.push(Buffer.concat([claim, Buffer.alloc(10)]));
    expect(big.bufferedBytes).toBe(10);
    expect(Math.max(0, ...sizes)).toBeLessThan(1024 * 1024);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(16 * 1024 * 1024);
  });

  it("decodes a large frame in many small chunks in linear time", () => {
    // 131,072 chunks of 64 bytes: copied linearly, well under a second alone and a few seconds on
    // a loaded machine; a decoder that joined what it holds at each chunk would copy some 550 GB,
    // a minute or more, and be reported past the default timeout even on a fast machine.
    const payload = Buffer.alloc(8 * 1024 * 1024, 1);
    const frame = encodeFrame(payload);
    const decoder = new FrameDecoder(payload.length);
    const frames: Buffer[] = [];
    for (let at = 0; at < frame.length; at += 64)
      frames.push(...decoder.push(frame.subarray(at, at + 64)).frames);
    expect(frames).toHaveLength(1);
    expect(frames[0]?.equals(payload)).toBe(true);
  });

  it("refuses a maximum that is not a u32", () => {
    expect(() => new FrameDecoder(-1)).toThrow(RangeError);
    expect(() => new FrameDecoder(1.5)).toThrow(RangeError);
    expect(() => new FrameDecoder(2 ** 32)).toThrow(RangeError);
  });
});
