/**
 * `smw rig measure`: a timing campaign. The rig runs N rejuvenation periods
 * under the client load with no fault injected; the report folder gets the
 * usual files plus `bounds.yaml`, the step budgets derived from what was
 * measured (maximum plus a margin), ready to paste into the testbed.
 */
import { writeFileSync } from "node:fs";
import path from "node:path";
import type { LiveServer } from "../live/live-server.js";
import { type DerivedBound, deriveBounds, renderBoundsYaml } from "../report/derived-bounds.js";
import { liveReport, type RigRunResult, runRig } from "./rig-run.js";

export interface MeasureOptions {
  testbedFile: string;
  cycles: number;
  marginPercent: number;
  outDir?: string;
  say: (line: string) => void;
  netns?: boolean;
  runsDir?: string;
  /** The live page, which follows the campaign and then shows its report. */
  live?: { server: LiveServer; faults: boolean };
}

export interface MeasureResult extends RigRunResult {
  bounds: DerivedBound[];
  boundsText: string;
}

export async function runMeasure(options: MeasureOptions): Promise<MeasureResult> {
  const result = await runRig({
    testbedFile: options.testbedFile,
    title: `smw rig measure: ${options.cycles} rejuvenation period${options.cycles === 1 ? "" : "s"}`,
    periods: options.cycles,
    say: options.say,
    ...(options.runsDir === undefined ? {} : { runsDir: options.runsDir }),
    ...(options.netns ? { netns: true } : {}),
    ...(options.outDir === undefined ? {} : { outDir: options.outDir }),
    ...(options.live === undefined ? {} : { live: options.live }),
  });
  const bounds = deriveBounds(result.summary.stats, options.marginPercent);
  const boundsText = renderBoundsYaml(
    bounds,
    options.marginPercent,
    result.summary.periodsCompleted,
  );
  const file = path.join(result.reportDir, "bounds.yaml");
  writeFileSync(file, boundsText);
  // The page's report again, now with bounds.yaml among its files.
  options.live?.server.report(liveReport(result.summary, result.reportDir));
  return { ...result, files: [...result.files, file], bounds, boundsText };
}
