/** Ed25519 signatures as hosts check them, each valid one checked once per process. */
import { generateKeyPairSync, sign } from "node:crypto";
import { describe, expect, it } from "vitest";
import { Ed25519Scheme, publicKeyText } from "../src/replica/ed25519.js";
import { MAX_REMEMBERED_BYTES, VerifiedSignatures } from "../src/replica/verified-signatures.js";

function signed(text: string) {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const bytes = Buffer.from(text);
  return {
    key: publicKeyText(publicKey),
    bytes,
    signature: sign(null, bytes, privateKey).toString("base64"),
  };
}

describe("Ed25519 signatures", () => {
  it("are checked once for every scheme sharing a memo: a lease every client in a process receives", () => {
    const memo = new VerifiedSignatures();
    const clients = [new Ed25519Scheme(memo), new Ed25519Scheme(memo), new Ed25519Scheme(memo)];
    const lease = signed('{"host":"h1","epoch":7,"notAfterMs":1000}');
    for (const scheme of clients)
      expect(scheme.verify(lease.key, lease.bytes, lease.signature)).toBe(true);
    expect(memo.hits).toBe(2);
  });

  it("are taken from the memo only for the very key, bytes and signature found valid", () => {
    const memo = new VerifiedSignatures();
    const scheme = new Ed25519Scheme(memo);
    const a = signed('{"epoch":7}');
    const b = signed('{"epoch":8}');
    expect(scheme.verify(a.key, a.bytes, a.signature)).toBe(true);
    // The valid signature with other bytes, under another key, or bytes with another's signature.
    expect(scheme.verify(a.key, Buffer.from('{"epoch":9}'), a.signature)).toBe(false);
    expect(scheme.verify(b.key, a.bytes, a.signature)).toBe(false);
    expect(scheme.verify(a.key, a.bytes, b.signature)).toBe(false);
    // A key and signature that, joined, spell the same text as another pair.
    expect(scheme.verify(a.key.slice(0, -1), a.bytes, `${a.key.slice(-1)}${a.signature}`)).toBe(
      false,
    );
    expect(memo.hits).toBe(0);
  });

  it("over more than a lease's bytes are checked each time: a Byzantine replica signs megabytes at will", () => {
    const memo = new VerifiedSignatures();
    const scheme = new Ed25519Scheme(memo);
    const large = signed("x".repeat(MAX_REMEMBERED_BYTES + 1));
    expect(scheme.verify(large.key, large.bytes, large.signature)).toBe(true);
    expect(scheme.verify(large.key, large.bytes, large.signature)).toBe(true);
    expect(memo.hits).toBe(0);
    const small = signed("x".repeat(MAX_REMEMBERED_BYTES));
    expect(scheme.verify(small.key, small.bytes, small.signature)).toBe(true);
    expect(scheme.verify(small.key, small.bytes, small.signature)).toBe(true);
    expect(memo.hits).toBe(1);
  });

  it("found invalid are checked again each time, and the memo keeps only its capacity", () => {
    const memo = new VerifiedSignatures(2);
    const scheme = new Ed25519Scheme(memo);
    const forged = { ...signed("x"), signature: signed("y").signature };
    expect(scheme.verify(forged.key, forged.bytes, forged.signature)).toBe(false);
    expect(scheme.verify(forged.key, forged.bytes, forged.signature)).toBe(false);
    const three = [signed("1"), signed("2"), signed("3")];
    for (const s of three) expect(scheme.verify(s.key, s.bytes, s.signature)).toBe(true);
    expect(memo.hits).toBe(0);
    // The oldest went out; the newest two are still known.
    const [first, second, third] = three as [typeof forged, typeof forged, typeof forged];
    expect(memo.has(first.key, first.bytes, first.signature)).toBe(false);
    expect(memo.has(second.key, second.bytes, second.signature)).toBe(true);
    expect(memo.has(third.key, third.bytes, third.signature)).toBe(true);
  });
});
