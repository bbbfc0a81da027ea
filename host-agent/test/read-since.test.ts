import { describe, expect, it } from "vitest";
import { partitionOf } from "../src/kv/partition-tree.js";
import { ReadSince } from "../src/replica/read-since.js";

/** A key in another partition than `key`. */
function keyApartFrom(key: string): string {
  for (let i = 0; ; i++) if (partitionOf(`other-${i}`) !== partitionOf(key)) return `other-${i}`;
}

describe("since when a read's result has held", () => {
  it("names the last batch that wrote in the key's partition, or the state's base", () => {
    const since = new ReadSince(10);
    const other = keyApartFrom("x");
    expect(since.since({ op: "get", key: "x" })).toBe(10);
    since.noteExecuted({ op: "put", key: "x", value: "1" }, 12);
    since.noteExecuted({ op: "put", key: other, value: "1" }, 15);
    // Reads and gets ordered change nothing.
    since.noteExecuted({ op: "get", key: "x" }, 16);
    since.noteExecuted({ op: "scan", from: "", to: "", limit: 10 }, 17);
    expect(since.since({ op: "get", key: "x" })).toBe(12);
    expect(since.since({ op: "get", key: other })).toBe(15);
    // A delete and a cas (even one that fails) count as writes.
    since.noteExecuted({ op: "del", key: "x" }, 18);
    expect(since.since({ op: "get", key: "x" })).toBe(18);
    since.noteExecuted({ op: "cas", key: other, expected: "no", value: "2" }, 19);
    expect(since.since({ op: "get", key: other })).toBe(19);
  });

  it("takes a scan to read everything: the last batch that wrote anywhere", () => {
    const since = new ReadSince(0);
    since.noteExecuted({ op: "put", key: "a", value: "1" }, 3);
    since.noteExecuted({ op: "put", key: "zzz", value: "1" }, 5);
    expect(since.since({ op: "scan", from: "a", to: "b", limit: 1 })).toBe(5);
  });

  it("knows nothing from before a state taken whole: every read holds from its base", () => {
    const since = new ReadSince(0);
    since.noteExecuted({ op: "put", key: "x", value: "1" }, 3);
    since.reset(40);
    expect(since.since({ op: "get", key: "x" })).toBe(40);
    expect(since.since({ op: "get", key: keyApartFrom("x") })).toBe(40);
    // A cold start going back to an older checkpoint: the base moves down.
    since.reset(16);
    expect(since.since({ op: "get", key: "x" })).toBe(16);
  });
});
