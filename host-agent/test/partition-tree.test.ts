import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { decodeSnapshot, encodeSnapshot } from "../src/kv/kv-snapshot.js";
import { KvStore } from "../src/kv/kv-store.js";
import {
  decodePartition,
  EMPTY_PARTITION_DIGEST,
  EMPTY_ROOT_DIGEST,
  encodedPartitionBytes,
  encodePartition,
  encodePartitionSlice,
  FANOUT,
  leafDigest,
  leafOfPieces,
  META_COUNT,
  metaDigest,
  PARTITION_COUNT,
  PIECE_BYTES,
  partitionOf,
  pieceDigests,
  rootDigest,
} from "../src/kv/partition-tree.js";

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest();
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
/** Encodes entries as given, in the given order, with no checks: for building bad input. */
const rawPartition = (entries: Array<[string | Buffer, string | Buffer]>, count = entries.length) =>
  Buffer.concat([
    u32(count),
    ...entries.flatMap(([k, v]) => {
      const kb = Buffer.from(k);
      const vb = Buffer.from(v);
      return [u32(kb.length), kb, u32(vb.length), vb];
    }),
  ]);
/** The first `count` keys prefix0, prefix1, ... that fall in `partition`. */
const keysIn = (partition: number, count: number, prefix: string) => {
  const keys: string[] = [];
  for (let i = 0; keys.length < count; i++) {
    if (partitionOf(`${prefix}${i}`) === partition) keys.push(`${prefix}${i}`);
  }
  return keys;
};
const storeWith = (entries: Array<[string, string]>) => {
  const store = new KvStore();
  for (const [key, value] of entries) store.apply({ op: "put", key, value });
  return store;
};

describe("partition tree", () => {
  it("hashes a key to a partition: first 4 bytes of sha256, big-endian, mod 4096", () => {
    expect(PARTITION_COUNT).toBe(4096);
    expect(FANOUT * META_COUNT).toBe(PARTITION_COUNT);
    for (const key of ["a", "é", "😀", "key12345"]) {
      expect(partitionOf(key)).toBe(sha(Buffer.from(key, "utf8")).readUInt32BE(0) % 4096);
    }
  });

  it("encodes a partition canonically: count, then sorted length-prefixed keys and values", () => {
    const bytes = encodePartition([
      ["é", "2"],
      ["b", ""],
    ]);
    expect(bytes.toString("hex")).toBe(
      // count 2; "b" -> ""; "é" (c3 a9) -> "2"
      ["00000002", "00000001", "62", "00000000", "00000002", "c3a9", "00000001", "32"].join(""),
    );
    expect(encodePartition([]).toString("hex")).toBe("00000000");
    expect(EMPTY_PARTITION_DIGEST.equals(sha(u32(0)))).toBe(true);
    expect(() =>
      encodePartition([
        ["a", "1"],
        ["a", "2"],
      ]),
    ).toThrow(/duplicate/);
  });

  it("builds metas from 64 leaves and the root from 64 metas", () => {
    const store = storeWith(Array.from({ length: 200 }, (_, i) => [`k${i}`, `v${i}`]));
    const snap = store.snapshot();
    const leaves = Array.from({ length: PARTITION_COUNT }, (_, p) =>
      leafDigest(encodePartition(snap.partitionEntries(p))),
    );
    const metas = Array.from({ length: META_COUNT }, (_, m) =>
      sha(Buffer.concat(leaves.slice(m * FANOUT, (m + 1) * FANOUT))),
    );
    const root = sha(Buffer.concat(metas));
    expect(store.rootDigest().equals(root)).toBe(true);
    expect(snap.root().equals(root)).toBe(true);
    expect(rootDigest(metas).equals(root)).toBe(true);
    for (let m = 0; m < META_COUNT; m++) {
      expect(snap.metaDigests()[m]?.equals(metas[m] as Buffer)).toBe(true);
      expect(metaDigest(snap.leafDigests(m)).equals(metas[m] as Buffer)).toBe(true);
    }
    expect(snap.leafDigest(partitionOf("k3")).equals(leaves[partitionOf("k3")] as Buffer)).toBe(
      true,
    );
    expect(new KvStore().rootDigest().equals(EMPTY_ROOT_DIGEST)).toBe(true);
    expect(() => metaDigest(leaves.slice(0, 63))).toThrow(RangeError);
    expect(() => rootDigest([...metas.slice(0, 63), Buffer.alloc(31)])).toThrow(RangeError);
  });
});

