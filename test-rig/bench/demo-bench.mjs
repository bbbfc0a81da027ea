#!/usr/bin/env node
// npm run bench -- demo [--busy N] [--periods P]: the main job under unrelated load. Runs
// `smw rig demo` twice in the same run: first on the machine as it is (the reference), then
// with N processes (default 1: one of two cores) spinning for the whole run, calibration
// included. Prints, for each, the promises, the budgets the calibration measured and each
// step's largest time, and the loaded run's figures as ratios of the reference's. Exit 0 when
// every promise held in both runs.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ensureToolsOrExit, RIG_TOOLS } from "../../scripts/tools.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const smwBin = path.join(root, "bin/smw.js");
ensureToolsOrExit("demo bench", RIG_TOOLS);

const args = process.argv.slice(2);
function flag(name, fallback) {
  const at = args.indexOf(name);
  if (at < 0) return fallback;
  const n = Number(args[at + 1]);
  if (!Number.isInteger(n) || n < 0) {
    process.stderr.write(`${name} ${args[at + 1]}: a whole number of 0 or more\n`);
    process.exit(2);
  }
  return n;
}
const busy = flag("--busy", 1);
const periods = flag("--periods", 2);

/** One `smw rig demo` in a runs folder of its own; returns its figures. */
function demo(label, busyCount) {
  const dir = mkdtempSync(path.join(tmpdir(), "smw-demo-bench-"));
  const spinners = [];
  for (let i = 0; i < busyCount; i++) {
    // An unrelated process that takes a whole core for the whole run.
    spinners.push(spawn(process.execPath, ["-e", "for (;;) {}"], { stdio: "ignore" }));
  }
  const startedMs = performance.now();
  try {
    const run = spawnSync(
      process.execPath,
      [smwBin, "rig", "demo", "--runs", dir, "--periods", String(periods)],
      { encoding: "utf8", maxBuffer: 64 << 20 },
    );
    const wallS = (performance.now() - startedMs) / 1000;
    const runDir = path.join(dir, "rig-6");
    const read = (file) => {
      try {
        return readFileSync(path.join(runDir, file), "utf8");
      } catch {
        return "";
      }
    };
    const summary = read("report/summary.txt");
    const bounds = read("calibration/bounds.yaml");
    const maxima = {};
    const V = "([\\d.]+) (ms|s)";
    const row = new RegExp(`^(T_\\w+)\\s+\\d+\\s+${V}\\s+${V}\\s+${V}\\s+${V}\\s+${V}`, "gm");
    const ms = (value, unit) => Number(value) * (unit === "s" ? 1000 : 1);
    for (const m of summary.matchAll(row))
      maxima[m[1]] = { maxMs: ms(m[8], m[9]), budget: `${m[10]} ${m[11]}` };
    const budgets = {};
    for (const m of bounds.matchAll(/^ {4}(t\w+): (\d+)ms/gm)) budgets[m[1]] = Number(m[2]);
    const ops =
      /client operations(?: \([^)]*\))?: (\d+) completed, (\d+) unanswered.*\((\d+) ops\/s/.exec(
        summary,
      );
    const broken = summary.split("\n").filter((l) => /^\s+BROKEN/.test(l));
    return {
      label,
      status: run.status,
      wallS,
      budgets,
      maxima,
      opsPerSecond: ops === null ? Number.NaN : Number(ops[3]),
      unanswered: ops === null ? Number.NaN : Number(ops[2]),
      broken,
      first: /^FIRST BROKEN: .*/m.exec(summary)?.[0],
      refused: run.status === 1 && summary === "" ? run.stderr.trim().split("\n")[0] : undefined,
    };
  } finally {
    for (const s of spinners) s.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
}

function show(r) {
  console.log(`\n${r.label}: exit ${r.status} in ${r.wallS.toFixed(0)} s (calibration included)`);
  if (r.refused !== undefined) console.log(`  refused: ${r.refused}`);
  console.log(
    `  budgets measured: ${Object.entries(r.budgets)
      .map(([k, v]) => `${k} ${v} ms`)
      .join(", ")}`,
  );
  for (const [step, m] of Object.entries(r.maxima))
    console.log(`  ${step.padEnd(13)} max ${String(m.maxMs).padStart(6)} ms  budget ${m.budget}`);
  console.log(`  client load: ${r.opsPerSecond} ops/s, ${r.unanswered} unanswered`);
  if (r.first !== undefined) console.log(`  ${r.first}`);
  console.log(r.broken.length === 0 ? "  every promise held" : r.broken.join("\n"));
}

console.log(
  `smw rig demo --periods ${periods}, idle and with ${busy} of ${availableParallelism()} cores kept busy by an unrelated process`,
);
const idle = demo("reference: the machine as it is", 0);
show(idle);
const loaded = demo(`${busy} core(s) busy for the whole run`, busy);
show(loaded);

console.log("\nloaded / reference:");
for (const key of Object.keys(loaded.budgets)) {
  if (idle.budgets[key] === undefined) continue;
  console.log(`  budget ${key.padEnd(13)} ${(loaded.budgets[key] / idle.budgets[key]).toFixed(2)}`);
}
for (const step of Object.keys(loaded.maxima)) {
  if (idle.maxima[step] === undefined) continue;
  console.log(
    `  max ${step.padEnd(16)} ${(loaded.maxima[step].maxMs / idle.maxima[step].maxMs).toFixed(2)}`,
  );
}
console.log(`  client throughput    ${(loaded.opsPerSecond / idle.opsPerSecond).toFixed(2)}`);
process.exitCode = idle.status === 0 && loaded.status === 0 ? 0 : 1;
