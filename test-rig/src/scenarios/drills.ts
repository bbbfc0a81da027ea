/**
 * Fail-safe drills: one scripted fault per fail-safe trigger, each on a fresh
 * rig. A drill passes when every live board enters the fail-safe state for the
 * expected reason, every host of a live board is held in reset, and every live
 * board's alert reaches the local webhook receiver. It reports the time from
 * the moment the fault took effect to the moment the last of those hosts was
 * held. The clean run is the converse: periods under load with no fail-safe.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { tLocalexecMs } from "@smw/wormhole-board";
import { corruptBytes } from "../faults/disk-faults.js";
import { ClientLoad, type LoadFigures } from "../load/client-load.js";
import { checkHistory, type HistoryVerdict, historyText } from "../report/run-report.js";
import { type BoardRecords, readBoardRecords } from "../report/step-records.js";
import { stepsCsv } from "../report/step-stats.js";
import { renderTimelineSvg } from "../report/timeline-svg.js";
import { narrate } from "../rig/narrator.js";
import { periodComplete } from "../rig/period-watch.js";
import { Rig } from "../rig/rig.js";
import { RigEventStream, type StampedEvent } from "../rig/rig-events.js";
import { CLIENT_IDS } from "../rig/rig-setup.js";

export interface DrillResult {
  name: string;
  passed: boolean;
  /** From the fault taking effect to the last live board's host held in reset; null if that never happened. */
  timeToSafeMs: number | null;
  reasons: string[];
  alerts: Array<{ board: string; reason: string }>;
  hostsHeld: string[];
  hostsNotHeld: string[];
  /** The steps the boards themselves recorded as over budget or failed (their `steps.jsonl`). */
  stepsBroken: BrokenStep[];
  /** The client load's history (history.jsonl in the drill's folder), checked for linearizability. */
  history: HistoryVerdict | null;
  detail: string;
}

export interface BrokenStep {
  board: string;
  host: string;
  period: number;
  step: string;
  verdict: string;
  tookMs: number | null;
  budgetMs: number;
  detail?: string;
}

interface DrillContext {
  rig: Rig;
  /** The host whose rejuvenation comes next, and its board. */
  next(): { host: string; board: string };
}

interface Drill {
  name: string;
  description: string;
  /** What the fail-safe reason must match. */
  reason: RegExp;
  /** Injects the fault; returns a test for the event at which it takes effect (undefined: at once). */
  inject(context: DrillContext): ((e: StampedEvent) => boolean) | undefined;
}

const stepStarted = (board: string, step: string) => (e: StampedEvent) =>
  e.kind === "board" && e.board === board && e.msg === "step started" && e.fields.step === step;

export const DRILLS: readonly Drill[] = [
  {
    name: "host-will-not-boot",
    description: "the next host to be rejuvenated hangs in its boot: T_boot overruns",
    reason: /boot/,
    inject({ rig, next }) {
      const { host } = next();
      rig.bootHang(host);
      return (e) => e.kind === "host-boot-failed" && e.host === host;
    },
  },
  {
    name: "frames-lost",
    description:
      "30% of every board's control frames are lost, then a board's clock jumps: every board is safe within a silence bound all the same (heartbeats carry the fail-safe state; a peer heard from too seldom is silent)",
    // The jump is seen first; at this loss rate a silence may be, too: either is the fail-safe.
    reason: /clock|silent/,
    inject({ rig }) {
      rig.loseFrames(0.3);
      const board = rig.testbed.boards[2]?.id ?? (rig.testbed.boards[0]?.id as string);
      rig.skewClock(board, 3 * rig.testbed.timeliness.clockOffsetBoundMs);
      return undefined;
    },
  },
  {
    name: "transfer-hangs",
    description:
      "the next host stalls once its key is certified: its state transfer overruns T_transfer",
    reason: /transfer/,
    inject({ rig, next }) {
      const { host } = next();
      rig.slowTransfer(host, (rig.testbed.rejuvenation.budgets.tTransferMs ?? 0) + 5_000);
      return (e) =>
        e.kind === "fault" && e.host === host && /after its key is certified/.test(e.detail);
    },
  },
  {
    name: "board-dies",
    description: "a board's process is killed: its peers stop hearing it",
    reason: /silent|heard|nothing/i,
    inject({ rig }) {
      const last = rig.testbed.boards[rig.testbed.boards.length - 1]?.id as string;
      rig.killBoard(last);
      return undefined;
    },
  },
  {
    name: "control-link-cut",
    description: "one control link of the mesh is cut: two boards stop hearing each other",
    reason: /silent|heard|nothing|link/i,
    inject({ rig }) {
      const [a, b] = rig.testbed.boards.map((x) => x.id);
      rig.cutControlLink(a as string, b as string);
      return undefined;
    },
  },
  {
    name: "clock-skew",
    description: "a board's clock jumps ahead by three times the clock offset bound",
    reason: /clock/,
    inject({ rig }) {
      const board = rig.testbed.boards[2]?.id ?? (rig.testbed.boards[0]?.id as string);
      rig.skewClock(board, 3 * rig.testbed.timeliness.clockOffsetBoundMs);
      return undefined;
    },
  },
  {
    name: "golden-image-tampered",
    description:
      "the golden SM image is tampered with where the next host's code is corrupted: the restore must refuse it",
    reason: /golden|manifest|restore|digest|verify/i,
    inject({ rig, next }) {
      const { board } = next();
      rig.tamperGolden("sm");
      const live = rig.testbed.boards.find((b) => b.id === board)?.images.sm.live as string;
      corruptBytes(live, 64 * 1024 + 100, 16);
      return stepStarted(board, "restoreSM");
    },
  },
  {
    name: "manifest-tampered",
    description: "the OS image's signed manifest is altered: the next check cannot trust it",
    reason: /manifest|signature/i,
    inject({ rig, next }) {
      const { board } = next();
      rig.tamperManifest("os");
      return stepStarted(board, "checkOS");
    },
  },
  {
    name: "restore-cannot-write",
    description:
      "the next host's OS image is corrupted and its board's write-protect line is stuck: the restore cannot write",
    reason: /write-protect|read back|restore|still corrupted/i,
    inject({ rig, next }) {
      const { host, board } = next();
      rig.jamWriteProtect(board);
      rig.corruptOsImage(host);
      return stepStarted(board, "restoreOS");
    },
  },
];