describe("decodePartition", () => {
  const p = partitionOf("é0");
  const keys = keysIn(p, 4, "é");
  const bom = keysIn(p, 1, "\uFEFF")[0] as string;

  it("reads back what encodePartition wrote", () => {
    const entries: Array<[string, string]> = [
      ...keys.map((k, i): [string, string] => [k, `value ${i} 😀`]),
      [bom, "\uFEFFkept"],
    ];
    const bytes = encodePartition(entries);
    const decoded = decodePartition(bytes, p);
    expect(decoded).toEqual(
      [...entries].sort(([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b))),
    );
    expect(decodePartition(encodePartition([]), 17)).toEqual([]);
    // A view into a larger buffer decodes the same.
    const padded = Buffer.concat([Buffer.from("xx"), bytes, Buffer.from("yy")]);
    expect(decodePartition(padded.subarray(2, 2 + bytes.length), p)).toEqual(decoded);
  });

  it("refuses unsorted, duplicate and misplaced keys", () => {
    const [a, b] = [...keys].sort() as [string, string];
    const wrongOrder = rawPartition([
      [b, "1"],
      [a, "2"],
    ]);
    expect(decodePartition(wrongOrder, p)).toEqual({
      error: "entry 1: key sorts before the previous one",
    });
    expect(
      decodePartition(
        rawPartition([
          [a, "1"],
          [a, "2"],
        ]),
        p,
      ),
    ).toEqual({ error: "entry 1: duplicate key" });
    const other = keysIn((p + 1) % PARTITION_COUNT, 1, "x")[0] as string;
    expect(decodePartition(rawPartition([[other, "v"]]), p)).toEqual({
      error: `entry 0: key belongs to partition ${(p + 1) % PARTITION_COUNT}, not ${p}`,
    });
    expect(decodePartition(encodePartition([[a, "1"]]), (p + 1) % PARTITION_COUNT)).toHaveProperty(
      "error",
    );
  });

  it("refuses bad lengths, truncation, trailing bytes and invalid UTF-8", () => {
    const [a] = keys as [string];
    const good = encodePartition([[a, "value"]]);
    const errorOf = (bytes: Uint8Array, partition = p) => {
      const r = decodePartition(bytes, partition);
      return "error" in r ? r.error : null;
    };
    expect(errorOf(good)).toBeNull();
    expect(errorOf(Buffer.concat([good, Buffer.from([0])]))).toBe(
      "1 trailing bytes after 1 entries",
    );
    for (let n = 0; n < good.length; n++) expect(errorOf(good.subarray(0, n))).not.toBeNull();
    expect(errorOf(rawPartition([[a, "v"]], 2))).toMatch(/cannot fit|past the end/);
    expect(errorOf(rawPartition([[a, "v"]], 0xffffffff))).toMatch(/cannot fit/);
    expect(errorOf(rawPartition([["", "v"]]))).toMatch(/^entry 0 key: 0 bytes/);
    expect(errorOf(rawPartition([[a, Buffer.from([0xff])]]))).toBe(
      "entry 0 value: not valid UTF-8",
    );
    // A surrogate encoded as if it were a character (CESU-8) is not UTF-8.
    expect(errorOf(rawPartition([[Buffer.from([0xed, 0xa0, 0x80]), "v"]]))).toBe(
      "entry 0 key: not valid UTF-8",
    );
    const longKey = rawPartition([["k".repeat(1025), "v"]]);
    expect(errorOf(longKey)).toBe("entry 0 key: 1025 bytes, expected 1..1024");
    expect(errorOf(good, PARTITION_COUNT)).toMatch(/^partition index 4096/);
    expect(errorOf(good, -1)).toMatch(/^partition index -1/);
  });
});

