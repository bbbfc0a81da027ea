import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { compareKeys } from "../src/kv/key-order.js";
import {
  encodeKvOperation,
  encodeKvResult,
  isReadOnly,
  type KvOperation,
  type KvResult,
  MAX_KEY_BYTES,
  MAX_SCAN_ANSWER_BYTES,
  MAX_SCAN_LIMIT,
  MAX_VALUE_BYTES,
  parseKvOperation,
  parseKvResult,
} from "../src/kv/kv-operation.js";
import { KvStore } from "../src/kv/kv-store.js";
import { PARTITION_COUNT, partitionOf } from "../src/kv/partition-tree.js";
import { SortedKeys } from "../src/kv/sorted-keys.js";

const byBytes = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));
const put = (key: string, value: string): KvOperation => ({ op: "put", key, value });
const scan = (from: string, to: string, limit: number): KvOperation => ({
  op: "scan",
  from,
  to,
  limit,
});
const storeWith = (entries: Array<[string, string]>) => {
  const store = new KvStore();
  for (const [k, v] of entries) store.apply(put(k, v));
  return store;
};
const allEntries = (store: KvStore) => store.apply(scan("", "", MAX_SCAN_LIMIT));

// Well-formed strings with astral characters, so UTF-8 and UTF-16 orders disagree.
const keyArb = fc.string({ unit: "binary", minLength: 1, maxLength: 6 });
const valueArb = fc.string({ unit: "binary", maxLength: 12 });

describe("key order", () => {
  it("is the order of UTF-8 bytes, not of JS strings", () => {
    expect(compareKeys("z", "é")).toBeLessThan(0);
    expect(compareKeys("\uFF5A", "😀")).toBeLessThan(0);
    expect("\uFF5A" < "😀").toBe(false); // JS string order says otherwise
    expect(compareKeys("ab", "a")).toBeGreaterThan(0);
    fc.assert(
      fc.property(keyArb, keyArb, (a, b) => {
        expect(Math.sign(compareKeys(a, b))).toBe(Math.sign(byBytes(a, b)));
      }),
      { numRuns: 2000 },
    );
  });
});

