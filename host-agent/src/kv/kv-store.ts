/**
 * The key-value state machine. Every replica applies the same operations in
 * the same order and must reach the same state and the same partition-tree
 * digest, so nothing here depends on insertion order, time or randomness.
 *
 * Costs:
 *   - apply: one sha256 of the key (to find its partition) plus O(log n) for
 *     the sorted key index; a scan is O(log n + limit), with no hashing (the index knows each
 *     key's partition).
 *   - rootDigest: rehashes only partitions written since the last digest
 *     (dirty), and only the meta nodes above them.
 *   - snapshot: O(partitions). The snapshot shares every partition map; the
 *     store clones a partition (O(its entries)) the first time it writes to
 *     it afterwards. Ownership is not counted, so after each snapshot the
 *     first write to each partition clones it, even once the snapshot is gone.
 */

import { compareKeys } from "./key-order.js";
import {
  isReadOnly,
  type KvOperation,
  type KvResult,
  keyError,
  MAX_PARTITION_BYTES,
  parseKvOperation,
  scanAnswer,
  valueError,
} from "./kv-operation.js";
import { KvSnapshot } from "./kv-snapshot.js";
import {
  DIGEST_BYTES,
  EMPTY_META_DIGEST,
  EMPTY_PARTITION_DIGEST,
  EMPTY_ROOT_DIGEST,
  FANOUT,
  META_COUNT,
  metaDigestAt,
  metaOf,
  PARTITION_COUNT,
  partitionDigest,
  partitionOf,
  sha256,
  sortedEntries,
} from "./partition-tree.js";
import { SortedKeys } from "./sorted-keys.js";

export class KvStore {
  /** All partitions, whether owned or shared with a snapshot. */
  #partitions: Array<ReadonlyMap<string, string>>;
  /** The partitions this store may write in place; undefined = shared, clone first. */
  #owned: Array<Map<string, string> | undefined>;
  #keys: SortedKeys;
  // Empty digests repeated: the digests of an empty store.
  #leafDigests = Buffer.alloc(PARTITION_COUNT * DIGEST_BYTES, EMPTY_PARTITION_DIGEST);
  #metaDigests = Buffer.alloc(META_COUNT * DIGEST_BYTES, EMPTY_META_DIGEST);
  #root: Buffer = Buffer.from(EMPTY_ROOT_DIGEST);
  /** Partitions written since their digest was last computed (flag per partition, and a list). */
  #dirty = new Uint8Array(PARTITION_COUNT);
  #dirtyList: number[] = [];
  #sizeBytes = 0;
  #entryCount = 0;
  /**
   * Each partition's encoding length, or -1 where not counted yet: counted from its map on the
   * first write that needs it, then kept up to date (a store from a snapshot counts nothing up
   * front).
   */
  #partitionBytes = new Float64Array(PARTITION_COUNT).fill(-1);
  readonly #maxPartitionBytes: number;

  /** `maxPartitionBytes`: every replica uses the default; a test may make it small. */
  constructor(options: { maxPartitionBytes?: number } = {}) {
    this.#maxPartitionBytes = options.maxPartitionBytes ?? MAX_PARTITION_BYTES;
    const maps = Array.from({ length: PARTITION_COUNT }, () => new Map<string, string>());
    this.#partitions = maps;
    this.#owned = maps.slice();
    this.#keys = new SortedKeys();
  }

