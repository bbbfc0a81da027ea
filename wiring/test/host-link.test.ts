import { describe, expect, it } from "vitest";
import {
  certificateSigningBytes,
  encodeHostLine,
  leaseSigningBytes,
  MAX_HOST_LINE_BYTES,
  parseBoardToHost,
  revokeMessages,
} from "../src/index.js";

describe("a revocation on the host link", () => {
  it("goes as one REVOKE while it fits a line", () => {
    expect(revokeMessages(["h1", "h2"], 1_700_000_000)).toEqual([
      { type: "REVOKE", hosts: ["h1", "h2"], before: 1_700_000_000 },
    ]);
  });

  it("of more hosts than one REVOKE may name, as several the host's parser takes", () => {
    const hosts = Array.from({ length: 100 }, (_, i) => `h${i + 1}`);
    const messages = revokeMessages(hosts, 5);
    expect(messages.map((m) => m.hosts.length)).toEqual([64, 36]);
    for (const message of messages)
      expect(parseBoardToHost(encodeHostLine(message))).toEqual(message);
  });

  it("of more hosts than one line holds, as several, each a line, naming every host once", () => {
    const hosts = Array.from(
      { length: 200 },
      (_, i) => `payload-host-${String(i).padStart(3, "0")}-rack-b`,
    );
    // One message would not fit: encoding it throws.
    expect(() => encodeHostLine({ type: "REVOKE", hosts, before: 1 })).toThrow(RangeError);
    const messages = revokeMessages(hosts, 1_700_000_000);
    expect(messages.length).toBeGreaterThan(1);
    for (const message of messages) {
      const line = encodeHostLine(message);
      expect(Buffer.byteLength(line)).toBeLessThanOrEqual(MAX_HOST_LINE_BYTES + 1);
      expect(parseBoardToHost(line)).toEqual(message);
    }
    expect(messages.flatMap((m) => m.hosts)).toEqual(hosts);
  });
});

describe("a key lease on the host link", () => {
  const lease = {
    host: "h1",
    board: "b1",
    epoch: 1_700_000_000,
    notAfterMs: 1_700_000_002_000,
    signature: "c2lnbmF0dXJl",
  };

  it("goes as one LEASE line the host's parser gives back whole", () => {
    expect(parseBoardToHost(encodeHostLine({ type: "LEASE", lease }))).toEqual({
      type: "LEASE",
      lease,
    });
  });

  it("is refused whole when any field is missing or out of shape", () => {
    const bad = [
      { ...lease, epoch: -1 },
      { ...lease, notAfterMs: 1.5 },
      { ...lease, host: "../etc" },
      { ...lease, board: "" },
      { ...lease, signature: "not base64!" },
      { ...lease, extra: "x".repeat(5_000) },
      { host: "h1" },
    ];
    for (const each of bad) {
      const line = `smwh1 LEASE ${Buffer.from(JSON.stringify({ lease: each })).toString("base64url")}\n`;
      expect(parseBoardToHost(line), JSON.stringify(each).slice(0, 80)).toBeUndefined();
    }
  });

  it("is signed over bytes no certificate's signature covers", () => {
    const leaseBytes = leaseSigningBytes(lease).toString();
    // A certificate's fields in the same places, as a forger would line them up.
    const certificateBytes = certificateSigningBytes({
      host: "lease",
      board: "h1",
      period: 1_700_000_000,
      publicKey: "b1",
      issuedAt: "1700000002000",
    }).toString();
    expect(leaseBytes).not.toBe(certificateBytes);
    expect(JSON.parse(leaseBytes)[0]).toBe("lease");
  });
});