describe("operations", () => {
  it("put, get and del return the previous value", () => {
    const store = new KvStore();
    expect(store.apply({ op: "get", key: "a" })).toEqual({ op: "get", value: null });
    expect(store.apply(put("a", "1"))).toEqual({ op: "put", previous: null });
    expect(store.apply(put("a", "2"))).toEqual({ op: "put", previous: "1" });
    expect(store.apply({ op: "get", key: "a" })).toEqual({ op: "get", value: "2" });
    expect(store.get("a")).toBe("2");
    expect(store.apply({ op: "del", key: "a" })).toEqual({ op: "del", previous: "2" });
    expect(store.apply({ op: "del", key: "a" })).toEqual({ op: "del", previous: null });
    expect(store.get("a")).toBeNull();
    expect(store.apply(put("empty", ""))).toEqual({ op: "put", previous: null });
    expect(store.apply({ op: "get", key: "empty" })).toEqual({ op: "get", value: "" });
  });

  it("cas compares with the current value, null meaning absent, and reports the value after", () => {
    const store = new KvStore();
    const cas = (expected: string | null, value: string): KvResult =>
      store.apply({ op: "cas", key: "k", expected, value });
    expect(cas("x", "1")).toEqual({ op: "cas", ok: false, current: null });
    expect(store.get("k")).toBeNull();
    expect(cas(null, "1")).toEqual({ op: "cas", ok: true, current: "1" });
    expect(cas(null, "2")).toEqual({ op: "cas", ok: false, current: "1" });
    expect(cas("1", "2")).toEqual({ op: "cas", ok: true, current: "2" });
    expect(cas("1", "3")).toEqual({ op: "cas", ok: false, current: "2" });
    expect(cas("", "3")).toEqual({ op: "cas", ok: false, current: "2" });
    expect(store.get("k")).toBe("2");
    expect(store.entryCount).toBe(1);
  });

  it("scan returns keys from <= k < to in UTF-8 byte order, at most limit", () => {
    const keys = ["a", "b", "c", "z", "é", "\uFF5A", "😀"]; // in UTF-8 byte order
    const store = storeWith([...keys].reverse().map((k) => [k, `v${k}`]));
    const scanned = (from: string, to: string, limit: number) => {
      const r = store.apply(scan(from, to, limit));
      if (r.op !== "scan") throw new Error("not a scan result");
      return r.entries.map(([k]) => k);
    };
    expect(scanned("", "", 100)).toEqual(keys);
    expect(allEntries(store)).toEqual({ op: "scan", entries: keys.map((k) => [k, `v${k}`]) });
    expect(scanned("", "", 3)).toEqual(["a", "b", "c"]);
    expect(scanned("b", "z", 100)).toEqual(["b", "c"]);
    expect(scanned("bb", "", 2)).toEqual(["c", "z"]);
    expect(scanned("z", "😀", 100)).toEqual(["z", "é", "\uFF5A"]);
    expect(scanned("é", "", 100)).toEqual(["é", "\uFF5A", "😀"]);
    expect(scanned("😀", "", 100)).toEqual(["😀"]);
    expect(scanned("😀\u0000", "", 100)).toEqual([]);
    expect(scanned("c", "c", 100)).toEqual([]);
    expect(scanned("z", "a", 100)).toEqual([]);
    expect(scanned("", "", 1)).toEqual(["a"]);
  });

  it("tracks entry count and size in UTF-8 bytes", () => {
    const store = new KvStore();
    store.apply(put("é", "😀")); // 2 + 4 bytes
    store.apply(put("ab", "c"));
    expect(store.entryCount).toBe(2);
    expect(store.sizeBytes).toBe(6 + 3);
    store.apply(put("ab", "cccc"));
    expect(store.sizeBytes).toBe(6 + 6);
    store.apply({ op: "cas", key: "é", expected: "😀", value: "" });
    expect(store.sizeBytes).toBe(2 + 6);
    store.apply({ op: "del", key: "ab" });
    expect(store.entryCount).toBe(1);
    expect(store.sizeBytes).toBe(2);
  });

  it("only get and scan are read-only", () => {
    expect(isReadOnly({ op: "get", key: "a" })).toBe(true);
    expect(isReadOnly(scan("", "", 1))).toBe(true);
    expect(isReadOnly(put("a", "b"))).toBe(false);
    expect(isReadOnly({ op: "del", key: "a" })).toBe(false);
    expect(isReadOnly({ op: "cas", key: "a", expected: null, value: "b" })).toBe(false);
  });

  it("matches a plain map under random operations", () => {
    const smallKey = fc.constantFrom("a", "b", "é", "😀", "\uFF5A", "ab", "z");
    const opArb: fc.Arbitrary<KvOperation> = fc.oneof(
      fc.record({ op: fc.constant("get" as const), key: smallKey }),
      fc.record({ op: fc.constant("put" as const), key: smallKey, value: valueArb }),
      fc.record({ op: fc.constant("del" as const), key: smallKey }),
      fc.record({
        op: fc.constant("cas" as const),
        key: smallKey,
        expected: fc.option(fc.constantFrom("", "x", "y")),
        value: fc.constantFrom("x", "y"),
      }),
      fc.record({
        op: fc.constant("scan" as const),
        from: fc.constantFrom("", "a", "b", "é"),
        to: fc.constantFrom("", "b", "z", "😀"),
        limit: fc.integer({ min: 1, max: 4 }),
      }),
    );
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 60 }), (ops) => {
        const store = new KvStore();
        const model = new Map<string, string>();
        for (const op of ops) {
          expect(store.apply(op)).toEqual(applyToModel(model, op));
        }
        expect(store.entryCount).toBe(model.size);
      }),
      { numRuns: 200 },
    );
  });
});

function applyToModel(model: Map<string, string>, op: KvOperation): KvResult {
  const current = model.get("key" in op ? op.key : "") ?? null;
  switch (op.op) {
    case "get":
      return { op: "get", value: current };
    case "put":
      model.set(op.key, op.value);
      return { op: "put", previous: current };
    case "del":
      model.delete(op.key);
      return { op: "del", previous: current };
    case "cas":
      if (current !== op.expected) return { op: "cas", ok: false, current };
      model.set(op.key, op.value);
      return { op: "cas", ok: true, current: op.value };
    case "scan": {
      const entries = [...model]
        .filter(([k]) => byBytes(k, op.from) >= 0 && (op.to === "" || byBytes(k, op.to) < 0))
        .sort(([a], [b]) => byBytes(a, b))
        .slice(0, op.limit);
      return { op: "scan", entries };
    }
  }
}

