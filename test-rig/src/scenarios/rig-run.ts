/**
 * One run of the rig as the demo and the timing campaign do it: bring the
 * testbed up, wait until the service answers, run the client load, let a
 * scenario inject its faults, wait for the periods to complete (or a
 * fail-safe), take everything down and write the report.
 */
import path from "node:path";
import { formatProblem, loadTestbedFile, type RejuvenationOverrides } from "@smw/wiring";
import type { LiveReport, LiveServer } from "../live/live-server.js";
import { ClientLoad, DEFAULT_LOAD, type LoadShape, loadClientIds } from "../load/client-load.js";
import {
  measuredPlanText,
  type RunSummary,
  summarize,
  writeReportFolder,
} from "../report/run-report.js";
import { readBoardRecords } from "../report/step-records.js";
import { percentile } from "../report/step-stats.js";
import { Narration } from "../rig/narrator.js";
import { periodComplete } from "../rig/period-watch.js";
import { Rig } from "../rig/rig.js";
import { RigEventStream, type StampedEvent } from "../rig/rig-events.js";
import { RigSetupError } from "../rig/rig-setup.js";

/** How long the rig runs on after the last period, for the boards' last records (and observers). */
const SETTLE_MS = 2_000;
const LOAD_SAMPLE_MS = 2_000;
const LOAD_NARRATED_MS = 10_000;

export interface RigRunOptions {
  testbedFile: string;
  title: string;
  /** Periods to run; undefined: until Ctrl-C (or SIGTERM), then the report. */
  periods: number | undefined;
  /** Report folder (default: report/ in the rig's run folder). */
  outDir?: string;
  /** Each narration line (the demo prints them; quiet runs drop them). */
  say: (line: string) => void;
  /** Called once the service is healthy and the load runs: inject faults here. */
  scenario?: (rig: Rig, context: ScenarioContext) => Promise<void>;
  /** Run the client load (default true). */
  load?: boolean;
  /** Its shape (default `DEFAULT_LOAD`). */
  loadShape?: LoadShape;
  osImageSizeBytes?: number;
  /** One network namespace per host (root only). */
  netns?: boolean;
  /** The rig's join lead (default `rigJoinLeadMs` of the testbed that runs). */
  joinLeadMs?: number;
  /** The folder of run folders (default: SMW_RUNS, else runs/ here). */
  runsDir?: string;
  /** Rejuvenation figures that replace the testbed's (budgets measured on this machine). */
  overrides?: RejuvenationOverrides;
  /** Why the figures differ: comment lines at the top of the testbed copy that runs. */
  note?: readonly string[];
  /** Put at the top of the report's plan.txt (the plan the run's budgets came from). */
  planHeader?: string;
  /** The live page, which follows this run and then shows its report; `faults`: this run takes faults from it. */
  live?: { server: LiveServer; faults: boolean };
}

export interface ScenarioContext {
  /** Resolves when period `period` is complete on every board (false: a fail-safe or the timeout came first). */
  periodComplete(period: number, timeoutMs: number): Promise<boolean>;
}

export interface RigRunResult {
  summary: RunSummary;
  reportDir: string;
  files: string[];
  events: StampedEvent[];
}

