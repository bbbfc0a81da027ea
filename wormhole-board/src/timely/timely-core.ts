/**
 * The periodic timely execution service (paper Definition 2.4) as a core
 * without I/O: it is told the time, and says when to trigger F, when to wake
 * next, and what it found wrong.
 *
 * Triggers are planned at absolute instants first + i·P with P = T_p − L,
 * where L is the promised bound on trigger lateness (P1). A trigger late by at
 * most L then keeps T_p − 2L <= t_i − t_{i−1} <= T_p, and the planner's
 * T_d < T_p − 2L keeps the lower bound above T_d. The actual instants are
 * checked against Definition 2.4 anyway, and the lateness against L.
 */

const HISTORY_KEPT = 64;

export interface TimelyConfig {
  tPMs: number;
  tDMs: number;
  /** P1: the promised bound on how late a trigger fires. */
  latenessBoundMs: number;
  /** Planned instant of trigger 0, on the clock the core is told. */
  firstTriggerMs: number;
  /** The first trigger this board takes part in (a board joining a running schedule). */
  firstIndex?: number;
}

export interface TriggerRecord {
  index: number;
  plannedMs: number;
  actualMs: number;
  latenessMs: number;
  /** When F ended, once it has. */
  endMs?: number;
}

export type TimelyOutput =
  | { kind: "trigger"; index: number; plannedMs: number; actualMs: number; latenessMs: number }
  | { kind: "violation"; reason: string };

export class TimelyCore {
  readonly plannedPeriodMs: number;
  private next = 0;
  private open: TriggerRecord | undefined;
  private failed = false;
  readonly history: TriggerRecord[] = [];

  constructor(private readonly config: TimelyConfig) {
    if (!(config.tDMs < config.tPMs - 2 * config.latenessBoundMs)) {
      throw new RangeError(
        `T_d (${config.tDMs} ms) must be below T_p − 2·lateness bound (${config.tPMs - 2 * config.latenessBoundMs} ms) for Definition 2.4 to hold`,
      );
    }
    this.plannedPeriodMs = config.tPMs - config.latenessBoundMs;
    this.next = config.firstIndex ?? 0;
  }

  plannedMs(index: number): number {
    return this.config.firstTriggerMs + index * this.plannedPeriodMs;
  }

  /** The next instant the core must be told about: a trigger or a deadline. */
  nextWakeupMs(): number | undefined {
    if (this.failed) return undefined;
    const trigger = this.plannedMs(this.next);
    return this.open === undefined
      ? trigger
      : Math.min(trigger, this.open.actualMs + this.config.tDMs);
  }

  /** Time has reached `nowMs` (a timer fired): triggers and deadline checks. */
  tick(nowMs: number): TimelyOutput[] {
    if (this.failed) return [];
    const out: TimelyOutput[] = [];
    if (
      this.open !== undefined &&
      this.open.endMs === undefined &&
      nowMs > this.open.actualMs + this.config.tDMs
    ) {
      out.push(
        this.fail(
          `F of period ${this.open.index} did not end within T_d (${this.config.tDMs} ms) of its trigger`,
        ),
      );
      return out;
    }
    const plannedMs = this.plannedMs(this.next);
    if (nowMs < plannedMs) return out;
    const latenessMs = nowMs - plannedMs;
    const record: TriggerRecord = { index: this.next, plannedMs, actualMs: nowMs, latenessMs };
    const previous = this.history[this.history.length - 1];
    this.history.push(record);
    // A board runs for years: keep the recent periods only.
    if (this.history.length > HISTORY_KEPT)
      this.history.splice(0, this.history.length - HISTORY_KEPT);
    this.next++;
    if (latenessMs > this.config.latenessBoundMs) {
      out.push(
        this.fail(
          `trigger ${record.index} fired ${latenessMs.toFixed(3)} ms late, over the promised ${this.config.latenessBoundMs} ms`,
        ),
      );
      return out;
    }
    if (previous !== undefined) {
      const spacing = nowMs - previous.actualMs;
      if (!(spacing > this.config.tDMs && spacing <= this.config.tPMs)) {
        out.push(
          this.fail(
            `triggers ${previous.index} and ${record.index} are ${spacing} ms apart, outside (T_d, T_p]`,
          ),
        );
        return out;
      }
      if (previous.endMs === undefined) {
        out.push(
          this.fail(
            `F of period ${previous.index} had not ended when period ${record.index} began`,
          ),
        );
        return out;
      }
    }
    this.open = record;
    out.push({ kind: "trigger", index: record.index, plannedMs, actualMs: nowMs, latenessMs });
    return out;
  }

  /** F of period `index` ended at `nowMs`. */
  done(index: number, nowMs: number): TimelyOutput[] {
    if (this.failed) return [];
    const record = this.history.find((r) => r.index === index);
    if (record === undefined || record.endMs !== undefined) return [];
    record.endMs = nowMs;
    if (this.open === record) this.open = undefined;
    if (nowMs - record.actualMs > this.config.tDMs) {
      return [
        this.fail(
          `F of period ${index} took ${nowMs - record.actualMs} ms, over T_d (${this.config.tDMs} ms)`,
        ),
      ];
    }
    return [];
  }

  get stopped(): boolean {
    return this.failed;
  }

  private fail(reason: string): TimelyOutput {
    this.failed = true;
    return { kind: "violation", reason };
  }
}
