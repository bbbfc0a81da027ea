/**
 * The session MAC's HMAC (`hmac-key.ts`): the value RFC 2104 defines, whatever the key's length
 * and however calls under different keys interleave (each key reuses its own blocks).
 */
import { createHash, createHmac, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { HmacKey } from "../src/replica/hmac-key.js";
import { macDigest } from "../src/replica/sessions.js";

const digestOf = (text: string) => createHash("sha256").update(text).digest();

describe("HmacKey", () => {
  it("gives node's HMAC-SHA256 for keys of every length up to a block", () => {
    for (const length of [0, 1, 31, 32, 33, 63, 64]) {
      const key = randomBytes(length);
      const hmac = new HmacKey(key);
      for (const text of ["", "a", "smwm1 r1 3\n{}"]) {
        const digest = digestOf(text);
        expect(hmac.of(digest).equals(createHmac("sha256", key).update(digest).digest())).toBe(
          true,
        );
      }
    }
  });

  it("keeps two keys' MACs apart when their calls interleave", () => {
    const [k1, k2] = [randomBytes(32), randomBytes(32)];
    const [h1, h2] = [new HmacKey(k1), new HmacKey(k2)];
    const [d1, d2] = [digestOf("one"), digestOf("two")];
    const first = h1.of(d1);
    const second = h2.of(d2);
    // A returned MAC is not a view of a block reused by the next call.
    h1.of(d2);
    expect(first.equals(createHmac("sha256", k1).update(d1).digest())).toBe(true);
    expect(second.equals(createHmac("sha256", k2).update(d2).digest())).toBe(true);
  });

  it("refuses a key longer than a block and input that is not a SHA-256 digest", () => {
    expect(() => new HmacKey(randomBytes(65))).toThrow(/65 bytes/);
    expect(() => new HmacKey(randomBytes(32)).of(Buffer.from("short"))).toThrow(/5 bytes/);
  });
});

describe("macDigest", () => {
  it("is the SHA-256 of the bytes a MAC covers", () => {
    const bytes = Buffer.from("smwm1 r1 3\n{}");
    expect(macDigest(bytes).equals(createHash("sha256").update(bytes).digest())).toBe(true);
  });
});