describe("validation", () => {
  const errorOf = (input: unknown) => {
    const r = parseKvOperation(input);
    return "error" in r ? r.error : null;
  };

  it("accepts well-formed operations as they are", () => {
    const ops: KvOperation[] = [
      { op: "get", key: "a" },
      put("k".repeat(MAX_KEY_BYTES), "v".repeat(MAX_VALUE_BYTES)),
      put("é".repeat(MAX_KEY_BYTES / 2), ""),
      { op: "del", key: "😀" },
      { op: "cas", key: "a", expected: null, value: "b" },
      { op: "cas", key: "a", expected: "", value: "b" },
      scan("", "", MAX_SCAN_LIMIT),
      scan("a", "b", 1),
    ];
    for (const op of ops) expect(parseKvOperation(op)).toEqual(op);
  });

  it("names the size of an oversized key or value, counted in UTF-8 bytes", () => {
    expect(errorOf(put("k".repeat(1500), "v"))).toBe("key: 1500 bytes, at most 1024");
    expect(errorOf({ op: "get", key: "é".repeat(600) })).toBe("key: 1200 bytes, at most 1024");
    expect(errorOf(put("k", "v".repeat(MAX_VALUE_BYTES + 1)))).toBe(
      `value: ${MAX_VALUE_BYTES + 1} bytes, at most ${MAX_VALUE_BYTES}`,
    );
    expect(
      errorOf({ op: "cas", key: "k", expected: "😀".repeat(MAX_VALUE_BYTES), value: "" }),
    ).toBe(`expected: ${4 * MAX_VALUE_BYTES} bytes, at most ${MAX_VALUE_BYTES}`);
    expect(errorOf(scan("x".repeat(MAX_KEY_BYTES + 1), "", 1))).toMatch(/^from: 1025 bytes/);
  });

  it("refuses bad shapes, naming the field", () => {
    expect(errorOf(null)).toBe("operation: not an object");
    expect(errorOf([])).toBe("operation: not an object");
    expect(errorOf("get a")).toBe("operation: not an object");
    expect(errorOf({ key: "a" })).toMatch(/^op: expected one of get, put, del, cas, scan/);
    expect(errorOf({ op: "GET", key: "a" })).toMatch(/^op:/);
    expect(errorOf({ op: "get" })).toBe("key: missing");
    expect(errorOf({ op: "get", key: "" })).toBe("key: empty");
    expect(errorOf({ op: "get", key: 5 })).toBe("key: not a string");
    expect(errorOf({ op: "put", key: "a" })).toBe("value: missing");
    expect(errorOf({ op: "put", key: "a", value: null })).toBe("value: not a string");
    expect(errorOf({ op: "get", key: "a", value: "b" })).toBe("value: unexpected field");
    expect(errorOf(JSON.parse('{"op":"get","key":"a","__proto__":1}'))).toBe(
      "__proto__: unexpected field",
    );
    expect(errorOf({ op: "cas", key: "a", value: "b" })).toBe("expected: missing");
    expect(errorOf({ op: "cas", key: "a", expected: 1, value: "b" })).toBe(
      "expected: not a string",
    );
    expect(errorOf(scan("", "", 0))).toMatch(/^limit:/);
    expect(errorOf(scan("", "", 1.5))).toMatch(/^limit:/);
    expect(errorOf({ op: "scan", from: "", to: "", limit: "5" })).toMatch(/^limit:/);
    expect(errorOf(scan("", "", MAX_SCAN_LIMIT + 1))).toBe("limit: 1001, at most 1000");
    expect(errorOf({ op: "scan", from: "", limit: 1 })).toBe("to: missing");
  });

  it("refuses lone surrogates, which UTF-8 cannot carry", () => {
    expect(errorOf({ op: "get", key: "a\uD800" })).toBe("key: lone surrogate, not valid UTF-8");
    expect(errorOf(JSON.parse('{"op":"put","key":"a","value":"\\udc00"}'))).toMatch(/^value:/);
    expect(errorOf({ op: "get", key: "\uD83D\uDE00" })).toBeNull();
  });

  it("apply throws on an operation parse would refuse, leaving the store unchanged", () => {
    const store = new KvStore();
    expect(() => store.apply(put("k".repeat(MAX_KEY_BYTES + 1), "v"))).toThrow(RangeError);
    expect(() => store.apply(put("a\uDFFF", "v"))).toThrow(/lone surrogate/);
    expect(store.entryCount).toBe(0);
  });

  it("bounds a scan's answer in bytes as JSON writes them, always with its first entry, and says so", () => {
    const big = "v".repeat(700 * 1024);
    // Control characters are written six bytes each: one such value alone is over the bound.
    const escaped = "\u0001".repeat(400 * 1024);
    const store = storeWith([
      ["a", big],
      ["b", big],
      ["c", big],
      ["d", escaped],
      ["e", "small"],
    ]);
    const r = store.apply(scan("", "", 10));
    expect(r).toEqual({
      op: "scan",
      entries: [
        ["a", big],
        ["b", big],
      ],
      more: true,
    });
    expect(Buffer.byteLength(JSON.stringify(r))).toBeLessThanOrEqual(MAX_SCAN_ANSWER_BYTES + 64);
    // An entry over the bound on its own is answered alone.
    expect(store.apply(scan("d", "", 10))).toEqual({
      op: "scan",
      entries: [["d", escaped]],
      more: true,
    });
    // Within the bound: no `more`, even when the limit ends it.
    expect(store.apply(scan("e", "", 10))).toEqual({ op: "scan", entries: [["e", "small"]] });
    expect(store.apply(scan("c", "", 1))).toEqual({ op: "scan", entries: [["c", big]] });
    // Written and read back, `more` stays.
    expect(parseKvResult(JSON.parse(encodeKvResult(r).toString("utf8")))).toEqual(r);
  });

  it("checks results from other replicas", () => {
    const resultError = (input: unknown) => {
      const r = parseKvResult(input);
      return "error" in r ? r.error : null;
    };
    const good: KvResult[] = [
      { op: "get", value: null },
      { op: "get", value: "x" },
      { op: "put", previous: null },
      { op: "del", previous: "p" },
      { op: "cas", ok: false, current: null },
      { op: "scan", entries: [] },
      {
        op: "scan",
        entries: [
          ["z", "1"],
          ["é", "2"],
        ],
      },
    ];
    for (const r of good) expect(parseKvResult(r)).toEqual(r);
    expect(parseKvResult({ op: "scan", entries: [["a", "1"]], more: true })).toEqual({
      op: "scan",
      entries: [["a", "1"]],
      more: true,
    });
    expect(resultError({ op: "scan", entries: [], more: false })).toBe("more: if present, true");
    expect(resultError({ op: "cas", ok: "yes", current: null })).toBe("ok: not a boolean");
    expect(resultError({ op: "put", previous: null, full: false })).toBe("full: if present, true");
    expect(resultError({ op: "del", previous: null, full: true })).toBe("full: unexpected field");
    expect(resultError({ op: "cas", ok: true, current: "v", full: true })).toBe(
      "full: if present, true, with ok false",
    );
    expect(resultError({ op: "get" })).toBe("value: missing");
    expect(resultError({ op: "get", value: 3 })).toBe("value: not a string or null");
    expect(resultError({ op: "scan", entries: [["a"]] })).toBe(
      "entries[0]: not a [key, value] pair",
    );
    expect(
      resultError({
        op: "scan",
        entries: [
          ["é", "1"],
          ["z", "2"],
        ],
      }),
    ).toBe("entries[1]: key not after the one before");
    expect(
      resultError({
        op: "scan",
        entries: [
          ["a", "1"],
          ["a", "2"],
        ],
      }),
    ).toMatch(/^entries\[1\]/);
    expect(
      resultError({ op: "scan", entries: Array.from({ length: 1001 }, (_, i) => [`${i}`, ""]) }),
    ).toBe("entries: 1001, at most 1000");
  });

  it("encodes operations and results canonically, and they parse back", () => {
    const a: KvOperation = { op: "cas", key: "k", expected: null, value: "v" };
    const b = JSON.parse('{"value":"v","expected":null,"key":"k","op":"cas"}') as KvOperation;
    expect(encodeKvOperation(b).equals(encodeKvOperation(a))).toBe(true);
    expect(encodeKvOperation(a).toString()).toBe(
      '{"op":"cas","key":"k","expected":null,"value":"v"}',
    );
    expect(encodeKvOperation(a).equals(encodeKvOperation({ ...a, expected: "" }))).toBe(false);
    const ops: KvOperation[] = [
      { op: "get", key: "é" },
      put("😀", '\u2028"'),
      { op: "del", key: "a" },
      a,
      scan("a", "", 7),
    ];
    for (const op of ops) {
      expect(parseKvOperation(JSON.parse(encodeKvOperation(op).toString("utf8")))).toEqual(op);
    }
    const results: KvResult[] = [
      { op: "get", value: "é" },
      { op: "put", previous: null },
      { op: "del", previous: "x" },
      { op: "cas", ok: true, current: "v" },
      { op: "scan", entries: [["a", "b"]] },
      { op: "put", previous: "p", full: true },
      { op: "cas", ok: false, current: null, full: true },
    ];
    for (const r of results) {
      expect(parseKvResult(JSON.parse(encodeKvResult(r).toString("utf8")))).toEqual(r);
    }
    expect(encodeKvResult({ current: "v", ok: true, op: "cas" }).toString()).toBe(
      '{"op":"cas","ok":true,"current":"v"}',
    );
  });
});

