import { describe, expect, it } from "vitest";
import {
  encodeHostLine,
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