export const DRILL_NAMES = [...DRILLS.map((d) => d.name), "clean-run"];

export interface DrillOptions {
  testbedFile: string;
  say: (line: string) => void;
  /** Where each drill's folder goes (default: drills/ in the rig's run folder). */
  outDir?: string;
  /** Periods of the clean run. */
  cleanPeriods?: number;
  /** One network namespace per host (root only). */
  netns?: boolean;
  /** The folder of run folders (default: SMW_RUNS, else runs/ here). */
  runsDir?: string;
}

export async function runDrill(name: string, options: DrillOptions): Promise<DrillResult> {
  if (name === "clean-run") return runCleanRun(options);
  const drill = DRILLS.find((d) => d.name === name);
  if (drill === undefined)
    throw new RangeError(`no drill "${name}" (drills: ${DRILL_NAMES.join(", ")})`);
  const events = new RigEventStream();
  events.on((e) => {
    const line = narrate(e, { hostOf: () => "", firstBoard: "" });
    if (line !== undefined && e.kind !== "board") options.say(`  ${line}`);
    if (e.kind === "board" && e.msg === "FAIL-SAFE")
      options.say(
        `  [${(e.atMs / 1000).toFixed(1).padStart(6)} s] ${e.board}: FAIL-SAFE: ${e.fields.reason}`,
      );
  });
  options.say(`drill ${drill.name}: ${drill.description}`);
  const rig = await Rig.up({
    testbedFile: options.testbedFile,
    events,
    ...(options.runsDir === undefined ? {} : { runsDir: options.runsDir }),
    ...(options.netns ? { netns: true } : {}),
  });
  const t = rig.testbed;
  const order = t.rejuvenation.groups.flat();
  const boardOf = (host: string) => t.boards.find((b) => b.guards === host)?.id as string;
  const next = () => {
    const started = events.all.filter(
      (e) => e.kind === "board" && e.msg === "step started" && e.fields.step === "shutdown",
    );
    const lastBoard =
      started.length === 0 ? undefined : (started[started.length - 1] as { board: string }).board;
    const lastHost = t.boards.find((b) => b.id === lastBoard)?.guards;
    const i = lastHost === undefined ? -1 : order.indexOf(lastHost);
    const host = order[(i + 1) % order.length] as string;
    return { host, board: boardOf(host) };
  };
  let result: DrillResult;
  let load: ClientLoad | undefined;
  let figures: LoadFigures | undefined;
  try {
    await rig.waitHealthy(60_000);
    // Faults under the client load: whatever the fail-safe does, no client may see a wrong answer.
    load = new ClientLoad(t, CLIENT_IDS);
    load.start();
    const injectedAtWallMs = Date.now();
    const effect = drill.inject({ rig, next });
    const tP = t.rejuvenation.tPMs ?? 0;
    const tD = t.rejuvenation.tDMs ?? 0;
    const timeoutMs = tP + tD + 20_000;
    const effective =
      effect === undefined
        ? undefined
        : await waitEvent(events, (e) => e.wallMs >= injectedAtWallMs && effect(e), timeoutMs);
    const effectiveWallMs =
      effect === undefined
        ? injectedAtWallMs
        : effective?.kind === "board" && typeof effective.fields.boardTimeMs === "number"
          ? effective.fields.boardTimeMs
          : effective?.wallMs;
    // Every live board's host held, or the time is up.
    const deadline = Date.now() + (effectiveWallMs === undefined ? 0 : 20_000);
    const liveHosts = () =>
      [...rig.boards.values()]
        .filter((b) => b.alive)
        .map((b) => t.boards.find((x) => x.id === b.id)?.guards as string);
    while (Date.now() < deadline && !liveHosts().every((h) => rig.hosts.get(h)?.held))
      await sleep(50);
    // Let the alerts arrive.
    const alertDeadline = Date.now() + 3_000;
    while (Date.now() < alertDeadline && rig.alerts.received.length < rig.boards.size)
      await sleep(50);
    await sleep(300);
    figures = await load.stop();
    result = judge(drill, rig, events.all, effectiveWallMs, liveHosts(), figures);
  } catch (error) {
    figures = await load?.stop();
    result = {
      name: drill.name,
      passed: false,
      timeToSafeMs: null,
      reasons: [],
      alerts: [],
      hostsHeld: [],
      hostsNotHeld: [],
      stepsBroken: [],
      history: null,
      detail: `the drill could not run: ${(error as Error).message}`,
    };
  } finally {
    await rig.down();
  }
  result.stepsBroken = brokenSteps(saveDrillFolder(options, rig, drill.name, events.all, figures));
  for (const b of result.stepsBroken)
    options.say(
      `  ${b.board}/${b.host}: step ${b.step} of period ${b.period} ${b.verdict}${b.tookMs === null ? "" : ` after ${b.tookMs} ms`} (budget ${b.budgetMs} ms)${b.detail === undefined ? "" : `: ${b.detail}`}`,
    );
  return result;
}

