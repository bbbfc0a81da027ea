/**
 * The board daemon: the board core driven by real time, the control link,
 * the host link, the lines and the images. The core first agrees with its
 * peers on the schedule (the wall-clock instant of period 0, on a whole-second
 * grid), then runs periods until told to stop; on a fail-safe trigger the
 * daemon acts at once (hold reset, power off, alarm, webhook, command) and
 * latches the state on disk. Timers are chained to absolute instants; their
 * lateness is measured.
 */
import { spawn } from "node:child_process";
import { type KeyObject, verify } from "node:crypto";
import { existsSync, unlinkSync } from "node:fs";
import type { Server as HttpServer } from "node:http";
import { createServer, type Server } from "node:net";
import path from "node:path";
import {
  type FailsafeAction,
  plan,
  planInputFromTestbed,
  renderPlanText,
  revokeMessages,
  type Testbed,
} from "@smw/wiring";
import { WatchdogFeeder, type WatchdogSink } from "@smw/wiring/cli";
import type { Logger } from "pino";
import { type BoardAction, BoardCore, type BoardEvent } from "../coordinator/board-core.js";
import type { FailsafeState } from "../failsafe/failsafe-core.js";
import type { BoardLines } from "../lines/board-lines.js";
import type { ControlLink } from "../link/control-link.js";
import type { HostLinkPort } from "../link/host-link-port.js";
import { TransportError } from "../link/transports.js";
import type { RecoveryStep, StepRecord } from "../recovery/recovery-core.js";
import { StepRunner } from "../recovery/step-runner.js";
import { BoardClock } from "./board-clock.js";
import { BoardMetrics } from "./board-metrics.js";
import type { BoardStateFiles } from "./board-state-files.js";
import { DeadlineTimer } from "./deadline-timer.js";
import { listenForMetrics } from "./metrics-endpoint.js";

/** How long an operator's connection may take to send its request line. */
const OPERATOR_REQUEST_MS = 5_000;
/** Operator connections open at once, per listening socket. */
const OPERATOR_MAX_CONNECTIONS = 16;
/** Network operator connections open at once from one address. */
const OPERATOR_CONNECTIONS_PER_ADDRESS = 4;

export interface AlertSink {
  webhook(url: string, body: unknown): Promise<void>;
  exec(argv: readonly string[], env: Record<string, string>): void;
}

export interface BoardDaemonDeps {
  testbed: Testbed;
  boardId: string;
  link: ControlLink;
  hostLink: HostLinkPort;
  operatorKey: KeyObject;
  signingKey: KeyObject;
  state: BoardStateFiles;
  log: Logger;
  alerts?: AlertSink;
  /** The board's clock, ms (default: `BoardClock`, the wall clock at start advanced monotonically). */
  now?: () => number;
  /** Watchdogs fed while the board's core still ticks (hardware, systemd). */
  watchdogs?: readonly WatchdogSink[];
  /** How far ahead the first period is proposed (default: 2 s or 4 silence bounds): time for the service to come up. */
  joinLeadMs?: number;
  /** How long joining may last before the board fails safe (default: the testbed's, else T_p). */
  joinDeadlineMs?: number;
}

export type DaemonPhase = "joining" | "running" | "failsafe" | "stopped";

export interface BoardStatus {
  board: string;
  host: string;
  phase: DaemonPhase;
  updatedAtMs: number;
  schedule?: number;
  period?: number;
  group?: number;
  nextTriggerMs?: number;
  /** The steps of this board's last completed rejuvenation, with their instants on its clock. */
  lastSteps: Array<
    Pick<
      StepRecord,
      "period" | "step" | "plannedMs" | "startMs" | "endMs" | "budgetMs" | "verdict"
    > & {
      tookMs?: number;
    }
  >;
  failsafe?: FailsafeState;
  /** The step of a rejuvenation under way, and when it started on this board's clock. */
  step?: { name: RecoveryStep; startedAtMs: number };
  link: ControlLink["counters"];
  maxTimerLatenessMs: number;
  /** The latest alarms (attacks on the control link that did not stop the testbed). */
  alarms?: Array<{ atMs: number; reason: string }>;
  /**
   * Whether the board renews the lease on its host's key now, and when the last lease it issued
   * lapses (its clock; absent before the first): clients count the host's replica until then.
   */
  keyLease?: { renewing: boolean; lapsesAtMs?: number };
  /**
   * A stop under way (SIGTERM: `systemctl stop` or `restart`), since when on this board's clock:
   * no more certificates or leases, and a running host runs on until `keyLease.lapsesAtMs`, then
   * is held as the daemon exits.
   */
  stopping?: { sinceMs: number };
}

/** Beyond the last lease's lapse, what a stop may take to close its links and servers. */
const STOP_MARGIN_MS = 2_000;

export class BoardDaemon {
  private core: BoardCore | undefined;
  private stopped = false;
  private readonly timer: DeadlineTimer;
  private step: AbortController | undefined;
  private runner: StepRunner | undefined;
  private lines: BoardLines | undefined;
  private linksOpen = false;
  private readonly now: () => number;
  private readonly clock: BoardClock;
  private lastSteps: BoardStatus["lastSteps"] = [];
  private maxLatenessMs = 0;
  private server: Server | undefined;
  private networkServer: Server | undefined;
  private metricsServer: HttpServer | undefined;
  private feeder: WatchdogFeeder | undefined;
  /** When the core was last driven by its timer: the watchdogs are fed while this is recent. */
  private lastTickMs = Number.NEGATIVE_INFINITY;
  /** The board's figures for Prometheus (served where the testbed gives a metricsEndpoint). */
  readonly metrics: BoardMetrics;
  private restored: FailsafeState | undefined;
  private runningStep: RecoveryStep | undefined;
  private runningStepStartedMs = 0;
  /**
   * Whether this period's out-of-schedule certificate was issued. Read back from disk at start:
   * a host cannot collect fresh keys by getting its board restarted. Renewed when the start-up
   * check releases the host (held in reset, images verified: a clean boot, as in a rejuvenation)
   * and at every trigger.
   */
  private certifiedOutOfSchedule: boolean;
  /** The latest alarms raised (attacks on the control link), for the status. */
  private readonly alarms: Array<{ atMs: number; reason: string }> = [];
  /** The first period this board ran of its schedule (not 0 when it joined a running one). */
  private firstIndex: number | undefined;
  private offHostLink: (() => void) | undefined;

