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
import { connectClient } from "@smw/host-agent";
import { tLocalexecMs } from "@smw/wormhole-board";
import { corruptBytes } from "../faults/disk-faults.js";
import type { LiveServer } from "../live/live-server.js";
import { ClientLoad, LOAD_KEYS, type LoadFigures } from "../load/client-load.js";
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
  /** The drill's folder: events.jsonl, timings.csv, timeline.svg, history.jsonl. */
  folder: string;
}

/** A drill's verdict before its folder is written. */
type DrillVerdict = Omit<DrillResult, "folder">;

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
      const { host, board } = next();
      rig.bootHang(host);
      // From the board's own start of the boot step (its clock), not from when the rig saw the
      // host hang: T_boot counts from there.
      return stepStarted(board, "boot");
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

export const DRILL_NAMES = [...DRILLS.map((d) => d.name), "restarted-and-cleared", "clean-run"];

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
  /** The live page: it follows each drill, then shows its verdict (the drills inject their own faults). */
  live?: LiveServer;
}

export async function runDrill(name: string, options: DrillOptions): Promise<DrillResult> {
  const result = await runOneDrill(name, options);
  options.live?.report({
    title: `smw drill ${result.name}: ${result.passed ? "PASS" : "FAIL"}`,
    promises: [],
    stats: [],
    lines: [
      result.detail,
      `time to safe: ${result.timeToSafeMs === null ? "-" : `${result.timeToSafeMs} ms`}`,
      `hosts held in reset: ${result.hostsHeld.join(", ") || "none"}${result.hostsNotHeld.length === 0 ? "" : `; not held: ${result.hostsNotHeld.join(", ")}`}`,
      `alerts: ${result.alerts.length === 0 ? "none" : result.alerts.map((a) => `${a.board} (${a.reason})`).join("; ")}`,
      ...(result.history === null ? [] : [`clients' history: ${result.history.detail}`]),
    ],
    folder: result.folder,
  });
  return result;
}

async function runOneDrill(name: string, options: DrillOptions): Promise<DrillResult> {
  if (name === "clean-run") return runCleanRun(options);
  if (name === "restarted-and-cleared") return runRestartedAndCleared(options);
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
  const rig = await drillRig(options, events, drill.name);
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
  let result: DrillVerdict;
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
    // The hosts held (or the time for it up): what is still waiting is of unknown outcome.
    figures = await load.stop(0);
    result = judge(drill, rig, events.all, effectiveWallMs, liveHosts(), figures);
  } catch (error) {
    figures = await load?.stop(0);
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
  const saved = saveDrillFolder(options, rig, drill.name, events.all, figures);
  result.stepsBroken = brokenSteps(saved.records);
  for (const b of result.stepsBroken)
    options.say(
      `  ${b.board}/${b.host}: step ${b.step} of period ${b.period} ${b.verdict}${b.tookMs === null ? "" : ` after ${b.tookMs} ms`} (budget ${b.budgetMs} ms)${b.detail === undefined ? "" : `: ${b.detail}`}`,
    );
  return { ...result, folder: saved.folder };
}