describe("digest", () => {
  it("does not depend on the order of insertion", () => {
    const contents = fc.uniqueArray(fc.tuple(keyArb, valueArb), {
      selector: ([k]) => k,
      maxLength: 40,
    });
    fc.assert(
      fc.property(
        contents.chain((entries) =>
          fc.tuple(
            fc.constant(entries),
            fc.shuffledSubarray(entries, { minLength: entries.length }),
            fc.array(keyArb, { maxLength: 5 }),
          ),
        ),
        ([entries, permuted, noise]) => {
          const a = storeWith(entries);
          // b gets the same contents by another road: permuted, with keys
          // written and removed on the way, and digests taken in between.
          const b = new KvStore();
          for (const k of noise) b.apply(put(k, "noise"));
          b.rootDigest();
          for (const [k, v] of permuted) b.apply(put(k, `${v}~`));
          b.rootDigest();
          for (const k of noise) b.apply({ op: "del", key: k });
          for (const [k, v] of permuted) b.apply(put(k, v));
          expect(b.rootDigest().equals(a.rootDigest())).toBe(true);
          expect(allEntries(b)).toEqual(allEntries(a));
          expect(b.sizeBytes).toBe(a.sizeBytes);
          expect(b.entryCount).toBe(entries.length);
        },
      ),
      { numRuns: 100 },
    );
  });

  it("changes with any write, and comes back when the contents do", () => {
    const store = storeWith([["a", "1"]]);
    const before = store.rootDigest();
    store.apply(put("a", "2"));
    const after = store.rootDigest();
    expect(after.equals(before)).toBe(false);
    store.apply(put("a", "1"));
    expect(store.rootDigest().equals(before)).toBe(true);
    store.apply(put("b", ""));
    expect(store.rootDigest().equals(before)).toBe(false);
    store.apply({ op: "del", key: "b" });
    expect(store.rootDigest().equals(before)).toBe(true);
  });
});

