/**
 * What a replica refused, for its log: the first refusal of each kind from each sender is
 * written out with its detail, the rest are counted and summarised in one line per interval.
 * A peer (or a flood of forged messages) can then never fill the log line by line, and a
 * reader still sees what was refused, from whom and how often.
 */
export class RejectionSummary {
  /** Kind-and-sender pairs already written out in full; bounded, as senders are untrusted. */
  private readonly shown = new Set<string>();
  private counts = new Map<string, number>();
  private sinceMs: number | undefined;

  constructor(
    private readonly log: (line: string) => void,
    private readonly intervalMs = 5_000,
    private readonly maxShown = 256,
  ) {}

  /**
   * `senderProven` false: nothing proved that `from` sent it (a forged name, an epoch or MAC that
   * fails), so the line says "said to be from", not "from".
   */
  note(kind: string, from: string, detail: string, nowMs: number, senderProven = true): void {
    const key = `${kind} ${senderProven ? "from" : "said to be from"} ${from}`;
    if (!this.shown.has(key) && this.shown.size < this.maxShown) {
      this.shown.add(key);
      this.log(`rejected ${key}: ${detail} (first of its kind; more are counted)`);
      return;
    }
    this.sinceMs ??= nowMs;
    // Past the bound, unknown senders share one line, so the map stays small too.
    const counted =
      this.counts.has(key) || this.counts.size < this.maxShown ? key : `${kind} from others`;
    this.counts.set(counted, (this.counts.get(counted) ?? 0) + 1);
  }

  /** Writes the summary line if one is due (call it often: every tick). */
  flush(nowMs: number, force = false): void {
    if (this.sinceMs === undefined) return;
    if (!force && nowMs - this.sinceMs < this.intervalMs) return;
    const parts = [...this.counts]
      .sort((a, b) => b[1] - a[1])
      .map(([key, count]) => `${count} ${key}`);
    this.log(
      `rejected in the last ${((nowMs - this.sinceMs) / 1000).toFixed(1)} s: ${parts.join(", ")}`,
    );
    this.counts = new Map();
    this.sinceMs = undefined;
  }
}