function judge(
  drill: Drill,
  rig: Rig,
  events: readonly StampedEvent[],
  effectiveWallMs: number | undefined,
  liveHosts: readonly string[],
  load: LoadFigures,
): DrillVerdict {
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
  const rig = await drillRig(options, events, "clean-run");
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
    detail = `${completed ? periods : "not all"} period(s) completed; ${failsafe.length === 0 ? "no fail-safe" : `${failsafe.length} boards in fail-safe`}; ${figures.completed} operations, ${figures.failed} unanswered; history ${history.detail}`;
  } catch (error) {
    detail = `the drill could not run: ${(error as Error).message}`;
    figures = await load?.stop(0);
  } finally {
    await rig.down();
  }
  const { records, folder } = saveDrillFolder(options, rig, "clean-run", events.all, figures);
  return {
    folder,
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

/** The keys the clients use once the testbed is cleared (see `runRestartedAndCleared`). */
const AFTER_CLEAR_KEYS = LOAD_KEYS.map((k) => `after-clear/${k}`);

/**
 * The way back from a fail-safe, end to end: a board is killed, every board fails safe and holds
 * its host in reset; the board is restarted (it comes back in its latched fail-safe), the
 * operator clears every board, the boards agree on a new schedule and release their hosts in a
 * cold start (every replica restarted at once from its disk: they agree on a stored checkpoint
 * and start from it), and the testbed completes a whole period, every host rejuvenated with real
 * replicas and state transfer, under client load. The clients work on fresh keys after the clear
 * (what was executed after the agreed checkpoint is lost, as in any restart from stored
 * checkpoints; how many keys went back is reported), and both histories must be linearizable.
 */
async function runRestartedAndCleared(options: DrillOptions): Promise<DrillResult> {
  const name = "restarted-and-cleared";
  options.say(
    `drill ${name}: a board is killed, every board fails safe; it is restarted, the operator clears every board, and the testbed completes a period with real replicas`,
  );
  const events = new RigEventStream();
  const at = (e: StampedEvent) => `[${(e.atMs / 1000).toFixed(1).padStart(6)} s]`;
  events.on((e) => {
    if (e.kind === "board" && e.msg === "FAIL-SAFE")
      options.say(`  ${at(e)} ${e.board}: FAIL-SAFE: ${e.fields.reason}`);
    else if (e.kind === "board" && e.msg.startsWith("joined"))
      options.say(`  ${at(e)} ${e.board}: ${e.msg}`);
    else if (e.kind === "board" && e.msg === "period complete")
      options.say(`  ${at(e)} ${e.board}: period ${e.fields.period} complete`);
    else if (e.kind === "fault") options.say(`  ${at(e)} ${e.board ?? e.host ?? "*"}: ${e.detail}`);
    else if (e.kind === "rig") options.say(`  ${at(e)} rig: ${e.detail}`);
  });
  const rig = await drillRig(options, events, name);
  const t = rig.testbed;
  const victim = t.boards[t.boards.length - 1]?.id as string;
  const problems: string[] = [];
  let before: LoadFigures | undefined;
  let after: LoadFigures | undefined;
  let load: ClientLoad | undefined;
  let history: HistoryVerdict | null = null;
  let timeToSafeMs: number | null = null;
  let hostsHeld: string[] = [];
  const reasons = new Set<string>();
  let detail = "";
  try {
    await rig.waitHealthy(60_000);
    load = new ClientLoad(t, CLIENT_IDS);
    load.start();
    await sleep(2_000);

    // 1. The board dies: every other board fails safe and holds its host.
    const killedAtWallMs = Date.now();
    rig.killBoard(victim);
    const others = t.boards.filter((b) => b.id !== victim);
    const safe = await waitUntil(
      () =>
        others.every(
          (b) => rig.hosts.get(b.guards)?.held === true && failsafeSince(events, b.id, 0),
        ),
      20_000,
    );
    if (!safe) throw new Error(`not every board failed safe after ${victim} was killed`);
    timeToSafeMs = Date.now() - killedAtWallMs;
    hostsHeld = t.hosts.map((h) => h.id).filter((h) => rig.hosts.get(h)?.held === true);
    // Every host but the dead board's is held: no quorum answers what is still waiting.
    before = await load.stop(0);
    load = undefined;

    // 2. Restarted, it comes back in fail-safe and holds its host too.
    const restartIndex = events.all.length;
    await rig.restartBoard(victim);
    const victimHost = t.boards.find((b) => b.id === victim)?.guards as string;
    const latched = await waitUntil(() => rig.hosts.get(victimHost)?.held === true, 10_000);
    if (!latched) problems.push(`${victim}, restarted, did not hold its host in reset`);
    if (
      events.all.slice(restartIndex).some((e) => e.kind === "board" && e.msg.startsWith("joined"))
    )
      problems.push(`${victim}, restarted in fail-safe, joined a schedule`);

    // 3. The operator clears every board; they agree on a new schedule and start cold.
    const clearIndex = events.all.length;
    const clearedAtWallMs = Date.now();
    for (const b of t.boards) await rig.clearFailsafe(b.id);
    const joined = await waitUntil(
      () =>
        t.boards.every((b) =>
          events.all
            .slice(clearIndex)
            .some((e) => e.kind === "board" && e.board === b.id && e.msg.startsWith("joined")),
        ),
      60_000,
    );
    if (!joined) throw new Error("not every board joined a schedule after the clear");
    const cold = t.boards.filter((b) =>
      events.all
        .slice(clearIndex)
        .some(
          (e) =>
            e.kind === "board" &&
            e.board === b.id &&
            e.msg.startsWith("start-up: images verified") &&
            e.fields.coldStart === true,
        ),
    );
    if (cold.length !== t.boards.length)
      problems.push(
        `hosts released in a cold start: ${cold.map((b) => b.id).join(", ") || "none"} (every board's was expected)`,
      );

    // 4. The service answers again, on fresh keys, and a whole period completes.
    load = new ClientLoad(t, CLIENT_IDS, { keys: AFTER_CLEAR_KEYS });
    load.start();
    const answered = await waitUntil(() => (load?.snapshot().completed ?? 0) > 0, 60_000);
    const answeredAfterMs = Date.now() - clearedAtWallMs;
    if (!answered) throw new Error("the service did not answer within 60 s of the clear");
    options.say(`  the service answers ${(answeredAfterMs / 1000).toFixed(1)} s after the clear`);
    const tP = t.rejuvenation.tPMs ?? 0;
    const completed = await waitUntil(
      () =>
        t.boards.every((b) =>
          events.all
            .slice(clearIndex)
            .some((e) => e.kind === "board" && e.board === b.id && e.msg === "period complete"),
        ) || failsafeSince(events, undefined, clearIndex),
      tP + 60_000,
    );
    after = await load.stop();
    load = undefined;
    const failedAfterClear = events.all
      .slice(clearIndex)
      .find((e) => e.kind === "board" && e.msg === "FAIL-SAFE");
    if (failedAfterClear?.kind === "board")
      problems.push(
        `board ${failedAfterClear.board} failed safe after the clear: ${String(failedAfterClear.fields.reason)}`,
      );
    else if (!completed) problems.push("the first period after the clear did not complete");
    for (const e of events.all)
      if (e.kind === "board" && e.msg === "FAIL-SAFE") reasons.add(String(e.fields.reason));
    if (![...reasons].some((r) => /silent|heard|nothing/i.test(r)))
      problems.push(
        `the fail-safe reasons (${[...reasons].join("; ")}) do not name the dead board`,
      );

    // What the cold start went back on: keys whose value is not the last one acknowledged.
    const wentBack = await keysWentBack(t, before);
    const first = checkHistory(before);
    const second = checkHistory(after);
    history = second;
    if (first.linearizable !== true)
      problems.push(`the history before the fail-safe: ${first.detail}`);
    if (second.linearizable !== true)
      problems.push(`the history after the clear: ${second.detail}`);
    if (after.completed === 0) problems.push("no client operation completed after the clear");
    detail = `fail-safe everywhere ${timeToSafeMs} ms after the kill; the service answered ${(answeredAfterMs / 1000).toFixed(1)} s after the clear; ${completed ? "a period completed" : "no period completed"}; before: ${first.detail}; after: ${after.completed} operations, ${after.failed} with no answer in time, ${second.detail}; the cold start went back on ${wentBack.length} of ${LOAD_KEYS.length} keys${wentBack.length > 0 ? ` (${wentBack.join(", ")})` : ""}`;
  } catch (error) {
    problems.push(`the drill could not run: ${(error as Error).message}`);
    if (load !== undefined) after = await load.stop(0);
  } finally {
    await rig.down();
  }
  const { records, folder } = saveDrillFolder(options, rig, name, events.all, after);
  const passed = problems.length === 0;
  return {
    folder,
    name,
    passed,
    timeToSafeMs,
    reasons: [...reasons],
    alerts: rig.alerts.received.map((a) => ({ board: a.board, reason: a.reason })),
    hostsHeld,
    hostsNotHeld: t.hosts.map((h) => h.id).filter((h) => !hostsHeld.includes(h)),
    stepsBroken: brokenSteps(records),
    history,
    detail: passed ? detail : `${problems.join("; ")}${detail === "" ? "" : `; ${detail}`}`,
  };
}

/** Whether `board` (any board if undefined) logged FAIL-SAFE at or after event `fromIndex`. */
function failsafeSince(
  events: RigEventStream,
  board: string | undefined,
  fromIndex: number,
): boolean {
  return events.all
    .slice(fromIndex)
    .some(
      (e) =>
        e.kind === "board" && e.msg === "FAIL-SAFE" && (board === undefined || e.board === board),
    );
}

/**
 * The keys of `before`'s load whose value now is not what the last operation acknowledged on
 * them left there (a write's value, a swap's new value, a read's value), skipping keys with an
 * operation of unknown outcome: what the cold start went back on. Overlapping operations can
 * make this count a key that did not go back; it is a figure to report, not a verdict.
 */
async function keysWentBack(t: Rig["testbed"], before: LoadFigures): Promise<string[]> {
  const last = new Map<string, string | null>();
  const unknown = new Set<string>();
  for (const e of before.history) {
    if (e.key === undefined || e.type === "invoke") continue;
    if (e.type === "info") unknown.add(e.key);
    else if (e.type !== "ok") continue;
    else if (e.f === "put") last.set(e.key, e.value as string);
    else if (e.f === "del") last.set(e.key, null);
    else if (e.f === "cas") last.set(e.key, (e.value as [unknown, string])[1]);
    else if (e.f === "get") last.set(e.key, (e.value as string | null) ?? null);
  }
  const client = connectClient(t, { clientId: CLIENT_IDS[0] as string });
  const wentBack: string[] = [];
  try {
    for (const [key, value] of last) {
      if (unknown.has(key)) continue;
      const answer = await client.call({ op: "get", key }, 5_000);
      const now = (answer.result as { value?: string | null }).value ?? null;
      if (now !== value) wentBack.push(key);
    }
  } finally {
    await client.close();
  }
  return wentBack;
}

async function waitUntil(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() >= deadline) return false;
    await sleep(100);
  }
  return true;
}

/** A fresh rig for one drill, as the drill's options say. */
async function drillRig(options: DrillOptions, events: RigEventStream, name: string): Promise<Rig> {
  const rig = await Rig.up({
    testbedFile: options.testbedFile,
    events,
    ...(options.runsDir === undefined ? {} : { runsDir: options.runsDir }),
    ...(options.netns ? { netns: true } : {}),
  });
  options.live?.follow({ title: `smw drill ${name}`, events, testbed: rig.testbed });
  return rig;
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
): { records: BoardRecords; folder: string } {
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
  return { records, folder: dir };
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
