#!/usr/bin/env node
// The tests, as `npm test` runs them (after the build, which type-checks the code), so that the
// suite takes minutes on two cores (the projects are in vitest.config.ts):
//   1. two streams side by side: the rig's files, one at a time (project "rig"); and the unit
//      tests on one worker (project "unit": CPU-bound simulations, pure logic), then the links,
//      host agent and replica servers, one file at a time (project "boards"). The rig never has
//      more than one core's worth of other work beside it: the load it is specified to keep its
//      promises under. The tests' type-check and the lint run from the start under SCHED_IDLE.
//   2. then the six-daemon files with their tight bounds, side by side (project "daemons").
//   From the end of the unit tests on, the service's simulation (project "sim": pure CPU, timing
//   nothing) runs under SCHED_IDLE: the scheduler gives it only cores nothing else wants, and a
//   timer or process of the others that wakes takes its core at once. (At nice 19 it took enough
//   to slow the rig and the boards' files; started with the unit tests, it slowed them.)
// Lines of concurrent runs are passed through whole; at the end, the slowest files of every run
// and each stream's verdict. Arguments go to every vitest run (e.g. a file filter); exit status
// 1 if any run failed.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { setPriority, tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const vitest = path.join(root, "node_modules", "vitest", "vitest.mjs");
const extra = process.argv.slice(2);
const scratch = mkdtempSync(path.join(tmpdir(), "smw-test-timings-"));
const timings = path.join(scratch, "timings.jsonl");
const hasChrt = spawnSync("chrt", ["--version"]).status === 0;

/**
 * Runs a program, its output passed through line by line; resolves with its exit status. `idle`:
 * under SCHED_IDLE (util-linux's chrt), or at nice 19 where chrt is missing.
 */
function runProgram(file, args, env = process.env, idle = false) {
  return new Promise((resolve) => {
    const options = { cwd: root, stdio: ["ignore", "pipe", "pipe"], env };
    const child =
      idle && hasChrt
        ? spawn("chrt", ["--idle", "0", file, ...args], options)
        : spawn(file, args, options);
    // Its workers start after it does, and inherit its priority.
    if (idle && !hasChrt && child.pid !== undefined) setPriority(child.pid, 19);
    createInterface({ input: child.stdout }).on("line", (l) => process.stdout.write(`${l}\n`));
    createInterface({ input: child.stderr }).on("line", (l) => process.stderr.write(`${l}\n`));
    child.on("error", (error) => {
      process.stderr.write(`${file}: ${error.message}\n`);
      resolve(1);
    });
    child.on("exit", (code, signal) => resolve(code ?? (signal === null ? 1 : 128)));
  });
}

/** Runs one vitest project; resolves with its exit status. `idle`: see runProgram. */
function run(project, options = [], idle = false) {
  return runProgram(
    process.execPath,
    [vitest, "run", "--project", project, "--passWithNoTests", ...options, ...extra],
    { ...process.env, SMW_TEST_TIMINGS: timings, FORCE_COLOR: process.stdout.isTTY ? "1" : "0" },
    idle,
  );
}

/**
 * The tests' type-check and the lint (the build, which type-checks the code, came before), under
 * SCHED_IDLE: they time nothing, and only their verdict is needed, at the end.
 */
async function checks() {
  const bin = (name) => path.join(root, "node_modules", ".bin", name);
  const typecheck = await runProgram(bin("tsc"), ["-p", "tsconfig.test.json"], process.env, true);
  const lint = await runProgram(
    bin("biome"),
    ["ci", "--error-on-warnings", "."],
    process.env,
    true,
  );
  if (typecheck !== 0)
    process.stderr.write("the tests' type-check failed (tsc -p tsconfig.test.json)\n");
  if (lint !== 0) process.stderr.write("the lint failed (biome ci)\n");
  return typecheck !== 0 ? typecheck : lint;
}

const startedMs = performance.now();
const elapsed = () => `${((performance.now() - startedMs) / 1000).toFixed(0)} s`;
const checked = checks().then((code) => ({
  name: "type-check and lint (idle priority)",
  code,
  at: elapsed(),
}));
const unit = run("unit", ["--maxWorkers=1"]);
const unitThenBoards = unit.then(async (unitCode) => {
  const code = [unitCode, await run("boards")].find((c) => c !== 0) ?? 0;
  return { name: "unit, then boards", code, at: elapsed() };
});
const simulation = unit.then(() =>
  run("sim", [], true).then((code) => ({ name: "sim (idle priority)", code, at: elapsed() })),
);
const streams = await Promise.all([
  run("rig").then((code) => ({ name: "rig", code, at: elapsed() })),
  unitThenBoards,
]);
const daemons = await run("daemons").then((code) => ({ name: "daemons", code, at: elapsed() }));
streams.push(daemons, await simulation, await checked);

let rows = [];
try {
  rows = readFileSync(timings, "utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l));
} catch {
  // No file ran.
}
rmSync(scratch, { recursive: true, force: true });
rows.sort((a, b) => b.ms - a.ms);
process.stdout.write("\nslowest test files:\n");
for (const r of rows.slice(0, 10))
  process.stdout.write(
    `  ${(r.ms / 1000).toFixed(1).padStart(7)} s  ${r.project.padEnd(7)} ${r.file}\n`,
  );
process.stdout.write("\n");
for (const s of streams)
  process.stdout.write(
    `${s.name}: ${s.code === 0 ? "passed" : `FAILED (exit ${s.code})`}, done at ${s.at}\n`,
  );
process.exit(streams.every((s) => s.code === 0) ? 0 : 1);