describe("snapshots", () => {
  const entries = Array.from({ length: 300 }, (_, i): [string, string] => [`key${i}`, `v${i}`]);

  it("do not change when the store is written afterwards", () => {
    const store = storeWith(entries);
    const snap = store.snapshot();
    const root = snap.root();
    const p = partitionOf("key7");
    const partition = snap.partitionEntries(p);
    expect(root.equals(store.rootDigest())).toBe(true);

    store.apply(put("key7", "changed"));
    store.apply({ op: "del", key: "key8" });
    store.apply(put("new", "x"));
    expect(store.rootDigest().equals(root)).toBe(false);
    expect(snap.root().equals(root)).toBe(true);
    expect(snap.partitionEntries(p)).toEqual(partition);
    expect(snap.entryCount).toBe(300);
    expect(store.entryCount).toBe(300);

    // A store rebuilt from the snapshot has the old state, and writing to it
    // leaves the snapshot alone too.
    const restored = KvStore.fromSnapshot(snap);
    expect(restored.rootDigest().equals(root)).toBe(true);
    expect(restored.get("key7")).toBe("v7");
    expect(allEntries(restored)).toEqual(allEntries(storeWith(entries)));
    restored.apply(put("key7", "again"));
    expect(snap.root().equals(root)).toBe(true);
    expect(snap.partitionEntries(p)).toEqual(partition);
    expect(store.get("key7")).toBe("changed");
  });

  it("hand out copies of their digests", () => {
    const snap = storeWith(entries).snapshot();
    const root = snap.root();
    snap.root().fill(0);
    snap.metaDigests()[0]?.fill(0);
    snap.leafDigests(0)[0]?.fill(0);
    expect(snap.root().equals(root)).toBe(true);
    expect(snap.metaDigests()[0]?.equals(Buffer.alloc(32))).toBe(false);
    expect(snap.leafDigests(0)[0]?.equals(Buffer.alloc(32))).toBe(false);
  });

  it("two snapshots in a row each keep their own state", () => {
    const store = storeWith(entries);
    const first = store.snapshot();
    store.apply(put("key1", "second"));
    const second = store.snapshot();
    store.apply(put("key1", "third"));
    expect(KvStore.fromSnapshot(first).get("key1")).toBe("v1");
    expect(KvStore.fromSnapshot(second).get("key1")).toBe("second");
    expect(store.get("key1")).toBe("third");
  });
});

