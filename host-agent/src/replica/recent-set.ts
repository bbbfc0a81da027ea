/**
 * A set that remembers at least the last `capacity` entries added and at most twice that: two
 * generations, the older dropped whole when the newer fills. Bounded memory for "seen lately"
 * without per-entry bookkeeping.
 */
export class RecentSet {
  private newer = new Set<string>();
  private older = new Set<string>();

  constructor(private readonly capacity: number) {
    if (!(capacity >= 1)) throw new RangeError(`capacity ${capacity}: must be at least 1`);
  }

  has(entry: string): boolean {
    return this.newer.has(entry) || this.older.has(entry);
  }

  add(entry: string): void {
    this.newer.add(entry);
    if (this.newer.size >= this.capacity) {
      this.older = this.newer;
      this.newer = new Set();
    }
  }
}
