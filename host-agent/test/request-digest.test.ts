/**
 * A request's digest names exactly what executes: every field that decides it is bound, and
 * nothing else (the order its fields were written in) changes it.
 */
import { describe, expect, it } from "vitest";
import { encodeKvOperation } from "../src/kv/kv-operation.js";
import { type ClientRequest, requestBytes, requestDigest } from "../src/replica/messages.js";

const put = (client: string, ts: number, key: string, value: string): ClientRequest => ({
  client,
  ts,
  op: { op: "put", key, value },
});

describe("a request's digest", () => {
  it("changes with every field that decides what executes", () => {
    const variants: ClientRequest[] = [
      put("c1", 1, "ab", "c"),
      put("c1", 1, "a", "bc"),
      put("c1", 2, "ab", "c"),
      put("c2", 1, "ab", "c"),
      put("c1", 12, "ab", "c"),
      put("c1", 1, "ab", 'c"\n'),
      put("c1", 1, "ab", "c\n"),
      { client: "c1", ts: 1, op: { op: "cas", key: "ab", expected: null, value: "c" } },
      { client: "c1", ts: 1, op: { op: "cas", key: "ab", expected: "c", value: "c" } },
      { client: "c1", ts: 1, op: { op: "get", key: "ab" } },
      { client: "c1", ts: 1, op: { op: "del", key: "ab" } },
    ];
    const digests = variants.map(requestDigest);
    expect(new Set(digests).size).toBe(variants.length);
  });

  it("is the same whatever order the request's fields were written in", () => {
    const a = put("c1", 7, "k", "v");
    const b = JSON.parse('{"op":{"value":"v","key":"k","op":"put"},"ts":7,"client":"c1"}');
    expect(requestDigest(b)).toBe(requestDigest(a));
  });

  it("covers a header line naming client and number, then the operation's bytes", () => {
    const r = put("c1", 3, "k", "line\nbreak");
    const bytes = requestBytes(r);
    const header = 'smw-request-2\n["c1",3]\n';
    expect(bytes.subarray(0, header.length).toString()).toBe(header);
    expect(bytes.subarray(header.length).equals(encodeKvOperation(r.op))).toBe(true);
  });
});
