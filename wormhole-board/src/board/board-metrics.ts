/**
 * The board's figures for Prometheus: its phase and fail-safe state, the period it runs, its
 * lease on its host's key, each
 * recovery step's duration against its budget, the timely core's trigger lateness and the
 * control link's counters. Gauges are read from the daemon's status at each scrape; durations and
 * lateness are observed once, as they happen. One registry per board (never prom-client's global
 * one): the simulated testbed runs several boards in one process.
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { StepRecord } from "../recovery/recovery-core.js";
import type { BoardStatus, DaemonPhase } from "./board-daemon.js";

const PHASES: readonly DaemonPhase[] = ["joining", "running", "failsafe", "stopped"];

/** Step durations: from a relay's milliseconds to a state transfer's minutes. */
const STEP_BUCKETS_S = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
/** Trigger lateness: the timely core's bound is a few milliseconds. */
const LATENESS_BUCKETS_S = [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1];

export class BoardMetrics {
  readonly registry = new Registry();
  private readonly stepSeconds: Histogram<"step">;
  private readonly stepBudgetSeconds: Gauge<"step">;
  private readonly steps: Counter<"step" | "verdict">;
  private readonly triggerLateness: Histogram;

  constructor(boardId: string, status: () => BoardStatus) {
    const registers = [this.registry];
    this.registry.setDefaultLabels({ board: boardId });
    new Gauge({
      name: "smw_board_phase",
      help: "1 for the phase the board is in (joining, running, failsafe, stopped), 0 for the others",
      labelNames: ["phase"],
      registers,
      collect() {
        const phase = status().phase;
        for (const each of PHASES) this.set({ phase: each }, each === phase ? 1 : 0);
      },
    });
    new Gauge({
      name: "smw_board_failsafe",
      help: "1 while the board is in the fail-safe state (its host held in reset), else 0",
      registers,
      collect() {
        this.set(status().failsafe === undefined ? 0 : 1);
      },
    });
    new Gauge({
      name: "smw_board_period",
      help: "The last period the board triggered (absent before the first)",
      registers,
      collect() {
        const period = status().period;
        if (period === undefined) this.reset();
        else this.set(period);
      },
    });
    new Gauge({
      name: "smw_board_timer_lateness_max_seconds",
      help: "The worst trigger lateness since the board started",
      registers,
      collect() {
        this.set(status().maxTimerLatenessMs / 1000);
      },
    });
    new Gauge({
      name: "smw_board_key_lease_renewing",
      help: "1 while the board renews the lease on its host's key (its host runs outside its rejuvenation), else 0",
      registers,
      collect() {
        this.set(status().keyLease?.renewing === true ? 1 : 0);
      },
    });
    new Gauge({
      name: "smw_board_key_lease_seconds_left",
      help: "How long the last lease the board issued on its host's key has left (clients count the host's replica until it lapses)",
      registers,
      collect() {
        const s = status();
        const lapsesAtMs = s.keyLease?.lapsesAtMs;
        this.set(lapsesAtMs === undefined ? 0 : Math.max(0, lapsesAtMs - s.updatedAtMs) / 1000);
      },
    });
    new Gauge({
      name: "smw_board_stopping",
      help: "1 while the daemon stops (no more certificates or leases; a running host runs until its last lease lapses), else 0",
      registers,
      collect() {
        this.set(status().stopping === undefined ? 0 : 1);
      },
    });
    new Gauge({
      name: "smw_board_alarms",
      help: "Alarms held in the status (attacks on the control link that did not stop the testbed)",
      registers,
      collect() {
        this.set(status().alarms?.length ?? 0);
      },
    });
    // The link's own counters, as counters: they only grow for the life of the process.
    new Counter({
      name: "smw_board_link_frames_total",
      help: "Control-link frames by outcome: sent, received, accepted, and each reason one was refused",
      labelNames: ["outcome"],
      registers,
      collect() {
        this.reset();
        for (const [outcome, count] of Object.entries(status().link)) this.inc({ outcome }, count);
      },
    });
    this.stepSeconds = new Histogram({
      name: "smw_board_step_duration_seconds",
      help: "How long each recovery step took (compare smw_board_step_budget_seconds)",
      labelNames: ["step"],
      buckets: STEP_BUCKETS_S,
      registers,
    });
    this.stepBudgetSeconds = new Gauge({
      name: "smw_board_step_budget_seconds",
      help: "Each recovery step's budget, from the testbed",
      labelNames: ["step"],
      registers,
    });
    this.steps = new Counter({
      name: "smw_board_steps_total",
      help: "Recovery steps by verdict (ok, skipped, over-budget, failed, interrupted)",
      labelNames: ["step", "verdict"],
      registers,
    });
    this.triggerLateness = new Histogram({
      name: "smw_board_trigger_lateness_seconds",
      help: "How late each period's trigger fired against its planned instant",
      buckets: LATENESS_BUCKETS_S,
      registers,
    });
  }

  /** A period triggered `latenessMs` after its planned instant. */
  observeTrigger(latenessMs: number): void {
    this.triggerLateness.observe(Math.max(0, latenessMs) / 1000);
  }

  /** The steps of a rejuvenation, once it is done or cut short. */
  observeSteps(records: readonly StepRecord[]): void {
    for (const record of records) {
      this.steps.inc({ step: record.step, verdict: record.verdict });
      this.stepBudgetSeconds.set({ step: record.step }, record.budgetMs / 1000);
      if (record.startMs !== undefined && record.endMs !== undefined)
        this.stepSeconds.observe({ step: record.step }, (record.endMs - record.startMs) / 1000);
    }
  }

  /** The exposition text and its content type. */
  async scrape(): Promise<{ contentType: string; text: string }> {
    return { contentType: this.registry.contentType, text: await this.registry.metrics() };
  }
}