  /** A store holding a snapshot's state; it shares the snapshot's maps until it writes to them. */
  static fromSnapshot(s: KvSnapshot, options: { maxPartitionBytes?: number } = {}): KvStore {
    const store = new KvStore(options);
    const keyed: Array<{ key: string; partition: number }> = [];
    for (let p = 0; p < PARTITION_COUNT; p++) {
      const map = s.partitionMap(p);
      store.#partitions[p] = map;
      for (const key of map.keys()) keyed.push({ key, partition: p });
    }
    store.#owned.fill(undefined);
    keyed.sort((a, b) => compareKeys(a.key, b.key));
    store.#keys = SortedKeys.fromSorted(
      keyed.map((k) => k.key),
      keyed.map((k) => k.partition),
    );
    for (let m = 0; m < META_COUNT; m++) {
      const leaves = s.leafDigests(m);
      for (let i = 0; i < FANOUT; i++)
        (leaves[i] as Buffer).copy(store.#leafDigests, (m * FANOUT + i) * DIGEST_BYTES);
    }
    Buffer.concat(s.metaDigests()).copy(store.#metaDigests);
    store.#root = s.root();
    store.#sizeBytes = s.sizeBytes;
    store.#entryCount = s.entryCount;
    return store;
  }

  /**
   * Applies one operation. Throws a RangeError for an operation that
   * parseKvOperation would refuse (check client input with it first): the
   * store never holds a key or value that its partition encoding could not
   * carry.
   */
  apply(op: KvOperation): KvResult {
    const checked = parseKvOperation(op);
    if ("error" in checked) throw new RangeError(`invalid ${op.op} operation: ${checked.error}`);
    switch (checked.op) {
      case "get":
        return { op: "get", value: this.get(checked.key) };
      case "put":
        if (this.#wouldBeFull(checked.key, checked.value))
          return { op: "put", previous: this.get(checked.key), full: true };
        return { op: "put", previous: this.#put(checked.key, checked.value) };
      case "del":
        return { op: "del", previous: this.#delete(checked.key) };
      case "cas": {
        const current = this.get(checked.key);
        if (current !== checked.expected) return { op: "cas", ok: false, current };
        if (this.#wouldBeFull(checked.key, checked.value))
          return { op: "cas", ok: false, current, full: true };
        this.#put(checked.key, checked.value);
        return { op: "cas", ok: true, current: checked.value };
      }
      case "scan": {
        // Each key's partition from the index: no hash per key.
        const partitions: number[] = [];
        const keys = this.#keys.range(checked.from, checked.to, checked.limit, partitions);
        return scanAnswer(keys, (i) => {
          const map = this.#partitions[partitions[i] as number] as ReadonlyMap<string, string>;
          return map.get(keys[i] as string) as string;
        });
      }
    }
  }

  /** Answers a read-only operation (get, scan) without changing anything; throws for any other. */
  read(op: KvOperation): KvResult {
    if (!isReadOnly(op)) throw new RangeError(`${op.op} is not a read-only operation`);
    return this.apply(op);
  }

  get(key: string): string | null {
    return this.#partitions[partitionOf(key)]?.get(key) ?? null;
  }

  /** Sum of key and value UTF-8 bytes. */
  get sizeBytes(): number {
    return this.#sizeBytes;
  }

  get entryCount(): number {
    return this.#entryCount;
  }

  /** Digest of the whole state (partition-tree root); rehashes only what was written since. */
  rootDigest(): Buffer {
    this.#refreshDigests();
    return Buffer.from(this.#root);
  }

  /** An immutable view of the current state, with its digests. */
  snapshot(): KvSnapshot {
    this.#refreshDigests();
    this.#owned.fill(undefined);
    return new KvSnapshot({
      partitions: this.#partitions, // the snapshot copies the array (not the maps)
      leafDigests: Buffer.from(this.#leafDigests),
      metaDigests: Buffer.from(this.#metaDigests),
      root: Buffer.from(this.#root),
      sizeBytes: this.#sizeBytes,
      entryCount: this.#entryCount,
    });
  }

  /**
   * Replaces one partition wholesale with entries fetched by state transfer
   * (decodePartition has checked them). Throws a RangeError, changing
   * nothing, if an entry could not be stored or belongs to another partition.
   */
  installPartition(index: number, entries: ReadonlyArray<readonly [string, string]>): void {
    if (!Number.isInteger(index) || index < 0 || index >= PARTITION_COUNT)
      throw new RangeError(`partition index ${index} not in 0..${PARTITION_COUNT - 1}`);
    const incoming = new Map<string, string>();
    for (const [key, value] of entries) {
      const problem = keyError(key) ?? valueError(value);
      if (problem !== null) throw new RangeError(`partition ${index}: ${problem}`);
      if (partitionOf(key) !== index)
        throw new RangeError(`partition ${index}: key ${JSON.stringify(key)} belongs elsewhere`);
      if (incoming.has(key))
        throw new RangeError(`partition ${index}: duplicate key ${JSON.stringify(key)}`);
      incoming.set(key, value);
    }
    const outgoing = this.#partitions[index] as ReadonlyMap<string, string>;
    for (const [key, value] of outgoing) {
      if (!incoming.has(key)) this.#keys.remove(key);
      this.#sizeBytes -= utf8Bytes(key) + utf8Bytes(value);
    }
    for (const [key, value] of incoming) {
      if (!outgoing.has(key)) this.#keys.insert(key, index);
      this.#sizeBytes += utf8Bytes(key) + utf8Bytes(value);
    }
    this.#entryCount += incoming.size - outgoing.size;
    this.#partitionBytes[index] = -1;
    this.#partitions[index] = incoming;
    this.#owned[index] = incoming;
    this.#markDirty(index);
  }

  /** Sets key to value; returns the value it replaced. */
  #put(key: string, value: string): string | null {
    const p = partitionOf(key);
    const previous = (this.#partitions[p] as ReadonlyMap<string, string>).get(key) ?? null;
    // Rewriting the same value changes nothing: no clone, no rehash.
    if (previous === value) return previous;
    this.#writable(p).set(key, value);
    this.#countPartitionBytes(
      p,
      entryBytes(key, value) - (previous === null ? 0 : entryBytes(key, previous)),
    );
    if (previous === null) {
      this.#keys.insert(key, p);
      this.#entryCount++;
      this.#sizeBytes += utf8Bytes(key) + utf8Bytes(value);
    } else {
      this.#sizeBytes += utf8Bytes(value) - utf8Bytes(previous);
    }
    this.#markDirty(p);
    return previous;
  }

  /** Removes key; returns the value it had. */
  #delete(key: string): string | null {
    const p = partitionOf(key);
    const previous = (this.#partitions[p] as ReadonlyMap<string, string>).get(key) ?? null;
    if (previous === null) return null;
    this.#writable(p).delete(key);
    this.#countPartitionBytes(p, -entryBytes(key, previous));
    this.#keys.remove(key);
    this.#entryCount--;
    this.#sizeBytes -= utf8Bytes(key) + utf8Bytes(previous);
    this.#markDirty(p);
    return previous;
  }

  /**
   * Whether writing `value` under `key` would take the key's partition past the most it may hold
   * (`MAX_PARTITION_BYTES`). Deterministic: every replica holds the same state.
   */
  #wouldBeFull(key: string, value: string): boolean {
    const p = partitionOf(key);
    const previous = (this.#partitions[p] as ReadonlyMap<string, string>).get(key);
    const grows = entryBytes(key, value) - (previous === undefined ? 0 : entryBytes(key, previous));
    return grows > 0 && this.#encodedBytes(p) + grows > this.#maxPartitionBytes;
  }

  /** Partition p's encoding length (`partition-tree.ts`: a count, then each entry's two lengths and bytes). */
  #encodedBytes(p: number): number {
    let bytes = this.#partitionBytes[p] as number;
    if (bytes < 0) {
      bytes = 4;
      for (const [key, value] of this.#partitions[p] as ReadonlyMap<string, string>)
        bytes += entryBytes(key, value);
      this.#partitionBytes[p] = bytes;
    }
    return bytes;
  }

  /** Keeps a counted partition's length up to date (one not counted yet is counted when needed). */
  #countPartitionBytes(p: number, change: number): void {
    const bytes = this.#partitionBytes[p] as number;
    if (bytes >= 0) this.#partitionBytes[p] = bytes + change;
  }

  /** The partition's map, cloned first if a snapshot may still see it. */
  #writable(p: number): Map<string, string> {
    let map = this.#owned[p];
    if (map === undefined) {
      map = new Map(this.#partitions[p]);
      this.#partitions[p] = map;
      this.#owned[p] = map;
    }
    return map;
  }

  #markDirty(p: number): void {
    if (this.#dirty[p] === 1) return;
    this.#dirty[p] = 1;
    this.#dirtyList.push(p);
  }

  #refreshDigests(): void {
    if (this.#dirtyList.length === 0) return;
    const metas = new Set<number>();
    for (const p of this.#dirtyList) {
      const map = this.#partitions[p] as ReadonlyMap<string, string>;
      const digest = map.size === 0 ? EMPTY_PARTITION_DIGEST : partitionDigest(sortedEntries(map));
      digest.copy(this.#leafDigests, p * DIGEST_BYTES);
      this.#dirty[p] = 0;
      metas.add(metaOf(p));
    }
    this.#dirtyList = [];
    for (const m of metas)
      metaDigestAt(this.#leafDigests, m).copy(this.#metaDigests, m * DIGEST_BYTES);
    this.#root = sha256(this.#metaDigests);
  }
}

/** An entry's bytes in its partition's encoding: two 4-byte lengths, the key and the value. */
function entryBytes(key: string, value: string): number {
  return 8 + utf8Bytes(key) + utf8Bytes(value);
}

function utf8Bytes(s: string): number {
  return Buffer.byteLength(s, "utf8");
}