describe("state transfer", () => {
  it("installing the partitions that differ makes the roots equal", () => {
    const source = storeWith(Array.from({ length: 500 }, (_, i) => [`k${i}`, `a${i}`]));
    const target = storeWith(Array.from({ length: 400 }, (_, i) => [`k${i * 2}`, `b${i}`]));
    target.apply(put("only-here", "x"));
    const snap = source.snapshot();
    const own = target.snapshot();
    let installed = 0;
    for (let p = 0; p < PARTITION_COUNT; p++) {
      if (own.leafDigest(p).equals(snap.leafDigest(p))) continue;
      target.installPartition(p, snap.partitionEntries(p));
      installed++;
    }
    expect(installed).toBeGreaterThan(0);
    expect(target.rootDigest().equals(source.rootDigest())).toBe(true);
    expect(allEntries(target)).toEqual(allEntries(source));
    expect(target.get("only-here")).toBeNull();
    expect(target.entryCount).toBe(500);
    expect(target.sizeBytes).toBe(source.sizeBytes);
    // The snapshot taken before the transfer still holds the old state.
    expect(KvStore.fromSnapshot(own).get("only-here")).toBe("x");
  });

  it("refuses entries that do not belong to the partition, changing nothing", () => {
    const store = storeWith([["a", "1"]]);
    const root = store.rootDigest();
    const p = partitionOf("a");
    const elsewhere = (p + 1) % PARTITION_COUNT;
    expect(() => store.installPartition(elsewhere, [["a", "2"]])).toThrow(/belongs elsewhere/);
    expect(() =>
      store.installPartition(p, [
        ["a", "2"],
        ["a", "3"],
      ]),
    ).toThrow(/duplicate/);
    expect(() => store.installPartition(p, [["a", "\uD800"]])).toThrow(/lone surrogate/);
    expect(() => store.installPartition(PARTITION_COUNT, [])).toThrow(RangeError);
    expect(store.rootDigest().equals(root)).toBe(true);
    store.installPartition(p, []);
    expect(store.get("a")).toBeNull();
    expect(store.entryCount).toBe(0);
    expect(store.sizeBytes).toBe(0);
    expect(store.rootDigest().equals(new KvStore().rootDigest())).toBe(true);
  });
});

