#!/usr/bin/env node
// npm run bench -- NAME [options]: runs one benchmark (or all) and prints its
// figures as ratios against the reference tools measured in the same run.
import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const BENCHMARKS = {
  media: "wormhole-board/bench/media-bench.mjs",
  link: "wormhole-board/bench/link-bench.mjs",
  kv: "host-agent/bench/kv-bench.mjs",
  rig: "test-rig/bench/rig-bench.mjs",
  demo: "test-rig/bench/demo-bench.mjs",
  live: "test-rig/bench/live-bench.mjs",
};

const [name, ...rest] = process.argv.slice(2);
const names = name === undefined || name === "all" ? Object.keys(BENCHMARKS) : [name];
for (const each of names) {
  const script = BENCHMARKS[each];
  if (script === undefined) {
    process.stderr.write(
      `unknown benchmark "${each}"; there are: ${Object.keys(BENCHMARKS).join(", ")}\n`,
    );
    process.exit(2);
  }
  const run = spawnSync(process.execPath, [path.join(root, script), ...rest], { stdio: "inherit" });
  if (run.status !== 0) process.exit(run.status ?? 1);
}