function judge(
  drill: Drill,
  rig: Rig,
  events: readonly StampedEvent[],
  effectiveWallMs: number | undefined,
  liveHosts: readonly string[],
  load: LoadFigures,
): DrillResult {
  const reasons = [
    ...new Set(
      events.flatMap((e) =>
        e.kind === "board" && e.msg === "FAIL-SAFE" ? [String(e.fields.reason)] : [],
      ),
    ),
  ];
  const alerts = rig.alerts.received.map((a) => ({ board: a.board, reason: a.reason }));
  const hostsHeld = liveHosts.filter((h) => rig.hosts.get(h)?.held === true);
  const hostsNotHeld = [...rig.hosts.keys()].filter((h) => !hostsHeld.includes(h));
  // When each live host was last put in reset (or off), after the fault took effect.
  let safeAtWallMs: number | undefined;
  if (effectiveWallMs !== undefined && hostsHeld.length === liveHosts.length) {
    safeAtWallMs = effectiveWallMs;
    for (const host of liveHosts) {
      const held = events.filter(
        (e) => e.kind === "line" && e.host === host && e.wallMs >= effectiveWallMs - 1,
      );
      const last = held[held.length - 1];
      if (last !== undefined) safeAtWallMs = Math.max(safeAtWallMs, last.wallMs);
    }
  }
  const liveBoards = [...rig.boards.values()].filter((b) => b.alive).map((b) => b.id);
  const alerted = new Set(alerts.map((a) => a.board));
  const problems: string[] = [];
  if (effectiveWallMs === undefined) problems.push("the fault never took effect");
  if (reasons.length === 0) problems.push("no board entered the fail-safe state");
  else if (!reasons.some((r) => drill.reason.test(r)))
    problems.push(`the fail-safe reasons (${reasons.join("; ")}) do not name the fault`);
  if (hostsHeld.length < liveHosts.length)
    problems.push(
      `hosts not held in reset: ${liveHosts.filter((h) => !hostsHeld.includes(h)).join(", ")}`,
    );
  const silent = liveBoards.filter((b) => !alerted.has(b));
  if (silent.length > 0) problems.push(`no alert from ${silent.join(", ")}`);
  const history = checkHistory(load);
  if (history.linearizable !== true) problems.push(`the clients' history: ${history.detail}`);
  return {
    name: drill.name,
    passed: problems.length === 0,
    timeToSafeMs:
      safeAtWallMs === undefined || effectiveWallMs === undefined
        ? null
        : safeAtWallMs - effectiveWallMs,
    reasons,
    alerts,
    hostsHeld,
    hostsNotHeld,
    stepsBroken: [],
    history,
    detail: problems.length === 0 ? `fail-safe: ${reasons[0]}` : problems.join("; "),
  };
}