  constructor(private readonly deps: BoardDaemonDeps) {
    this.clock = new BoardClock();
    this.now = deps.now ?? (() => this.clock.now());
    this.timer = new DeadlineTimer(this.now);
    this.metrics = new BoardMetrics(deps.boardId, () => this.status());
    this.certifiedOutOfSchedule = deps.state.readUnscheduledCertificate() !== undefined;
    if (!deps.testbed.boards.some((b) => b.id === deps.boardId))
      throw new Error(`there is no board "${deps.boardId}"`);
    // The planner's verdict is the board's: a schedule it could not keep is refused up front
    // (its timely core would otherwise throw at the agreed instant, on every board at once).
    const verdict = plan(planInputFromTestbed(deps.testbed));
    if (!verdict.feasible)
      throw new InfeasibleScheduleError(
        `${deps.testbed.file}: the boards cannot keep this testbed's schedule; the planner says:\n\n${renderPlanText(verdict, deps.testbed.name)}`,
      );
  }

  get currentPhase(): DaemonPhase {
    if (this.stopped) return "stopped";
    return this.core?.phase ?? (this.restored === undefined ? "joining" : "failsafe");
  }

  get failsafeState(): FailsafeState | undefined {
    return this.core?.failsafeState ?? this.restored;
  }

  /** Whether the board starts in a latched fail-safe state (its lines should then be claimed at their safe levels). */
  latchedFailsafe(): FailsafeState | undefined {
    this.restored ??= this.deps.state.readFailsafe();
    return this.restored;
  }

  /** Opens the host link, the control link and the operator socket: what can fail on bad input, before any line is touched. */
  async openLinks(): Promise<void> {
    this.latchedFailsafe();
    await this.deps.hostLink.open();
    try {
      await this.deps.link.open({
        message: (from, message) => this.onMessage(from, message),
        authFailure: (from) => this.dispatch({ kind: "authFailure", from, nowMs: this.now() }),
      });
      await this.listenForOperator();
      const metricsEndpoint = this.deps.testbed.boards.find(
        (b) => b.id === this.deps.boardId,
      )?.metricsEndpoint;
      if (metricsEndpoint !== undefined)
        this.metricsServer = await listenForMetrics(this.metrics, metricsEndpoint);
    } catch (error) {
      for (const server of [this.server, this.networkServer]) server?.close();
      await this.deps.link.close();
      await this.deps.hostLink.close();
      throw error;
    }
    this.linksOpen = true;
  }

  /** Opens the links and runs with `lines`. */
  async start(lines: BoardLines): Promise<void> {
    if (!this.linksOpen) await this.openLinks();
    this.run(lines);
  }

  /** Runs the board with its lines claimed; the links must be open. */
  run(lines: BoardLines): void {
    const board = this.deps.testbed.boards.find((b) => b.id === this.deps.boardId);
    if (board === undefined) throw new Error(`there is no board "${this.deps.boardId}"`);
    if (this.deps.state.epochProblem !== undefined)
      this.deps.log.warn(
        { problem: this.deps.state.epochProblem, epoch: this.deps.link.epoch },
        "the boot epoch file was damaged: this boot's epoch was taken from the wall clock (peers refuse frames of an epoch not above the last they heard; repair the clock if it went back)",
      );
    this.lines = lines;
    this.runner = new StepRunner({
      board,
      lines,
      hostLink: this.deps.hostLink,
      operatorKey: this.deps.operatorKey,
      signingKey: this.deps.signingKey,
      budgets: this.deps.testbed.rejuvenation.budgets,
      revokedKeys: () => this.revocations(),
      now: this.now,
      keyLeaseMs: this.deps.testbed.rejuvenation.keyLeaseMs,
      certificateEpochs: {
        last: this.deps.state.readCertificateEpoch(),
        issued: (epoch) => {
          this.deps.state.writeCertificateEpoch(epoch);
          // Outside whatever the core is handling now: a step may certify from within one.
          queueMicrotask(() => this.dispatch({ kind: "keyCertified", epoch, nowMs: this.now() }));
        },
      },
    });
    this.runner.warm();
    this.ranAtMs = this.now();
    // Four renewals a lease: a lease lapses only if the board's event loop stalls for three
    // quarters of one, which its watchdog does not allow.
    if (this.leaseTimer !== undefined) clearInterval(this.leaseTimer);
    this.leaseTimer = setInterval(
      () => this.runner?.renewLease(),
      this.deps.testbed.rejuvenation.keyLeaseMs / 4,
    );
    this.leaseTimer.unref();
    this.offHostLink?.();
    this.offHostLink = this.deps.hostLink.on((message) => {
      if (message.type === "BOOTED") this.onUnscheduledBoot(message.publicKey);
    });
    if (this.restored !== undefined) {
      this.deps.log.warn({ failsafe: this.restored }, "starting in the latched fail-safe state");
      this.applyFailsafeActions(this.restored, this.deps.testbed.failsafe.actions, false);
    } else {
      this.deps.log.info("joining: agreeing on a schedule with the peers");
      this.startup = this.startupCheck();
    }
    this.createCore(this.restored);
    this.writeStatus();
    this.arm();
  }