describe("sorted key index", () => {
  it("matches a sorted set under inserts, removals and range queries (small chunks)", () => {
    const action = fc.oneof(
      fc.record({ insert: keyArb }),
      fc.record({ remove: keyArb }),
      fc.record({ from: fc.string({ unit: "binary", maxLength: 3 }), limit: fc.nat(20) }),
    );
    fc.assert(
      fc.property(
        fc.array(action, { maxLength: 300 }),
        fc.integer({ min: 2, max: 6 }),
        (acts, max) => {
          const index = new SortedKeys(max);
          const model = new Set<string>();
          // Any number per key, as long as each is found again with its key.
          const tagOf = (key: string) => key.length * 31 + (key.charCodeAt(0) || 0);
          for (const act of acts) {
            if ("insert" in act) {
              expect(index.insert(act.insert, tagOf(act.insert))).toBe(!model.has(act.insert));
              model.add(act.insert);
            } else if ("remove" in act) {
              expect(index.remove(act.remove)).toBe(model.has(act.remove));
              model.delete(act.remove);
            } else {
              const sorted = [...model].sort(byBytes);
              const to = sorted[Math.floor(sorted.length / 2)] ?? "";
              const expected = sorted
                .filter((k) => byBytes(k, act.from) >= 0 && (to === "" || byBytes(k, to) < 0))
                .slice(0, act.limit);
              const partitions: number[] = [];
              expect(index.range(act.from, to, act.limit, partitions)).toEqual(expected);
              expect(partitions).toEqual(expected.map(tagOf));
            }
          }
          expect([...index]).toEqual([...model].sort(byBytes));
          expect(index.size).toBe(model.size);
          for (const k of model) expect(index.partitionOf(k)).toBe(tagOf(k));
          const rebuilt = SortedKeys.fromSorted([...index], [...index].map(tagOf), max);
          expect([...rebuilt]).toEqual([...index]);
          for (const k of model) expect(rebuilt.partitionOf(k)).toBe(tagOf(k));
          const all: number[] = [];
          rebuilt.range("", "", model.size, all);
          expect(all).toEqual([...index].map(tagOf));
        },
      ),
      { numRuns: 150 },
    );
  });
});

describe("a partition's bound", () => {
  /** Keys that share one partition, as a client that chose them would find them. */
  const sharing = (count: number) => {
    const home = partitionOf("p-0");
    const keys: string[] = [];
    for (let i = 0; keys.length < count; i++)
      if (partitionOf(`p-${i}`) === home) keys.push(`p-${i}`);
    return keys;
  };
  // Encoding: 4 bytes of count, then per entry 8 bytes of lengths and the key's and value's bytes.
  const entry = (key: string, value: string) => 8 + key.length + value.length;

  it("refuses a put or cas that would take a partition past it, the same from any start", () => {
    const [a, b, c] = sharing(3) as [string, string, string];
    const max = 4 + entry(a, "x".repeat(100)) + entry(b, "y".repeat(100));
    const store = new KvStore({ maxPartitionBytes: max });
    expect(store.apply(put(a, "x".repeat(100)))).toEqual({ op: "put", previous: null });
    expect(store.apply(put(b, "y".repeat(100)))).toEqual({ op: "put", previous: null });
    const before = store.rootDigest();
    // Exactly full: one byte more is refused, nothing written.
    expect(store.apply(put(b, "y".repeat(101)))).toEqual({
      op: "put",
      previous: "y".repeat(100),
      full: true,
    });
    expect(store.apply(put(c, ""))).toEqual({ op: "put", previous: null, full: true });
    expect(store.apply({ op: "cas", key: c, expected: null, value: "z" })).toEqual({
      op: "cas",
      ok: false,
      current: null,
      full: true,
    });
    expect(store.rootDigest().equals(before)).toBe(true);
    // A write that does not grow it, and one in another partition, go through.
    expect(store.apply(put(b, "z".repeat(100)))).toEqual({ op: "put", previous: "y".repeat(100) });
    expect(store.apply(put("elsewhere", "w".repeat(50)))).toEqual({ op: "put", previous: null });
    // A delete makes room.
    store.apply({ op: "del", key: a });
    const room = "c".repeat(100 + a.length - c.length);
    expect(store.apply(put(c, room))).toEqual({ op: "put", previous: null });
    // A replica whose store came from a snapshot (a restart, a state transfer) decides the same.
    for (const other of [KvStore.fromSnapshot(store.snapshot(), { maxPartitionBytes: max })]) {
      expect(other.apply(put(a, "a"))).toEqual({ op: "put", previous: null, full: true });
      expect(store.apply(put(a, "a"))).toEqual({ op: "put", previous: null, full: true });
    }
  });

  it("is counted in UTF-8 bytes, over partitions installed by a state transfer too", () => {
    const [a, b] = sharing(2) as [string, string];
    const max = 4 + entry(a, "") + 2 * 3 + entry(b, "");
    const store = new KvStore({ maxPartitionBytes: max });
    store.apply(put(a, "x".repeat(12)));
    // The partition as another replica's checkpoint had it, replacing what was counted.
    store.installPartition(partitionOf(a), [[a, "€"]]); // 3 bytes in UTF-8
    expect(store.apply(put(b, "€"))).toEqual({ op: "put", previous: null });
    expect(store.apply(put(b, "€x"))).toEqual({ op: "put", previous: "€", full: true });
  });
});
