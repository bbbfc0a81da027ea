#!/usr/bin/env node
// npm run bench -- start [--runs N]: how long `smw` takes to start the way a payload host's agent
// does (load the program, read its options, parse and check a testbed: `smw kv get` with a
// client that has no key stops there), against a bare node start measured in the same run. Four
// ways, in a new order each round after one unrecorded, N rounds, medians:
//   node -e 0                 the floor: node itself (reporting its CPU time, as every way does)
//   bundle + code cache       what bin/smw.js runs for `smw host` and `smw kv`
//   bundle alone              the same file with V8 compiling it (no cache, or one refused)
//   modules                   the program's module tree, as every other command loads
// Wall time from spawn to exit, and the CPU the process used (what a loaded host pays).
import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const args = process.argv.slice(2);
const runsAt = args.indexOf("--runs");
const runs = runsAt >= 0 ? Number(args[runsAt + 1]) : 15;

const loader = pathToFileURL(path.join(root, "bin", "host-bundle.js")).href;
const modules = pathToFileURL(path.join(root, "cli", "dist", "smw.js")).href;
const bundle = path.join(root, "cli", "dist", "smw-host.bundle.cjs");
const testbed = path.join(root, "wiring", "examples", "rig-6.yaml");
// Stops at the missing client key, after the options and the testbed: no network.
const argv = JSON.stringify(["kv", "get", "k", "--testbed", testbed, "--client", "start-bench"]);
const report =
  "const u = process.cpuUsage(); process.stdout.write(JSON.stringify({ cpuUs: u.user + u.system }));";
const quiet = "{ out() {}, err() {}, isTty: false }";
const ways = {
  "node -e 0": report,
  "bundle + code cache": `const { loadHostBundle } = await import(${JSON.stringify(loader)}); const l = loadHostBundle(); if (l.cache !== "used") throw new Error("code cache " + l.cache + ": run npm run build"); await l.exports.runSmw(${argv}, ${quiet}); ${report}`,
  "bundle alone": `const { loadHostBundle } = await import(${JSON.stringify(loader)}); const l = loadHostBundle(${JSON.stringify(bundle)}, "/nonexistent"); await l.exports.runSmw(${argv}, ${quiet}); ${report}`,
  modules: `const { runSmw } = await import(${JSON.stringify(modules)}); await runSmw(${argv}, ${quiet}); ${report}`,
};

const samples = Object.fromEntries(
  Object.keys(ways).map((way) => [way, { wallMs: [], cpuMs: [] }]),
);
// A first round unrecorded (the files into the page cache), then each round in a new order, so
// that no way always follows the same one.
let seed = 12345;
const shuffled = (items) => {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    const j = seed % (i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
};
for (let i = -1; i < runs; i++)
  for (const [way, script] of shuffled(Object.entries(ways))) {
    const started = process.hrtime.bigint();
    const child = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
      encoding: "utf8",
    });
    const wallMs = Number(process.hrtime.bigint() - started) / 1e6;
    if (child.status !== 0) {
      process.stderr.write(`start bench: "${way}" failed:\n${child.stderr}`);
      process.exit(1);
    }
    if (i < 0) continue;
    samples[way].wallMs.push(wallMs);
    samples[way].cpuMs.push(JSON.parse(child.stdout).cpuUs / 1000);
  }

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
};
const floor = {
  wall: median(samples["node -e 0"].wallMs),
  cpu: median(samples["node -e 0"].cpuMs),
};
process.stdout.write(
  `smw start as a host agent's (options and a testbed read), ${runs} runs each, medians:\n`,
);
for (const [way, s] of Object.entries(samples)) {
  const wall = median(s.wallMs);
  const cpu = median(s.cpuMs);
  process.stdout.write(
    `  ${way.padEnd(20)} wall ${wall.toFixed(0).padStart(4)} ms (${(wall / floor.wall).toFixed(2)}x node)  CPU ${cpu.toFixed(0).padStart(4)} ms (${(cpu / floor.cpu).toFixed(2)}x node)\n`,
  );
}
const beyond = (way, key) =>
  median(samples[way][`${key}Ms`]) - (key === "wall" ? floor.wall : floor.cpu);
process.stdout.write(
  `  beyond a bare node start, bundle + code cache / bundle alone: wall ${(beyond("bundle + code cache", "wall") / beyond("bundle alone", "wall")).toFixed(2)}, CPU ${(beyond("bundle + code cache", "cpu") / beyond("bundle alone", "cpu")).toFixed(2)}; / modules: wall ${(beyond("bundle + code cache", "wall") / beyond("modules", "wall")).toFixed(2)}, CPU ${(beyond("bundle + code cache", "cpu") / beyond("modules", "cpu")).toFixed(2)}\n`,
);
