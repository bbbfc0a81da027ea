import { createHmac, randomBytes } from "node:crypto";
import {
  type ControlFrame,
  decodeControlFrame,
  encodeControlFrame,
  MAX_CONTROL_FRAME_BYTES,
  parseControlMessage,
  ReplayGuard,
} from "@smw/wiring";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

const keyAB = randomBytes(32);
const keyCB = randomBytes(32);
const keyOf = (peer: string) => (peer === "a" ? keyAB : peer === "c" ? keyCB : undefined);
const frame = (seq: number, overrides: Partial<ControlFrame> = {}): ControlFrame => ({
  from: "a",
  to: "b",
  epoch: 7,
  seq,
  type: "DONE",
  body: { period: 3, schedule: 1000 },
  ...overrides,
});

describe("control frames", () => {
  it("round-trips a frame as one line", () => {
    const line = encodeControlFrame(frame(1), keyAB);
    expect(line.endsWith("\n")).toBe(true);
    expect(line.slice(0, -1)).not.toContain("\n");
    expect(decodeControlFrame(line, "b", keyOf)).toEqual({ ok: true, frame: frame(1) });
  });

  it("refuses a frame under another key, or with any byte changed", () => {
    expect(decodeControlFrame(encodeControlFrame(frame(1), keyCB), "b", keyOf)).toMatchObject({
      ok: false,
      reason: "forged",
    });
    const line = encodeControlFrame(frame(1), keyAB);
    for (const position of [5, 8, 12, 14, 20, line.length - 10]) {
      const altered =
        line.slice(0, position) + (line[position] === "1" ? "2" : "1") + line.slice(position + 1);
      const result = decodeControlFrame(altered, "b", keyOf);
      expect(result.ok, `byte ${position} changed`).toBe(false);
    }
  });

  it("refuses frames for another board, from unknown boards, oversized or malformed", () => {
    expect(
      decodeControlFrame(encodeControlFrame(frame(1, { to: "z" }), keyAB), "b", keyOf),
    ).toMatchObject({ reason: "not-for-us" });
    expect(
      decodeControlFrame(encodeControlFrame(frame(1, { from: "q" }), keyAB), "b", keyOf),
    ).toMatchObject({ reason: "unknown-sender" });
    expect(decodeControlFrame("x".repeat(MAX_CONTROL_FRAME_BYTES + 1), "b", keyOf)).toMatchObject({
      reason: "oversized",
    });
    expect(decodeControlFrame("smw1 a b 1 1 DONE e30 zz", "b", keyOf)).toMatchObject({
      reason: "malformed",
    });
    expect(() => encodeControlFrame(frame(1, { body: { blob: "x".repeat(3000) } }), keyAB)).toThrow(
      RangeError,
    );
  });

  it("sends a heartbeat compact, under 128 bytes, and round-trips every field exactly", () => {
    const heartbeat = frame(987_654, {
      from: "b1",
      to: "b6",
      epoch: 12,
      type: "HB",
      body: {
        period: -1,
        schedule: 1_764_720_000_123,
        joined: false,
        sentAtMs: 1_764_720_123_456.789,
        echoMs: 1_764_720_123_401.5,
        heldMs: 0.25,
      },
    });
    const line = encodeControlFrame(heartbeat, keyAB);
    expect(line).toMatch(
      /^smw2 b1 b6 12 987654 HB \.p-1,s1764720000123,jF,t1764720123456\.789,e1764720123401\.5,h0\.25 [A-Za-z0-9_-]{22}\n$/,
    );
    expect(Buffer.byteLength(line)).toBeLessThanOrEqual(128);
    const keyOfB1 = (peer: string) => (peer === "b1" ? keyAB : undefined);
    expect(decodeControlFrame(line, "b6", keyOfB1)).toEqual({ ok: true, frame: heartbeat });
  });

  it("sends what is not flat numbers and booleans under known keys as base64url JSON", () => {
    const failsafe = frame(2, {
      type: "FAILSAFE",
      body: { reason: "silence of b3 (no frame for 600 ms)", origin: "b2", sentAtMs: 5 },
    });
    const line = encodeControlFrame(failsafe, keyAB);
    expect(line.split(" ")[6]).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(decodeControlFrame(line, "b", keyOf)).toEqual({ ok: true, frame: failsafe });
  });

  it("refuses a compact body that is not well-formed, even under a good MAC", () => {
    const signed = (body: string) => {
      const head = `smw2 a b 7 1 HB ${body}`;
      const tag = createHmac("sha256", keyAB).update(head).digest().subarray(0, 16);
      return `${head} ${tag.toString("base64url")}\n`;
    };
    expect(decodeControlFrame(signed(".p1,jT"), "b", keyOf)).toMatchObject({ ok: true });
    for (const body of [
      ".x1",
      ".p1,p2",
      ".p1x",
      ".pInfinity",
      ".p1e400",
      ".p",
      ".p1,,jT",
      ".p0x10",
    ])
      expect(decodeControlFrame(signed(body), "b", keyOf), body).toMatchObject({
        ok: false,
        reason: "malformed",
      });
    // A MAC of the wrong length is malformed; one of the right length but wrong is forged.
    const good = signed(".p1");
    expect(decodeControlFrame(good.replace(/ \S+\n$/, " abc\n"), "b", keyOf)).toMatchObject({
      reason: "malformed",
    });
    const flipped = good.slice(0, -3) + (good.at(-3) === "A" ? "B" : "A") + good.slice(-2);
    expect(decodeControlFrame(flipped, "b", keyOf)).toMatchObject({ reason: "forged" });
    // The last character's spare bits: another spelling of the same 128 bits is not the tag.
    const last = good.at(-2) as string;
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const sibling = alphabet[alphabet.indexOf(last) ^ 1] as string;
    const respelled = `${good.slice(0, -2)}${sibling}\n`;
    expect(Buffer.from(respelled.trim().split(" ").at(-1) as string, "base64url")).toEqual(
      Buffer.from(good.trim().split(" ").at(-1) as string, "base64url"),
    );
    expect(decodeControlFrame(respelled, "b", keyOf)).toMatchObject({ reason: "forged" });
  });

  it("never throws on arbitrary input", () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string({ maxLength: 3000 }), fc.string({ unit: "binary", maxLength: 300 })),
        (text) => {
          const result = decodeControlFrame(text, "b", keyOf);
          expect(typeof result.ok).toBe("boolean");
        },
      ),
      { numRuns: 3_000 },
    );
  });
});

