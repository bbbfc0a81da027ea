#!/usr/bin/env node
// npm run bench -- NAME [options]: runs one benchmark (or all) and prints its
// figures as ratios against the reference tools measured in the same run.
import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { busyShare, busyWarning } from "./machine-busy.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
/**
 * Each benchmark's script and options (name: the value it takes, or null for a switch). Options
 * are checked here, before anything runs: a benchmark can take minutes and a gigabyte of scratch,
 * and a misspelt option it ignored would only be noticed in its figures.
 */
const BENCHMARKS = {
  media: { script: "wormhole-board/bench/media-bench.mjs", options: { "--size-mib": "N" } },
  link: {
    script: "wormhole-board/bench/link-bench.mjs",
    options: {
      "--restore-mib": "N",
      "--throttle-mibps": "N",
      "--seconds": "S",
      "--no-realtime": null,
    },
  },
  kv: {
    script: "host-agent/bench/kv-bench.mjs",
    options: {
      "--seconds": "S",
      "--clients": "C",
      "--quick": null,
      "--only": "n4|n6|reads|transfer|rolling|checkpoint|flood|large|pieces",
      "--batches-in-flight": "N",
      "--rolling-runs": "N",
      "--profile": "DIR",
      "--logs": "DIR",
    },
  },
  start: { script: "cli/bench/start-bench.mjs", options: { "--runs": "N" } },
  rig: { script: "test-rig/bench/rig-bench.mjs", options: { "--cycles": "N" } },
  demo: { script: "test-rig/bench/demo-bench.mjs", options: { "--busy": "N", "--periods": "P" } },
  live: { script: "test-rig/bench/live-bench.mjs", options: { "--periods": "N" } },
};

const usageOf = (each) =>
  `npm run bench -- ${each} ${Object.entries(BENCHMARKS[each].options)
    .map(([option, value]) => `[${option}${value === null ? "" : ` ${value}`}]`)
    .join(" ")}`;

/** What is wrong with a benchmark's options, if anything. */
function badOptions(each, options) {
  const known = BENCHMARKS[each].options;
  for (let i = 0; i < options.length; i++) {
    const option = options[i];
    if (!(option in known)) return `unknown option "${option}"`;
    if (known[option] === null) continue;
    const value = options[i + 1];
    if (value === undefined || value.startsWith("--"))
      return `${option} needs a value (${known[option]})`;
    // Counts, sizes and seconds: a positive number, or the benchmark would run on NaN.
    if (/^[NSCP]$/.test(known[option]) && !(Number(value) > 0))
      return `${option}: expected a positive number, got "${value}"`;
    const choices = known[option].split("|");
    if (choices.length > 1 && !choices.includes(value))
      return `${option}: expected one of ${choices.join(", ")}, got "${value}"`;
    i++;
  }
  return undefined;
}

const [name, ...rest] = process.argv.slice(2);
if (name === "--help" || name === "-h" || name === "help") {
  process.stdout.write(
    "usage: npm run bench -- [NAME] [options]  (NAME all, the default, runs every one in turn)\n" +
      Object.keys(BENCHMARKS)
        .map((each) => `  ${usageOf(each)}\n`)
        .join("") +
      "Each is described in README.md.\n",
  );
  process.exit(0);
}
const names = name === undefined || name === "all" ? Object.keys(BENCHMARKS) : [name];
// Every name and option checked before the first benchmark starts.
for (const each of names) {
  if (BENCHMARKS[each] === undefined) {
    process.stderr.write(
      `unknown benchmark "${each}"; there are: ${Object.keys(BENCHMARKS).join(", ")} (npm run bench -- --help)\n`,
    );
    process.exit(2);
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    process.stdout.write(`usage: ${usageOf(each)}\n`);
    continue;
  }
  // Options given to all of them at once must suit each.
  const problem = badOptions(each, rest);
  if (problem !== undefined) {
    process.stderr.write(`npm run bench -- ${each}: ${problem}\nusage: ${usageOf(each)}\n`);
    process.exit(2);
  }
}
if (rest.includes("--help") || rest.includes("-h")) process.exit(0);

for (const each of names) {
  const warning = busyWarning(each, await busyShare(1000));
  if (warning !== undefined) process.stdout.write(`${warning}\n`);
  const run = spawnSync(process.execPath, [path.join(root, BENCHMARKS[each].script), ...rest], {
    stdio: "inherit",
  });
  if (run.status !== 0) process.exit(run.status ?? 1);
}