  /** How long a stop may take: the last lease's lapse, and a margin for closing the links. */
  get stopGraceMs(): number {
    return this.deps.testbed.rejuvenation.keyLeaseMs + STOP_MARGIN_MS;
  }

  private stopping: Promise<void> | undefined;
  /** When the stop began, on this board's clock (for the status). */
  private stoppingSinceMs: number | undefined;

  /**
   * Stops the daemon. Its synchronous part disarms the watchdogs and ends the leases; then, while
   * the host still runs, it waits until the last lease on the host's key has lapsed, still
   * heartbeating (a restart quicker than the silence bound fails nobody safe), so that the lines'
   * safe levels, which its caller sets next, reset the host only once no client counts that key:
   * the adversary leaves a host only at a reset after its lease (SAFETY.md, "Key epochs").
   */
  stop(): Promise<void> {
    this.stopping ??= this.stopNow();
    return this.stopping;
  }

  private async stopNow(): Promise<void> {
    if (this.stopped) return;
    this.stoppingSinceMs = this.now();
    this.feeder?.stop();
    if (this.leaseTimer !== undefined) clearInterval(this.leaseTimer);
    // No certificate, so no lease, from here on.
    this.runner?.retire();
    this.step?.abort();
    this.startupAbort?.abort();
    const runner = this.runner;
    // A host held already (a fail-safe, a rejuvenation, the start-up check) has nothing to wait for.
    let hostRuns = false;
    try {
      hostRuns = this.lines?.get("reset") === "inactive";
    } catch {
      // Lines released already: the host is held.
    }
    this.deps.log.info(
      { hostRunning: hostRuns },
      hostRuns
        ? "stopping: no more certificates or leases; the host runs until the last lease lapsed"
        : "stopping: no more certificates or leases",
    );
    if (runner !== undefined && hostRuns) {
      // Bounded by a lease (and a clock's worth of slack): the lines' grace is longer, so the
      // links and the state files still close after it.
      const waitedMs = await runner.untilLeaseLapsed(
        AbortSignal.timeout(
          this.deps.testbed.rejuvenation.keyLeaseMs + this.deps.testbed.timeliness.procMaxMs,
        ),
      );
      if (waitedMs > 0)
        this.deps.log.info(
          { waitedMs: Math.round(waitedMs) },
          "stopping: the host runs until the last lease on its key lapsed",
        );
    }
    this.stopped = true;
    this.timer.cancel();
    this.offHostLink?.();
    const servers = [this.server, this.networkServer, this.metricsServer];
    this.server = undefined;
    this.networkServer = undefined;
    this.metricsServer = undefined;
    for (const server of servers) {
      if (server === undefined) continue;
      if ("closeAllConnections" in server) server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    await this.deps.link.close();
    await this.deps.hostLink.close();
    await this.deps.state.flush();
  }

  status(): BoardStatus {
    const scheduleState = this.core?.scheduleState;
    const triggers = this.core?.triggers ?? [];
    const failsafe = this.failsafeState;
    const lastTrigger = triggers[triggers.length - 1];
    const nextTriggerMs = this.core?.plannedTriggerMs(
      lastTrigger === undefined ? (this.firstIndex ?? 0) : lastTrigger.index + 1,
    );
    const board = this.deps.testbed.boards.find((b) => b.id === this.deps.boardId);
    return {
      board: this.deps.boardId,
      host: board?.guards ?? "",
      phase: this.currentPhase,
      updatedAtMs: this.now(),
      ...(this.core?.schedule === undefined ? {} : { schedule: this.core.schedule }),
      ...(lastTrigger === undefined ? {} : { period: lastTrigger.index }),
      ...(scheduleState === undefined ? {} : { group: scheduleState.group }),
      ...(this.currentPhase === "running" && nextTriggerMs !== undefined ? { nextTriggerMs } : {}),
      lastSteps: this.lastSteps,
      ...(failsafe === undefined ? {} : { failsafe }),
      ...(this.runningStep === undefined
        ? {}
        : { step: { name: this.runningStep, startedAtMs: this.runningStepStartedMs } }),
      link: this.deps.link.counters,
      maxTimerLatenessMs: this.maxLatenessMs,
      ...(this.alarms.length === 0 ? {} : { alarms: [...this.alarms] }),
      keyLease: {
        renewing: this.runner?.leasing ?? false,
        ...(this.runner !== undefined && this.runner.lastLeaseLapsesAtMs > 0
          ? { lapsesAtMs: this.runner.lastLeaseLapsesAtMs }
          : {}),
      },
      ...(this.stoppingSinceMs === undefined || this.stopped
        ? {}
        : { stopping: { sinceMs: this.stoppingSinceMs } }),
    };
  }

  /** The core, joining its peers (or in the latched fail-safe state read back from disk). */
  private createCore(restored: FailsafeState | undefined): void {
    const t = this.deps.testbed;
    const boardOfHost = new Map(t.boards.map((b) => [b.guards, b.id]));
    if (t.rejuvenation.tPMs === undefined || t.rejuvenation.tDMs === undefined) {
      throw new Error(
        "the testbed sets no tP or tD: the board cannot run a schedule (smw plan suggests them)",
      );
    }
    this.core = new BoardCore({
      self: this.deps.boardId,
      boards: t.boards.map((b) => b.id),
      groups: t.rejuvenation.groups.map((g) => g.map((h) => boardOfHost.get(h) as string)),
      budgets: t.rejuvenation.budgets,
      tPMs: t.rejuvenation.tPMs,
      tDMs: t.rejuvenation.tDMs,
      latenessBoundMs: t.timeliness.procMaxMs,
      heartbeatMs: t.controlNetwork.heartbeatMs,
      silenceBoundMs: t.controlNetwork.silenceBoundMs,
      deliveryBoundMs: t.controlNetwork.deliveryBoundMs,
      clockOffsetBoundMs: t.timeliness.clockOffsetBoundMs,
      driftMaxPpm: t.timeliness.driftMaxPpm,
      authFailureLimit: t.failsafe.authFailureLimit,
      authFailureWindowMs: t.failsafe.authFailureWindowMs,
      onAuthFailures: t.failsafe.onAuthFailures,
      failsafePolicy: t.failsafe.actions,
      keyLeaseMs: t.rejuvenation.keyLeaseMs,
      ...(this.deps.joinLeadMs === undefined ? {} : { joinLeadMs: this.deps.joinLeadMs }),
      joinDeadlineMs:
        this.deps.joinDeadlineMs ?? t.controlNetwork.joinDeadlineMs ?? t.rejuvenation.tPMs,
      startMs: this.now(),
      lastKeyEpoch: this.deps.state.readCertificateEpoch(),
      ...(restored === undefined ? {} : { restoredFailsafe: restored }),
    });
    this.floorKeys();
    this.execute(this.core.start());
    this.startWatchdogs();
  }

  /**
   * The core wakes at least every heartbeat, in every phase (a board in fail-safe still tells its
   * peers): fed while it woke within the silence bound, so a stalled event loop or a broken timer
   * chain lets the watchdog restart the board.
   */
  private startWatchdogs(): void {
    if (this.feeder !== undefined || (this.deps.watchdogs ?? []).length === 0) return;
    const net = this.deps.testbed.controlNetwork;
    const boundMs =
      Math.max(net.silenceBoundMs, 2 * net.heartbeatMs) + this.deps.testbed.timeliness.procMaxMs;
    this.lastTickMs = this.now();
    this.feeder = new WatchdogFeeder(
      this.deps.watchdogs ?? [],
      () => this.now() - this.lastTickMs <= boundMs,
    );
    this.feeder.start();
  }

  // --- running ---------------------------------------------------------------

  private onMessage(from: string, message: Parameters<ControlLink["broadcast"]>[0]): void {
    this.dispatch({ kind: "message", from, message, nowMs: this.now() });
  }

  private dispatch(event: BoardEvent): void {
    if (this.core === undefined || this.stopped) return;
    this.execute(this.core.handle(event));
    this.arm();
  }

  /** Chains one timer to the core's next absolute instant (never setInterval). */
  private arm(): void {
    if (this.core === undefined || this.stopped) return;
    const wake = this.core.nextWakeupMs();
    if (wake === undefined || wake === this.timer.armedForMs) return;
    this.timer.arm(wake, (nowMs) => {
      this.lastTickMs = nowMs;
      this.maxLatenessMs = Math.max(this.maxLatenessMs, nowMs - wake);
      this.watchWallClock();
      this.dispatch({ kind: "time", nowMs, armedForMs: wake });
    });
  }

  /** An alarm when the wall clock is stepped or slewed away from the board's clock. */
  private watchWallClock(): void {
    const t = this.deps.testbed.timeliness;
    const movedMs = this.clock.wallClockMoved(t.driftMaxPpm, 2 * t.procMaxMs + 5);
    if (movedMs === undefined) return;
    this.raiseAlarm(
      `the wall clock moved ${movedMs.toFixed(1)} ms from the board's monotonic clock since the daemon started (more than ${t.driftMaxPpm} ppm): timers and the schedule keep to the monotonic clock; check the time service`,
    );
  }

  /** The start-up check holds the host in reset (from its start to the host's release). */
  private holdingHost = false;
  /** When this run of the daemon began running the board (its clock). */
  private ranAtMs = 0;
  /** Renews the lease on the host's key (`StepRunner.renewLease`), four times a lease. */
  private leaseTimer: NodeJS.Timeout | undefined;

  /** Per host: keys certified before this epoch are revoked (see the `revokeKeys` action). */
  private readonly revokedKeys = new Map<string, number>();

  private execute(actions: BoardAction[]): void {
    let statusChanged = false;
    for (const action of actions) {
      switch (action.kind) {
        case "broadcast":
          this.deps.link.broadcast(action.message);
          break;
        case "send":
          this.deps.link.send(action.to, action.message);
          break;
        case "runStep":
          this.runStep(action.step, action.period);
          statusChanged = true;
          break;
        case "enterFailsafe":
          this.runner?.stopLeases();
          this.step?.abort();
          this.startupAbort?.abort();
          // The lines first: a disk that cannot be written (an SD card gone read-only, a full
          // one) must not leave the host running while the status says fail-safe.
          this.applyFailsafeActions(action.state, action.actions, true);
          this.latchFailsafe(action.state);
          statusChanged = true;
          break;
        case "failsafeCleared":
          this.latchFailsafe(undefined);
          this.restored = undefined;
          this.deps.log.warn("fail-safe cleared by the operator: joining the peers again");
          this.floorKeys();
          // The host was held by the fail-safe state: released once its images verify again.
          this.startup = this.startupCheck();
          statusChanged = true;
          break;
        case "alarm":
          this.raiseAlarm(action.reason);
          statusChanged = true;
          break;
        case "joined":
          this.firstIndex = action.firstIndex;
          this.deps.log.info(
            {
              schedule: action.schedule,
              firstPeriod: action.firstIndex,
              // Period 0's lead covers every host's first boot (`defaultJoinLeadMs`): minutes on
              // real hosts, so the log says when the first period begins.
              ...(action.firstIndex === 0
                ? {
                    period0At: new Date(action.schedule).toISOString(),
                    period0InS: Math.round((action.schedule - this.now()) / 1000),
                  }
                : {}),
            },
            action.firstIndex === 0
              ? "joined: the schedule is agreed"
              : "joined: running the peers' schedule from its next period",
          );
          statusChanged = true;
          break;
        case "trigger":
          this.certifiedOutOfSchedule = false;
          this.metrics.observeTrigger(action.record.latenessMs);
          this.deps.log.info(
            { period: action.record.index, latenessMs: action.record.latenessMs },
            "period triggered",
          );
          this.deps.state.appendRecord({
            kind: "trigger",
            board: this.deps.boardId,
            ...action.record,
          });
          statusChanged = true;
          break;
        case "recoveryDone":
          this.recordSteps(action.records);
          this.deps.log.info(
            {
              period: action.period,
              steps: this.lastSteps.map(({ step, tookMs, verdict }) => ({ step, tookMs, verdict })),
            },
            "host rejuvenated",
          );
          statusChanged = true;
          break;
        case "recoveryInterrupted":
          this.recordSteps(action.records);
          this.deps.log.warn(
            {
              period: action.period,
              steps: this.lastSteps.map(({ step, tookMs, verdict }) => ({ step, tookMs, verdict })),
            },
            "rejuvenation cut short by fail-safe",
          );
          statusChanged = true;
          break;
        case "revokeKeys": {
          const hosts = this.deps.testbed.rejuvenation.groups[action.group] ?? [];
          // Key epochs are the certifying board's clock in whole seconds: every key these
          // replicas hold now is older than this second, every key certified after their boot is
          // not (a boot takes longer than the boards' clocks may differ).
          const before = Math.floor(this.now() / 1000);
          for (const host of hosts) this.revokedKeys.set(host, before);
          // This board's own host is going down with its group: it hears of it when it boots.
          const own = this.deps.testbed.boards.find((b) => b.id === this.deps.boardId)?.guards;
          if (own !== undefined && hosts.includes(own)) {
            // No more leases on its key: the shutdown step resets it once the last one lapsed.
            this.runner?.stopLeases();
            break;
          }
          // Told once those hosts are held in reset (T_shutdown at the latest): until then they
          // still run and hand off; from then on only a thief could speak with their keys.
          const timer = setTimeout(() => {
            if (this.stopped) return;
            for (const message of revokeMessages(hosts, before)) this.deps.hostLink.send(message);
            this.deps.log.info({ period: action.period, hosts, before }, "keys revoked");
          }, this.deps.testbed.rejuvenation.budgets.tShutdownMs);
          timer.unref();
          break;
        }
        case "periodComplete":
          this.deps.log.info(
            { period: action.period, tookMs: action.endMs - action.startMs },
            "period complete",
          );
          this.deps.state.appendRecord({ ...action, kind: "period" });
          statusChanged = true;
          break;
      }
    }
    if (statusChanged) this.writeStatus();
  }

  /** A rejuvenation's step records: the status's `lastSteps`, and appended to `steps.jsonl`. */
  private recordSteps(records: readonly StepRecord[]): void {
    this.metrics.observeSteps(records);
    this.lastSteps = records.map((r) => ({
      period: r.period,
      step: r.step,
      plannedMs: r.plannedMs,
      budgetMs: r.budgetMs,
      verdict: r.verdict,
      ...(r.startMs !== undefined && r.endMs !== undefined
        ? { startMs: r.startMs, endMs: r.endMs, tookMs: r.endMs - r.startMs }
        : {}),
    }));
    for (const record of records)
      this.deps.state.appendRecord({ kind: "step", board: this.deps.boardId, ...record });
  }

  /** The host was last released in a cold start (`BoardCore.isColdStart`): its first key says so. */
  private releasedCold = false;
  /** A join began: no key below the floor this board announces (`BoardCore.keyFloor`). */
  private floorKeys(): void {
    if (this.core !== undefined) this.runner?.certifyNoneBelow(this.core.keyFloor);
  }

  /**
   * The revocations every certificate goes out with, by host: those of the groups being
   * rejuvenated (`revokeKeys`), and each peer host's keys below its board's key floor
   * (`BoardCore.keyFloors`: keys of a host reset since, for a cold start the era before).
   */
  private revocations(): Map<string, number> {
    const byHost = new Map(this.revokedKeys);
    for (const [board, floor] of this.core?.keyFloors() ?? []) {
      const host = this.deps.testbed.boards.find((b) => b.id === board)?.guards;
      if (host !== undefined) byHost.set(host, Math.max(floor, byHost.get(host) ?? 0));
    }
    return byHost;
  }

  /** The start-up check under way, if any (steps of a rejuvenation wait for it). */
  private startup: Promise<void> = Promise.resolve();
  private startupAbort: AbortController | undefined;

  /**
   * After any start of the daemon, and after a clear, the host stays held in reset (its lines
   * were claimed at their safe levels) until its images check out, restored if they do not: a
   * board restarted in the middle of a restore never releases a host onto a half-written disk.
   * A check or restore that fails is a fail-safe trigger.
   */
  private async startupCheck(): Promise<void> {
    const runner = this.runner as StepRunner;
    const lines = this.lines as BoardLines;
    const controller = new AbortController();
    this.startupAbort = controller;
    const fail = (reason: string) =>
      this.dispatch({ kind: "localFault", reason: `start-up: ${reason}`, nowMs: this.now() });
    try {
      // After a clear, a host left running through the fail-safe (a policy without `hold-reset`)
      // may still be leased: it is reset, where the adversary may leave it, only once the lease
      // lapsed. At a daemon's start the lines were claimed held already (SAFETY.md, "Key epochs").
      // No certificate, so no lease, from here until the release.
      this.holdingHost = true;
      runner.stopLeases();
      const waitedMs = await runner.untilLeaseLapsed(controller.signal);
      if (controller.signal.aborted) return;
      if (waitedMs > 0)
        this.deps.log.info(
          { waitedMs: Math.round(waitedMs) },
          "start-up: the host was left running; held in reset once the last lease on its key lapsed",
        );
      lines.set("reset", "active");
      if (lines.has("storage-mux")) lines.set("storage-mux", "active");
      for (const image of ["OS", "SM"] as const) {
        const check = await runner.run(`check${image}`, -1, controller.signal);
        if (controller.signal.aborted) return;
        if (!check.ok) return fail(`check of the ${image} image failed: ${check.reason}`);
        if (check.corrupted !== true) continue;
        this.deps.log.warn({ image }, "start-up: image corrupted; restoring before the host runs");
        const restore = await runner.run(`restore${image}`, -1, controller.signal);
        if (controller.signal.aborted) return;
        if (!restore.ok) return fail(`restore of the ${image} image failed: ${restore.reason}`);
      }
      // Held until the testbed is there and not in fail-safe (see `BoardCore.mayReleaseHost`).
      while (
        !this.stopped &&
        this.runningStep === undefined &&
        this.core !== undefined &&
        !this.core.mayReleaseHost(this.now())
      ) {
        // A fail-safe entered and cleared while this slept began a newer check: that one decides.
        if (this.currentPhase === "failsafe" || controller.signal.aborted) return;
        await new Promise((resolve) =>
          setTimeout(resolve, this.deps.testbed.controlNetwork.heartbeatMs),
        );
      }
      if (
        this.stopped ||
        controller.signal.aborted ||
        this.currentPhase === "failsafe" ||
        this.runningStep !== undefined
      )
        return;
      // A lease this board issued (in this run before a fail-safe, or in its previous run) may
      // still speak for the host's former key: the host runs again (a reset the adversary may
      // have left it at) only once it has lapsed.
      const leaseLapsedAtMs = Math.max(
        this.ranAtMs + this.deps.testbed.rejuvenation.keyLeaseMs,
        runner.lastLeaseLapsesAtMs,
      );
      if (this.now() < leaseLapsedAtMs) {
        // Cut short when the check is (a stop or a fail-safe aborts it): nothing keeps the
        // process up for it.
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, leaseLapsedAtMs - this.now());
          timer.unref();
          controller.signal.addEventListener(
            "abort",
            () => {
              clearTimeout(timer);
              resolve();
            },
            { once: true },
          );
        });
        // Whatever changed meanwhile (stopped, failed safe, a step began) is checked again.
        const phase: string = this.currentPhase;
        if (controller.signal.aborted || (phase !== "running" && phase !== "joining")) return;
        if (this.runningStep !== undefined) return;
      }
      if (lines.has("storage-mux")) lines.set("storage-mux", "inactive");
      if (lines.has("power")) lines.set("power", "active");
      this.deps.hostLink.flush();
      this.releasedCold = this.core?.isColdStart(this.now()) ?? false;
      // The host boots from images just verified, as in a rejuvenation: its key is certified at
      // once, not at the next trigger (a host left without a replica until then would be one
      // more down than the schedule allows for).
      this.certifiedOutOfSchedule = false;
      this.holdingHost = false;
      lines.set("reset", "inactive");
      this.deps.log.info(
        { coldStart: this.releasedCold },
        `start-up: images verified; host released${this.releasedCold ? " (a cold start: no board runs a schedule)" : ""}`,
      );
    } catch (error) {
      fail((error as Error).message);
    } finally {
      if (this.startupAbort === controller) {
        this.startupAbort = undefined;
        // Released, or left to what stopped the check (a fail-safe holds it, a step drives it).
        this.holdingHost = false;
      }
    }
  }

  /**
   * A host that boots outside its rejuvenation (the first start of a testbed, a host powered
   * on by hand) gets its key certified once per run of the daemon; after that it waits for its
   * rejuvenation, so a compromised host cannot collect fresh keys at will.
   */
  private onUnscheduledBoot(publicKey: string): void {
    if (this.stopping !== undefined) return;
    const phase = this.currentPhase;
    if (this.runningStep !== undefined || phase === "failsafe" || phase === "stopped") return;
    // Held at start-up: a BOOTED line from before the hold (still in the serial buffer) is no
    // boot, and certifying it would lease a key again while the host is down.
    if (this.holdingHost) return;
    if (this.certifiedOutOfSchedule) return;
    this.certifiedOutOfSchedule = true;
    try {
      this.deps.state.writeUnscheduledCertificate(this.now());
    } catch (error) {
      // Unrecorded, a restart of this board would certify that host again: no certificate.
      this.deps.log.error(
        { dir: this.deps.state.dir, err: (error as Error).message },
        "host booted outside a rejuvenation, but its certificate could not be recorded on disk: not certified",
      );
      return;
    }
    this.runner?.certify(publicKey, { coldStart: this.releasedCold });
    this.releasedCold = false;
    this.deps.log.info(
      "host booted outside a rejuvenation: its key certified (once per period: a replica that crashed comes back under a new key)",
    );
  }

  private runStep(step: RecoveryStep, period: number): void {
    // Stopping: no step begins (the lines go to their safe levels as the process ends).
    if (this.stopping !== undefined) return;
    const controller = new AbortController();
    this.step = controller;
    this.runningStep = step;
    this.runningStepStartedMs = this.now();
    // A certificate issued in a rejuvenation uses up this period's out-of-schedule allowance.
    if (step === "boot") this.certifiedOutOfSchedule = true;
    if (step === "shutdown") this.releasedCold = false;
    this.deps.log.info({ step, period }, "step started");
    const startedMs = this.now();
    // After the start-up check, if one is still under way (its time counts against the step).
    void this.startup
      .then(() => (this.runner as StepRunner).run(step, period, controller.signal))
      .then((outcome) => {
        if (this.step === controller) this.runningStep = undefined;
        if (controller.signal.aborted) return;
        this.deps.log.info(
          {
            step,
            period,
            tookMs: this.now() - startedMs,
            ...(outcome.ok
              ? { corrupted: outcome.corrupted === true }
              : { failed: outcome.reason }),
            ...(outcome.ok && outcome.detail !== undefined ? { detail: outcome.detail } : {}),
          },
          "step finished",
        );
        this.dispatch({ kind: "stepFinished", step, outcome, nowMs: this.now() });
      });
  }

  /**
   * An alarm: logged, recorded, and sent to the fail-safe policy's webhooks and commands (with
   * SMW_ALARM set), without entering the fail-safe state.
   */
  private raiseAlarm(reason: string): void {
    this.deps.log.error({ reason }, "ALARM");
    this.alarms.push({ atMs: this.now(), reason });
    if (this.alarms.length > 16) this.alarms.shift();
    this.deps.state.appendRecord({
      kind: "alarm",
      board: this.deps.boardId,
      atMs: this.now(),
      reason,
    });
    const sink = this.deps.alerts ?? defaultAlerts;
    for (const action of this.deps.testbed.failsafe.actions) {
      if (action.kind === "webhook")
        void sink
          .webhook(action.url, {
            board: this.deps.boardId,
            testbed: this.deps.testbed.name,
            alarm: reason,
            atMs: this.now(),
          })
          .catch((error: Error) =>
            this.deps.log.error({ url: action.url, err: error.message }, "alarm webhook failed"),
          );
      if (action.kind === "exec") {
        try {
          sink.exec(action.argv, { SMW_BOARD: this.deps.boardId, SMW_ALARM: reason });
        } catch (error) {
          this.deps.log.error({ err: (error as Error).message }, "alarm command failed");
        }
      }
    }
  }

  /**
   * The fail-safe state written down, so that a restarted board comes back in it (or, cleared,
   * does not). A write that fails is logged, never thrown: it would end the handling of the frame
   * or timer that brought the fail-safe, and whatever else it was to do.
   */
  private latchFailsafe(state: FailsafeState | undefined): void {
    try {
      this.deps.state.writeFailsafe(state);
    } catch (error) {
      this.deps.log.error(
        { file: this.deps.state.failsafeFile, err: (error as Error).message },
        state === undefined
          ? "could not write down that the fail-safe was cleared: a restart of this board would come back in fail-safe"
          : "could not latch the fail-safe state on disk: the host is held, but a restart of this board would not come back in fail-safe",
      );
    }
  }

  private applyFailsafeActions(
    state: FailsafeState,
    actions: readonly FailsafeAction[],
    announce: boolean,
  ): void {
    this.deps.log.error({ reason: state.reason, origin: state.origin }, "FAIL-SAFE");
    const lines = this.lines as BoardLines;
    const attempt = (what: string, fn: () => void) => {
      try {
        fn();
      } catch (error) {
        this.deps.log.error({ err: (error as Error).message }, `fail-safe action ${what} failed`);
      }
    };
    for (const action of actions) {
      switch (action.kind) {
        case "hold-reset":
          attempt("hold-reset", () => lines.set("reset", "active"));
          break;
        case "power-off":
          attempt("power-off", () => lines.set("power", "inactive"));
          break;
        case "alarm-line":
          attempt("alarm-line", () => lines.set("alarm", "active"));
          break;
        case "webhook":
          {
            const body = {
              board: this.deps.boardId,
              testbed: this.deps.testbed.name,
              failsafe: state,
              restarted: !announce,
              atMs: this.now(),
            };
            void (this.deps.alerts ?? defaultAlerts)
              .webhook(action.url, body)
              .catch((error: Error) => {
                this.deps.log.error(
                  { url: action.url, err: error.message },
                  "fail-safe webhook failed",
                );
              });
          }
          break;
        case "exec":
          attempt("exec", () =>
            (this.deps.alerts ?? defaultAlerts).exec(action.argv, {
              SMW_BOARD: this.deps.boardId,
              SMW_REASON: state.reason,
              SMW_ORIGIN: state.origin,
            }),
          );
          break;
      }
    }
  }

  // --- the operator: status and clear-failsafe, over a local socket and the network

  private listenForOperator(): Promise<void> {
    const socketPath = controlSocketPath(this.deps.state.dir);
    if (existsSync(socketPath)) unlinkSync(socketPath);
    // The local socket sits in the 0700 state folder: whoever reaches it is root
    // on the board. Over the network every request must be signed.
    const local = this.operatorServer(false);
    this.server = local;
    const listening = [
      new Promise<void>((resolve, reject) => {
        local.once("error", reject);
        local.listen(socketPath, () => resolve());
      }),
    ];
    const endpoint = this.deps.testbed.boards.find(
      (b) => b.id === this.deps.boardId,
    )?.operatorEndpoint;
    if (endpoint !== undefined) {
      const remote = this.operatorServer(true);
      this.networkServer = remote;
      listening.push(
        new Promise<void>((resolve, reject) => {
          remote.once("error", (error: NodeJS.ErrnoException) =>
            reject(
              new TransportError(
                `cannot listen for the operator on tcp ${endpoint.host}:${endpoint.port}: ${error.code === "EADDRINUSE" ? "the port is in use" : error.message}`,
              ),
            ),
          );
          remote.listen(endpoint.port, endpoint.host, () => resolve());
        }),
      );
    }
    return Promise.all(listening).then(() => {});
  }

  private operatorServer(network: boolean): Server {
    const perAddress = new Map<string, number>();
    const server = createServer((connection) => {
      // A few per address: one peer reconnecting every few seconds cannot hold every slot.
      const address = connection.remoteAddress ?? "local";
      const open = (perAddress.get(address) ?? 0) + 1;
      perAddress.set(address, open);
      connection.on("close", () => {
        const left = (perAddress.get(address) ?? 1) - 1;
        if (left <= 0) perAddress.delete(address);
        else perAddress.set(address, left);
      });
      if (network && open > OPERATOR_CONNECTIONS_PER_ADDRESS) {
        connection.destroy();
        return;
      }
      let text = "";
      connection.setEncoding("utf8");
      // Five seconds for the whole request, not between bytes: a byte every few seconds would
      // otherwise hold a connection open for ever.
      const deadline = setTimeout(() => connection.destroy(), OPERATOR_REQUEST_MS);
      connection.on("close", () => clearTimeout(deadline));
      connection.on("data", (chunk: string) => {
        text += chunk;
        if (text.length > 4096) connection.destroy();
        if (!text.includes("\n")) return;
        connection.end(
          `${JSON.stringify(this.operatorRequest(text.split("\n")[0] as string, network))}\n`,
        );
      });
      connection.on("error", () => {});
    });
    // One request a connection, each over within its deadline: a few at once are plenty, and
    // whoever reaches the port cannot use up the board's memory and descriptors with idle ones.
    server.maxConnections = OPERATOR_MAX_CONNECTIONS;
    return server;
  }

  private operatorRequest(
    line: string,
    network: boolean,
  ): { ok: boolean; message: string; status?: BoardStatus } {
    try {
      const request = JSON.parse(line) as {
        type?: unknown;
        board?: unknown;
        issuedAtMs?: unknown;
        signature?: unknown;
      };
      if (request.type !== "status" && request.type !== "clear-failsafe")
        return { ok: false, message: "unknown request" };
      const signedNeeded = network || request.type === "clear-failsafe";
      if (signedNeeded) {
        if (
          request.board !== this.deps.boardId ||
          typeof request.issuedAtMs !== "number" ||
          typeof request.signature !== "string"
        ) {
          return { ok: false, message: `malformed ${request.type} request` };
        }
        if (Math.abs(this.now() - request.issuedAtMs) > 300_000) {
          return {
            ok: false,
            message: "the request is more than 5 minutes old (or from the future)",
          };
        }
        const signed = operatorRequestBytes(request.type, request.board, request.issuedAtMs);
        if (
          !verify(null, signed, this.deps.operatorKey, Buffer.from(request.signature, "base64"))
        ) {
          return { ok: false, message: "the request is not signed by the operator key" };
        }
        // A clear acts once: a recorded one replayed later (even after a restart) is refused.
        if (request.type === "clear-failsafe") {
          const last = this.deps.state.readLastOperatorRequest();
          if (last === Number.POSITIVE_INFINITY) {
            return {
              ok: false,
              message: `${this.deps.state.operatorRequestFile}, which records the last request acted on, is unreadable: every clear is refused until it is repaired (it holds one number, the issuedAtMs of that request) or removed`,
            };
          }
          if (!(request.issuedAtMs > last)) {
            return {
              ok: false,
              message: `the request is not newer than the last one acted on (issued at ${request.issuedAtMs}, last ${last}): a replay, or sign a new one`,
            };
          }
          this.deps.state.writeLastOperatorRequest(request.issuedAtMs);
        }
      }
      if (request.type === "status") return { ok: true, message: "status", status: this.status() };
      if (this.failsafeState === undefined)
        return { ok: true, message: "the board is not in fail-safe" };
      if (this.core === undefined)
        return { ok: false, message: "the board has not started yet: try again" };
      this.dispatch({ kind: "clearFailsafe", nowMs: this.now() });
      return { ok: true, message: "fail-safe cleared; the board is joining its peers again" };
    } catch (error) {
      return { ok: false, message: `bad request: ${(error as Error).message}` };
    }
  }

  private lastStatusWriteMs = 0;
  private writeStatus(): void {
    const now = this.now();
    if (now - this.lastStatusWriteMs < 50 && this.currentPhase === "running") return;
    this.lastStatusWriteMs = now;
    try {
      this.deps.state.writeStatus(this.status());
    } catch (error) {
      this.deps.log.error({ err: (error as Error).message }, "cannot write the status file");
    }
  }
}

/** The testbed's schedule fails the planner's conditions: no board runs it. */
export class InfeasibleScheduleError extends Error {
  override name = "InfeasibleScheduleError";
}

export function controlSocketPath(stateDir: string): string {
  return path.join(stateDir, "control.sock");
}

/** The bytes the operator signs for a request to a board: clear its fail-safe state, or tell its status. */
export function operatorRequestBytes(
  type: "status" | "clear-failsafe",
  board: string,
  issuedAtMs: number,
): Buffer {
  return Buffer.from(JSON.stringify([`smw ${type}`, board, issuedAtMs]), "utf8");
}

/** The real alert sinks: an HTTP POST of the JSON alert, and a detached command with SMW_* variables. */
export const defaultAlerts: AlertSink = {
  async webhook(url, body) {
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(5_000),
    });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
  },
  exec(argv, env) {
    const [program, ...args] = argv;
    if (program === undefined) return;
    const child = spawn(program, args, {
      env: { ...process.env, ...env },
      stdio: "ignore",
      detached: true,
    });
    child.on("error", () => {});
    child.unref();
  },
};
