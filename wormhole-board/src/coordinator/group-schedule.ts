/**
 * The group schedule across boards (paper 3.3), as a core without I/O that
 * every board runs alike: in each period the groups are rejuvenated in the
 * configured order, group g+1 only once every board of group g has said it is
 * done, so never more than k hosts are down. Each group has a deadline in the
 * static schedule, t_i + (g+1)·(T_localexec + hand-off + procMax) + clock
 * offset, as the planner's T_Xmax (checked against T_d) counts it; a group
 * not done by it is a violation, seen by every board.
 */

export interface GroupScheduleConfig {
  self: string;
  /** Board ids per group, in rejuvenation order. */
  groups: readonly (readonly string[])[];
  tLocalexecMs: number;
  /** The control link's delivery bound: one hand-off per group. */
  handoffMs: number;
  /** Per group, what processing lateness may add (`groupSlackMs`, as planned). */
  slackMs?: number;
  /** Once per period: the clock offset bound (deadlines are reckoned on each board's clock). */
  offsetMs?: number;
}

export type ScheduleOutput =
  | { kind: "startRecovery"; period: number; group: number; plannedStartMs: number }
  /** Group g's rejuvenation began (every board sees it, members or not). */
  | { kind: "groupStarted"; period: number; group: number }
  | { kind: "periodComplete"; period: number; endMs: number }
  | { kind: "violation"; reason: string };

interface PeriodState {
  period: number;
  startMs: number;
  group: number;
  done: Set<string>;
}

export class GroupSchedule {
  private current: PeriodState | undefined;
  private failed = false;
  /** DONE messages of the current period that arrived before their group began here. */
  private early = new Map<number, Set<string>>();

  constructor(private readonly config: GroupScheduleConfig) {}

  groupOf(board: string): number {
    return this.config.groups.findIndex((group) => group.includes(board));
  }

  slotMs(): number {
    return this.config.tLocalexecMs + this.config.handoffMs + (this.config.slackMs ?? 0);
  }

  /** Static-schedule start and deadline of group g in a period that began at startMs. */
  groupWindow(startMs: number, group: number): { plannedStartMs: number; deadlineMs: number } {
    return {
      plannedStartMs: startMs + group * this.slotMs(),
      deadlineMs: startMs + (group + 1) * this.slotMs() + (this.config.offsetMs ?? 0),
    };
  }

  get state(): { period: number; group: number } | undefined {
    return this.current === undefined
      ? undefined
      : { period: this.current.period, group: this.current.group };
  }

  periodStarted(period: number, startMs: number): ScheduleOutput[] {
    if (this.failed) return [];
    if (this.current !== undefined) {
      return [
        this.fail(
          `period ${period} began while period ${this.current.period} was still at group ${this.current.group + 1}`,
        ),
      ];
    }
    this.current = { period, startMs, group: 0, done: new Set() };
    this.early = new Map();
    return this.enterGroup();
  }

  /** A board (this one included) says it finished its recovery in `period`. */
  boardDone(board: string, period: number, nowMs: number): ScheduleOutput[] {
    if (this.failed) return [];
    const current = this.current;
    if (current === undefined || period !== current.period) return [];
    const group = this.groupOf(board);
    if (group < 0) return [this.fail(`board ${board} reported done but is in no group`)];
    if (group < current.group) return [];
    if (group > current.group) {
      // It began on hearing the previous group's last DONE before we did; ours is on its way.
      this.early.set(group, (this.early.get(group) ?? new Set()).add(board));
      return [];
    }
    current.done.add(board);
    return this.advance(nowMs);
  }

  tick(nowMs: number): ScheduleOutput[] {
    const current = this.current;
    if (this.failed || current === undefined) return [];
    const { deadlineMs } = this.groupWindow(current.startMs, current.group);
    if (nowMs > deadlineMs) {
      const missing = (this.config.groups[current.group] ?? []).filter((b) => !current.done.has(b));
      return [
        this.fail(
          `group ${current.group + 1} of period ${current.period} was not done by its deadline (${missing.join(", ")} missing)`,
        ),
      ];
    }
    return [];
  }

  nextWakeupMs(): number | undefined {
    const current = this.current;
    if (this.failed || current === undefined) return undefined;
    return this.groupWindow(current.startMs, current.group).deadlineMs;
  }

  private advance(nowMs: number): ScheduleOutput[] {
    const current = this.current as PeriodState;
    const members = this.config.groups[current.group] ?? [];
    if (!members.every((b) => current.done.has(b))) return [];
    if (current.group + 1 >= this.config.groups.length) {
      this.current = undefined;
      return [{ kind: "periodComplete", period: current.period, endMs: nowMs }];
    }
    current.group++;
    current.done = this.early.get(current.group) ?? new Set();
    this.early.delete(current.group);
    return [...this.enterGroup(), ...(current.done.size > 0 ? this.advance(nowMs) : [])];
  }

  private enterGroup(): ScheduleOutput[] {
    const current = this.current as PeriodState;
    const out: ScheduleOutput[] = [
      { kind: "groupStarted", period: current.period, group: current.group },
    ];
    if ((this.config.groups[current.group] ?? []).includes(this.config.self)) {
      out.push({
        kind: "startRecovery",
        period: current.period,
        group: current.group,
        plannedStartMs: this.groupWindow(current.startMs, current.group).plannedStartMs,
      });
    }
    return out;
  }

  private fail(reason: string): ScheduleOutput {
    this.failed = true;
    return { kind: "violation", reason };
  }
}
