/**
 * A vitest reporter that prints, after the run, the slowest test files and the project each
 * ran in, so that a suite growing slower is seen where it grows. Under `scripts/run-tests.mjs`
 * (SMW_TEST_TIMINGS names a file) it appends every file's time there instead, and the script
 * prints the slowest of all its vitest runs together.
 */
import { appendFileSync } from "node:fs";
import type { Reporter, TestModule } from "vitest/node";

const SHOWN = 8;

export class SlowestFiles implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    const rows = modules
      .map((m) => {
        const d = m.diagnostic();
        return {
          file: m.relativeModuleId,
          project: m.project.name,
          ms: d.collectDuration + d.setupDuration + d.duration,
        };
      })
      .sort((a, b) => b.ms - a.ms);
    const sink = process.env.SMW_TEST_TIMINGS;
    if (sink !== undefined && sink !== "") {
      if (rows.length > 0) appendFileSync(sink, rows.map((r) => `${JSON.stringify(r)}\n`).join(""));
      return;
    }
    if (rows.length === 0) return;
    const lines = rows
      .slice(0, SHOWN)
      .map((r) => `  ${(r.ms / 1000).toFixed(1).padStart(7)} s  ${r.project.padEnd(8)} ${r.file}`);
    process.stdout.write(`\nslowest test files:\n${lines.join("\n")}\n`);
  }
}