export async function runRig(options: RigRunOptions): Promise<RigRunResult> {
  const events = new RigEventStream();
  const loaded = loadTestbedFile(options.testbedFile);
  if (!loaded.ok) throw new RigSetupError(loaded.problems.map(formatProblem).join("\n"));
  const boardHost = new Map(loaded.testbed.boards.map((b) => [b.id, b.guards]));
  const firstBoard = loaded.testbed.boards[0]?.id ?? "";
  // The load is sampled every LOAD_SAMPLE_MS (the live page shows each); the narration says it
  // every LOAD_NARRATED_MS.
  let loadNarratedAtMs = 0;
  const narration = new Narration(
    { hostOf: (b) => boardHost.get(b) ?? "?", firstBoard },
    options.say,
  );
  events.on((event) => {
    if (event.kind === "load") {
      if (event.atMs - loadNarratedAtMs < LOAD_NARRATED_MS - LOAD_SAMPLE_MS / 2) return;
      loadNarratedAtMs = event.atMs;
    }
    narration.tell(event);
  });
  let stop: (reason: string) => void = () => {};
  const stopped = new Promise<string>((resolve) => {
    stop = resolve;
  });
  const rig = await Rig.up({
    testbedFile: options.testbedFile,
    events,
    ...(options.runsDir === undefined ? {} : { runsDir: options.runsDir }),
    ...(options.overrides === undefined ? {} : { overrides: options.overrides }),
    ...(options.note === undefined ? {} : { note: options.note }),
    ...(options.periods === undefined
      ? { onSignal: () => stop("stopped by a signal (once more: down at once, no report)") }
      : {}),
    ...(options.osImageSizeBytes === undefined
      ? {}
      : { osImageSizeBytes: options.osImageSizeBytes }),
    ...(options.netns ? { netns: true } : {}),
    ...(options.joinLeadMs === undefined ? {} : { joinLeadMs: options.joinLeadMs }),
  });
  const t = rig.testbed;
  options.live?.server.follow({
    title: options.title,
    events,
    testbed: t,
    ...(options.live.faults ? { inject: (request) => rig.inject(request) } : {}),
  });
  let load: ClientLoad | undefined;
  let result: RigRunResult | undefined;
  let loadTimer: NodeJS.Timeout | undefined;
  let abortedBecause: string | undefined;
  try {
    await rig.waitHealthy(60_000);
    if (options.load !== false) {
      const shape = options.loadShape ?? DEFAULT_LOAD;
      load = new ClientLoad(t, loadClientIds(shape.clients), { pauseMs: shape.pauseMs });
      load.start();
      let last = 0;
      loadTimer = setInterval(() => {
        const s = load?.sample(last);
        if (s === undefined) return;
        const sorted = s.latenciesMs.sort((a, b) => a - b);
        events.emit({
          kind: "load",
          completed: s.completed,
          failed: s.failed,
          opsPerSecond: (s.completed - last) / (LOAD_SAMPLE_MS / 1000),
          ...(sorted.length === 0
            ? {}
            : {
                p50Ms: percentile(sorted, 50),
                p99Ms: percentile(sorted, 99),
              }),
        });
        last = s.completed;
      }, LOAD_SAMPLE_MS);
    }
    const context: ScenarioContext = {
      periodComplete: (period, timeoutMs) =>
        periodComplete(events, t.boards.length, period, timeoutMs),
    };
    await options.scenario?.(rig, context);
    const tP = t.rejuvenation.tPMs ?? 0;
    const tD = t.rejuvenation.tDMs ?? 0;
    if (options.periods === undefined) {
      events.emit({
        kind: "rig",
        detail: `running until Ctrl-C; faults: smw rig fault --testbed ${options.testbedFile}${options.runsDir === undefined ? "" : ` --runs ${options.runsDir}`} ...`,
      });
      events.emit({ kind: "rig", detail: `stopping: ${await stopped}` });
    } else {
      const done = await context.periodComplete(
        options.periods - 1,
        options.periods * tP + tD + 30_000,
      );
      // The boards write their records in the background: let the last ones land before the end.
      if (done) await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
      if (!done)
        events.emit({
          kind: "rig",
          detail: `period ${options.periods - 1} did not complete on every board`,
        });
    }
  } catch (error) {
    abortedBecause = (error as Error).message;
    events.emit({ kind: "rig", detail: `run stopped: ${abortedBecause}` });
  } finally {
    if (loadTimer !== undefined) clearInterval(loadTimer);
    const figures = await load?.stop();
    await rig.down();
    narration.flush();
    const records = readBoardRecords(t);
    const input = {
      title: options.title,
      testbed: t,
      records,
      events: events.all,
      load: figures,
      periodsWanted: options.periods ?? 0,
      // Run until stopped: as many periods as there were time for.
      ...(options.periods === undefined ? { skip: ["periods completed"] } : {}),
      ...(abortedBecause === undefined
        ? {}
        : { more: [{ name: "the run went to its end", held: false, detail: abortedBecause }] }),
    };
    const summary = summarize(input);
    const reportDir = options.outDir ?? path.join(rig.root, "report");
    const files = writeReportFolder(
      reportDir,
      input,
      summary,
      options.planHeader === undefined
        ? {}
        : {
            "plan.txt": `${options.planHeader}\n${measuredPlanText(t, summary.stats)}`,
          },
    );
    result = { summary, reportDir, files, events: events.all };
    options.live?.server.report(liveReport(summary, reportDir));
  }
  return result;
}

/** The report as the live page shows it once the run has ended. */
export function liveReport(summary: RunSummary, folder: string): LiveReport {
  return {
    title: summary.title,
    promises: summary.promises,
    stats: summary.stats,
    lines: [
      summary.failsafe.length === 0
        ? "fail-safe: none"
        : `fail-safe: ${summary.failsafe.map((f) => `${f.board} (${f.reason})`).join("; ")}`,
      ...(summary.load === undefined
        ? []
        : [
            `clients: ${summary.load.completed} operations completed, ${summary.load.failed} unanswered`,
          ]),
      `periods completed: ${summary.periodsCompleted}`,
    ],
    folder,
  };
}
