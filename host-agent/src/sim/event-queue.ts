/**
 * Simulated time: events ordered by instant, ties broken by the order they
 * were scheduled in, so a run depends on nothing but its seed.
 */
interface Entry {
  atMs: number;
  order: number;
  run: () => void;
}

export class EventQueue {
  private readonly heap: Entry[] = [];
  private scheduled = 0;
  nowMs = 0;

  at(atMs: number, run: () => void): void {
    this.push({ atMs: Math.max(atMs, this.nowMs), order: this.scheduled++, run });
  }

  after(delayMs: number, run: () => void): void {
    this.at(this.nowMs + delayMs, run);
  }

  get size(): number {
    return this.heap.length;
  }

  /** Runs the next event; false when none is left or the next is after `untilMs`. */
  step(untilMs: number): boolean {
    const top = this.heap[0];
    if (top === undefined || top.atMs > untilMs) return false;
    this.pop();
    this.nowMs = top.atMs;
    top.run();
    return true;
  }

  private less(a: Entry, b: Entry): boolean {
    return a.atMs < b.atMs || (a.atMs === b.atMs && a.order < b.order);
  }

  private push(entry: Entry): void {
    const h = this.heap;
    h.push(entry);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(h[i] as Entry, h[parent] as Entry)) break;
      [h[i], h[parent]] = [h[parent] as Entry, h[i] as Entry];
      i = parent;
    }
  }

  private pop(): void {
    const h = this.heap;
    const last = h.pop() as Entry;
    if (h.length === 0) return;
    h[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && this.less(h[l] as Entry, h[m] as Entry)) m = l;
      if (r < h.length && this.less(h[r] as Entry, h[m] as Entry)) m = r;
      if (m === i) break;
      [h[i], h[m]] = [h[m] as Entry, h[i] as Entry];
      i = m;
    }
  }
}