describe("replay protection", () => {
  it("accepts each sequence number once, tolerates reordering within the window, refuses what is older", () => {
    const guard = new ReplayGuard(64);
    expect(guard.accept("a", 1, 1)).toBe(true);
    expect(guard.accept("a", 1, 1)).toBe(false);
    expect(guard.accept("a", 1, 5)).toBe(true);
    expect(guard.accept("a", 1, 3)).toBe(true);
    expect(guard.accept("a", 1, 3)).toBe(false);
    expect(guard.accept("a", 1, 200)).toBe(true);
    expect(guard.accept("a", 1, 136)).toBe(false);
    expect(guard.accept("a", 1, 137)).toBe(true);
  });

  it("starts afresh for a new epoch and refuses an old one", () => {
    const guard = new ReplayGuard();
    expect(guard.accept("a", 1, 50)).toBe(true);
    expect(guard.accept("a", 2, 1)).toBe(true);
    expect(guard.accept("a", 1, 51)).toBe(false);
    expect(guard.accept("c", 1, 1)).toBe(true);
  });

  it("accepts exactly the first copy of every frame, whatever the order", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 40 }), { maxLength: 200 }), (seqs) => {
        const guard = new ReplayGuard(64);
        const seen = new Set<number>();
        for (const seq of seqs) {
          expect(guard.accept("a", 1, seq)).toBe(!seen.has(seq));
          seen.add(seq);
        }
      }),
    );
  });
});

describe("control messages", () => {
  it("takes a joining heartbeat's key floor, compact on the wire, and refuses one that is not a count", () => {
    const hb = { period: -1, schedule: 1764720000000, joined: false, keyFloor: 1764719990 };
    expect(parseControlMessage("HB", hb)).toEqual({ type: "HB", ...hb });
    const line = encodeControlFrame(
      { from: "b1", to: "b2", epoch: 3, seq: 9, type: "HB", body: hb },
      Buffer.alloc(32, 1),
    );
    expect(line).toContain(",k1764719990");
    expect(line.length).toBeLessThan(128);
    for (const keyFloor of [-1, 1.5, "7", null])
      expect(parseControlMessage("HB", { ...hb, keyFloor }), String(keyFloor)).toBeUndefined();
  });

  it("checks bodies field by field", () => {
    expect(parseControlMessage("HB", { period: 2, schedule: 5000, joined: true })).toEqual({
      type: "HB",
      period: 2,
      schedule: 5000,
      joined: true,
    });
    expect(
      parseControlMessage("HB", { period: "2", schedule: 5000, joined: true }),
    ).toBeUndefined();
    expect(
      parseControlMessage("HB", { period: 2, schedule: 5000, joined: true, extra: 1 }),
    ).toBeUndefined();
    expect(parseControlMessage("DONE", { period: 1, schedule: 1000 })).toEqual({
      type: "DONE",
      period: 1,
      schedule: 1000,
    });
    // Without its schedule, a DONE could be taken for one of another schedule's periods.
    expect(parseControlMessage("DONE", { period: 1 })).toBeUndefined();
    // Two numbers and nothing else: what would cost a serial line time is refused.
    expect(parseControlMessage("DONE", { period: 1, schedule: 1000, steps: [] })).toBeUndefined();
    expect(
      parseControlMessage("FAILSAFE", { reason: "x".repeat(5000), origin: "b1", sentAtMs: 5 }),
    ).toMatchObject({ reason: "x".repeat(400), sentAtMs: 5 });
    expect(parseControlMessage("FAILSAFE", { reason: "x", origin: "b1" })).toBeUndefined();
    expect(parseControlMessage("NOPE", {})).toBeUndefined();
  });
});