describe("snapshot file", () => {
  const entries = Array.from({ length: 120 }, (_, i): [string, string] => [
    i % 3 === 0 ? `é${i}` : i % 3 === 1 ? `😀${i}` : `k${i}`,
    `value-${i}`.repeat(i % 5),
  ]);

  it("round-trips, with the same digests, contents and bytes", () => {
    const store = storeWith(entries);
    const snap = store.snapshot();
    const bytes = encodeSnapshot(snap);
    expect(bytes.subarray(0, 7).toString()).toBe("SMWKV1\n");
    expect(bytes.subarray(-32).equals(snap.root())).toBe(true);
    const decoded = decodeSnapshot(bytes);
    if ("error" in decoded) throw new Error(decoded.error);
    expect(decoded.root().equals(snap.root())).toBe(true);
    expect(decoded.metaDigests()).toEqual(snap.metaDigests());
    expect(decoded.sizeBytes).toBe(store.sizeBytes);
    expect(decoded.entryCount).toBe(entries.length);
    for (const [key, value] of entries) {
      expect(decoded.partitionEntries(partitionOf(key))).toContainEqual([key, value]);
    }
    expect(encodeSnapshot(decoded).equals(bytes)).toBe(true);
    const restored = KvStore.fromSnapshot(decoded);
    expect(restored.rootDigest().equals(store.rootDigest())).toBe(true);
    expect(restored.apply({ op: "scan", from: "", to: "", limit: 1000 })).toEqual(
      store.apply({ op: "scan", from: "", to: "", limit: 1000 }),
    );

    const empty = encodeSnapshot(new KvStore().snapshot());
    expect(empty.length).toBe(7 + 32);
    const decodedEmpty = decodeSnapshot(empty);
    expect("error" in decodedEmpty ? decodedEmpty.error : decodedEmpty.entryCount).toBe(0);
  });

  it("refuses a snapshot with any single byte changed, without throwing", () => {
    const bytes = encodeSnapshot(storeWith(entries).snapshot());
    // Every byte of the header, the first records and the root; a sample elsewhere.
    const positions = new Set<number>();
    for (let i = 0; i < 120; i++) positions.add(i);
    for (let i = bytes.length - 40; i < bytes.length; i++) positions.add(i);
    for (let i = 0; i < bytes.length; i += 11) positions.add(i);
    for (const position of positions) {
      // One flipped bit or all eight, alternately.
      const mask = position % 2 === 0 ? 0xff : 0x01;
      const altered = Buffer.from(bytes);
      altered[position] = (altered[position] as number) ^ mask;
      const result = decodeSnapshot(altered);
      expect("error" in result, `byte ${position} ^ ${mask}`).toBe(true);
    }
  });

  it("refuses truncation, extra bytes, a wrong magic and a wrong root, naming what failed", () => {
    const bytes = encodeSnapshot(storeWith(entries).snapshot());
    const errorOf = (b: Buffer) => {
      const r = decodeSnapshot(b);
      return "error" in r ? r.error : null;
    };
    for (const n of [0, 6, 7, 38, 39, 40, 100, bytes.length - 33, bytes.length - 1]) {
      expect(errorOf(bytes.subarray(0, n)), `first ${n} bytes`).not.toBeNull();
    }
    expect(errorOf(Buffer.concat([bytes, Buffer.from([0])]))).not.toBeNull();
    expect(errorOf(Buffer.concat([Buffer.from("SMWKV2\n"), bytes.subarray(7)]))).toBe(
      "not a snapshot: bad magic",
    );
    const wrongRoot = Buffer.concat([bytes.subarray(0, -32), Buffer.alloc(32)]);
    expect(errorOf(wrongRoot)).toMatch(/^root digest mismatch: stored 0000/);
  });

  it("refuses records out of order, repeated, empty or for a partition beyond the tree", () => {
    const [a, b] = ["k1", "k2"].sort((x, y) => partitionOf(x) - partitionOf(y)) as [string, string];
    const record = (index: number, body: Buffer) =>
      Buffer.concat([u32(index), u32(body.length), body]);
    const ra = record(partitionOf(a), encodePartition([[a, "1"]]));
    const rb = record(partitionOf(b), encodePartition([[b, "2"]]));
    const root = storeWith([
      [a, "1"],
      [b, "2"],
    ]).rootDigest();
    const file = (...records: Buffer[]) =>
      Buffer.concat([Buffer.from("SMWKV1\n"), ...records, root]);
    const errorOf = (buf: Buffer) => {
      const r = decodeSnapshot(buf);
      return "error" in r ? r.error : null;
    };
    expect(errorOf(file(ra, rb))).toBeNull();
    expect(errorOf(file(rb, ra))).toMatch(/not after/);
    expect(errorOf(file(ra, ra, rb))).toMatch(/not after/);
    expect(errorOf(file(ra, record(4000, encodePartition([])), rb))).toMatch(/empty/);
    expect(errorOf(file(ra, rb, record(4096, encodePartition([]))))).toMatch(/not below 4096/);
    expect(errorOf(file(ra))).toMatch(/root digest mismatch/);
  });
});

