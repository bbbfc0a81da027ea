/**
 * The keys of a store in key order (compareKeys), so a scan costs
 * O(log n + limit) instead of sorting every key per call.
 *
 * A list of sorted chunks rather than one sorted array: inserting into one
 * array moves half of it on average, which is fine at 10^4 keys but not at
 * 10^6; a chunk holds at most maxChunk keys, so an insert or removal moves at
 * most maxChunk keys plus one slot in the (n / maxChunk)-long chunk list.
 *
 * Each key carries a small number, its partition in the store: a scan then finds each value
 * without hashing its key again (a SHA-256 per key was 40% of a 1000-key scan's answer).
 */
import { compareKeys } from "./key-order.js";

export class SortedKeys implements Iterable<string> {
  /** Non-empty chunks, each sorted, every key of one below every key of the next. */
  #chunks: string[][] = [];
  /** Each key's partition, in the same places as the keys in `#chunks`. */
  #partitions: number[][] = [];
  #size = 0;
  readonly #maxChunk: number;

  constructor(maxChunk = 512) {
    if (!Number.isInteger(maxChunk) || maxChunk < 2)
      throw new RangeError("maxChunk is a whole number of at least 2");
    this.#maxChunk = maxChunk;
  }

  /**
   * From keys already sorted by compareKeys and distinct (as when loading a snapshot), with each
   * key's partition at the same place in `partitions`.
   */
  static fromSorted(
    keys: readonly string[],
    partitions: readonly number[],
    maxChunk = 512,
  ): SortedKeys {
    if (partitions.length !== keys.length)
      throw new RangeError(`${keys.length} keys but ${partitions.length} partitions`);
    const index = new SortedKeys(maxChunk);
    const fill = Math.max(1, Math.floor(maxChunk / 2));
    for (let i = 0; i < keys.length; i += fill) {
      index.#chunks.push(keys.slice(i, i + fill));
      index.#partitions.push(partitions.slice(i, i + fill));
    }
    index.#size = keys.length;
    return index;
  }

  get size(): number {
    return this.#size;
  }

  has(key: string): boolean {
    const chunk = this.#chunks[this.#chunkFor(key)];
    return chunk !== undefined && chunk[lowerBound(chunk, key)] === key;
  }

  /** Adds a key in `partition`; false if it was there already. */
  insert(key: string, partition: number): boolean {
    if (this.#chunks.length === 0) {
      this.#chunks.push([key]);
      this.#partitions.push([partition]);
      this.#size = 1;
      return true;
    }
    // A key above every key goes at the end of the last chunk.
    const c = Math.min(this.#chunkFor(key), this.#chunks.length - 1);
    const chunk = this.#chunks[c] as string[];
    const parts = this.#partitions[c] as number[];
    const i = lowerBound(chunk, key);
    if (chunk[i] === key) return false;
    chunk.splice(i, 0, key);
    parts.splice(i, 0, partition);
    this.#size++;
    if (chunk.length > this.#maxChunk) {
      const half = chunk.length >> 1;
      this.#chunks.splice(c + 1, 0, chunk.splice(half));
      this.#partitions.splice(c + 1, 0, parts.splice(half));
    }
    return true;
  }

  /** Removes a key; false if it was not there. */
  remove(key: string): boolean {
    const c = this.#chunkFor(key);
    const chunk = this.#chunks[c];
    if (chunk === undefined) return false;
    const i = lowerBound(chunk, key);
    if (chunk[i] !== key) return false;
    chunk.splice(i, 1);
    (this.#partitions[c] as number[]).splice(i, 1);
    this.#size--;
    if (chunk.length === 0) {
      this.#chunks.splice(c, 1);
      this.#partitions.splice(c, 1);
    } else if (chunk.length < this.#maxChunk >> 2) {
      // Merge a thinned chunk into a neighbour, so deletes cannot leave many
      // tiny chunks that make the chunk list long.
      const at = c + 1 < this.#chunks.length ? c : c - 1;
      const left = this.#chunks[at];
      const right = this.#chunks[at + 1];
      if (
        left !== undefined &&
        right !== undefined &&
        left.length + right.length <= this.#maxChunk
      ) {
        this.#chunks.splice(at, 2, left.concat(right));
        const parts = this.#partitions;
        parts.splice(at, 2, (parts[at] as number[]).concat(parts[at + 1] as number[]));
      }
    }
    return true;
  }

  /**
   * Keys k with from <= k < to ("" as to: no upper bound), in order, at most limit; each key's
   * partition pushed onto `partitions` if given.
   */
  range(from: string, to: string, limit: number, partitions?: number[]): string[] {
    const out: string[] = [];
    let c = this.#chunkFor(from);
    let chunk = this.#chunks[c];
    if (chunk === undefined) return out;
    let parts = this.#partitions[c] as number[];
    let i = lowerBound(chunk, from);
    while (out.length < limit) {
      if (i === chunk.length) {
        chunk = this.#chunks[++c];
        if (chunk === undefined) break;
        parts = this.#partitions[c] as number[];
        i = 0;
      }
      const key = chunk[i] as string;
      if (to !== "" && compareKeys(key, to) >= 0) break;
      out.push(key);
      partitions?.push(parts[i] as number);
      i++;
    }
    return out;
  }

  /** The partition `key` was inserted with; undefined if it is not here. */
  partitionOf(key: string): number | undefined {
    const c = this.#chunkFor(key);
    const chunk = this.#chunks[c];
    if (chunk === undefined) return undefined;
    const i = lowerBound(chunk, key);
    return chunk[i] === key ? this.#partitions[c]?.[i] : undefined;
  }

  *[Symbol.iterator](): Iterator<string> {
    for (const chunk of this.#chunks) yield* chunk;
  }

  /** Index of the first chunk whose last key is >= key; chunk count if none. */
  #chunkFor(key: string): number {
    let lo = 0;
    let hi = this.#chunks.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const chunk = this.#chunks[mid] as string[];
      if (compareKeys(chunk[chunk.length - 1] as string, key) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/** Index of the first key >= key in a sorted array; its length if none. */
function lowerBound(keys: readonly string[], key: string): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (compareKeys(keys[mid] as string, key) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