async function runCleanRun(options: DrillOptions): Promise<DrillResult> {
  const periods = options.cleanPeriods ?? 1;
  options.say(
    `drill clean-run: ${periods} period${periods === 1 ? "" : "s"} under load, no fault: no fail-safe may happen`,
  );
  const events = new RigEventStream();
  events.on((e) => {
    if (e.kind === "board" && e.msg === "FAIL-SAFE")
      options.say(`  ${e.board}: FAIL-SAFE: ${e.fields.reason}`);
  });
  const rig = await Rig.up({
    testbedFile: options.testbedFile,
    events,
    ...(options.runsDir === undefined ? {} : { runsDir: options.runsDir }),
    ...(options.netns ? { netns: true } : {}),
  });
  const t = rig.testbed;
  let load: ClientLoad | undefined;
  let figures: LoadFigures | undefined;
  let history: HistoryVerdict | null = null;
  let detail = "";
  let passed = false;
  try {
    await rig.waitHealthy(60_000);
    load = new ClientLoad(t, CLIENT_IDS);
    load.start();
    const completed = await periodComplete(
      events,
      t.boards.length,
      periods - 1,
      periods * (t.rejuvenation.tPMs ?? 0) + 30_000,
    );
    figures = await load.stop();
    history = checkHistory(figures);
    const failsafe = events.all.filter((e) => e.kind === "board" && e.msg === "FAIL-SAFE");
    passed =
      failsafe.length === 0 && completed && figures.failed === 0 && history.linearizable === true;
    detail = `${completed ? periods : "not all"} period(s) completed; ${failsafe.length === 0 ? "no fail-safe" : `${failsafe.length} boards in fail-safe`}; ${figures.completed} operations, ${figures.failed} failed; history ${history.detail}`;
  } catch (error) {
    detail = `the drill could not run: ${(error as Error).message}`;
    figures = await load?.stop();
  } finally {
    await rig.down();
  }
  const records = saveDrillFolder(options, rig, "clean-run", events.all, figures);
  return {
    name: "clean-run",
    passed,
    timeToSafeMs: null,
    reasons: [],
    alerts: rig.alerts.received.map((a) => ({ board: a.board, reason: a.reason })),
    hostsHeld: [],
    hostsNotHeld: [],
    stepsBroken: brokenSteps(records),
    history,
    detail,
  };
}

function brokenSteps(records: BoardRecords): BrokenStep[] {
  return records.steps
    .filter((s) => s.verdict === "over-budget" || s.verdict === "failed")
    .map((s) => ({
      board: s.board,
      host: s.host,
      period: s.period,
      step: s.step,
      verdict: s.verdict,
      tookMs:
        s.startMs === undefined || s.endMs === undefined ? null : Math.round(s.endMs - s.startMs),
      budgetMs: s.budgetMs,
      ...(s.detail === undefined ? {} : { detail: s.detail }),
    }));
}

/**
 * The drill's folder: what the rig saw, and the boards' own step records as `timings.csv` and
 * `timeline.svg`. Read once the boards have stopped, so every record they appended is in.
 */
function saveDrillFolder(
  options: DrillOptions,
  rig: Rig,
  name: string,
  events: readonly StampedEvent[],
  load: LoadFigures | undefined,
): BoardRecords {
  const dir = path.join(options.outDir ?? path.join(rig.root, "drills"), name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    path.join(dir, "events.jsonl"),
    `${events.map((e) => JSON.stringify(e)).join("\n")}\n`,
  );
  if (load !== undefined) writeFileSync(path.join(dir, "history.jsonl"), historyText(load));
  const t = rig.testbed;
  const records = readBoardRecords(t);
  writeFileSync(path.join(dir, "timings.csv"), stepsCsv(records.steps));
  writeFileSync(
    path.join(dir, "timeline.svg"),
    renderTimelineSvg({
      title: `${t.name}: drill ${name}, rejuvenations as the boards recorded them`,
      groups: t.rejuvenation.groups,
      boardOf: new Map(t.boards.map((b) => [b.guards, b.id])),
      steps: records.steps,
      triggers: records.triggers,
      periods: records.periods,
      tPMs: t.rejuvenation.tPMs ?? 0,
      tDMs: t.rejuvenation.tDMs ?? 0,
      tLocalexecMs: tLocalexecMs(t.rejuvenation.budgets),
    }),
  );
  return records;
}

function waitEvent(
  events: RigEventStream,
  accept: (e: StampedEvent) => boolean,
  timeoutMs: number,
): Promise<StampedEvent | undefined> {
  const seen = events.all.find(accept);
  return seen === undefined ? events.waitFor(accept, timeoutMs) : Promise.resolve(seen);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