describe("a partition longer than a piece", () => {
  const sha = (b: Uint8Array) => createHash("sha256").update(b).digest();
  const home = partitionOf("long-0");
  const keys: string[] = [];
  for (let i = 0; keys.length < 3; i++)
    if (partitionOf(`long-${i}`) === home) keys.push(`long-${i}`);
  const store = new KvStore();
  // 2.25 MiB of values: an encoding of two pieces, the second shorter.
  for (const key of keys) store.apply({ op: "put", key, value: "v".repeat(768 * 1024) });

  it("has a leaf made from its pieces' digests, each a piece of PIECE_BYTES but the last", () => {
    const encoding = encodePartition(store.snapshot().partitionEntries(home));
    expect(encoding.length).toBeGreaterThan(PIECE_BYTES);
    const pieces = pieceDigests(encoding);
    expect(pieces).toEqual([
      sha(encoding.subarray(0, PIECE_BYTES)),
      sha(encoding.subarray(PIECE_BYTES)),
    ]);
    expect(leafDigest(encoding)).toEqual(leafOfPieces(pieces));
    expect(leafDigest(encoding).equals(sha(encoding))).toBe(false);
    // The store's digest of it, and a snapshot file's read back, are that leaf.
    expect(store.snapshot().leafDigest(home)).toEqual(leafDigest(encoding));
    const back = decodeSnapshot(encodeSnapshot(store.snapshot()));
    if ("error" in back) throw new Error(back.error);
    expect(back.root()).toEqual(store.rootDigest());
  });

  it("keeps a list of piece digests from passing for a partition's bytes: it does not decode", () => {
    const encoding = encodePartition(store.snapshot().partitionEntries(home));
    const listed = Buffer.concat([
      Buffer.alloc(4, 0xff),
      Buffer.from("smw-pieces-1\n", "latin1"),
      ...pieceDigests(encoding),
    ]);
    // What a lying peer would send as the whole partition: its sha256 is the leaf...
    expect(sha(listed)).toEqual(leafDigest(encoding));
    // ...but no partition's encoding starts so.
    expect(decodePartition(listed, home)).toEqual({
      error: `${0xffffffff} entries cannot fit in ${listed.length} bytes`,
    });
  });
});

describe("a slice of a partition's encoding", () => {
  it("is the same bytes as the whole encoding's, wherever it starts and ends", () => {
    const entries: Array<[string, string]> = [
      ["a", "x".repeat(300)],
      ["é", "y".repeat(70)],
      ["k", ""],
      ["z😀", "w".repeat(1000)],
    ];
    const whole = encodePartition(entries);
    for (let from = 0; from <= whole.length; from += 7)
      for (const length of [0, 1, 3, 9, 64, 500, whole.length]) {
        const to = from + length;
        expect(encodePartitionSlice(entries, from, to)).toEqual(whole.subarray(from, to));
      }
    expect(encodedPartitionBytes(entries)).toBe(whole.length);
  });
});
