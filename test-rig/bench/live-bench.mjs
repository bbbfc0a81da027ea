#!/usr/bin/env node
// npm run bench -- live [--periods N]: how soon the live page is told of what happens on the rig.
// `smw rig up --live --periods N` runs under its client load; a page's event stream (/events) is
// read as a browser reads it, and each event pushed after the replay is timed from the instant
// the rig stamped it to the instant it arrived (the rig and the reader share this machine's
// clock). Against the target of 200 ms, and against a plain request to the same server measured
// in the same run (the floor of anything it serves).
import { spawn } from "node:child_process";
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const smwBin = path.join(root, "bin/smw.js");
const TARGET_MS = 200;

const args = process.argv.slice(2);
const periodsAt = args.indexOf("--periods");
const periods = periodsAt >= 0 ? Number(args[periodsAt + 1]) : 1;
if (!Number.isInteger(periods) || periods < 1) {
  process.stderr.write("--periods: a whole number of at least 1\n");
  process.exit(2);
}

const dir = mkdtempSync(path.join(tmpdir(), "smw-live-bench-"));
const testbedFile = path.join(dir, "rig-6.yaml");
copyFileSync(path.join(root, "wiring/examples/rig-6.yaml"), testbedFile);

const percentile = (sorted, p) =>
  sorted.length === 0
    ? Number.NaN
    : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
const fmt = (ms) => `${ms.toFixed(1)} ms`;

const child = spawn(
  process.execPath,
  [
    smwBin,
    "rig",
    "up",
    "--live",
    "--periods",
    String(periods),
    "--testbed",
    testbedFile,
    "--runs",
    dir,
  ],
  { stdio: ["ignore", "pipe", "inherit"] },
);
let out = "";
child.stdout.on("data", (chunk) => {
  out += chunk.toString();
});
const exited = new Promise((resolve) => child.on("exit", (code) => resolve(code)));
// Bounded: the rig's periods, its start-up and its report, with room to spare.
const giveUp = setTimeout(() => child.kill("SIGKILL"), 10 * 60_000);

try {
  let url;
  for (let i = 0; i < 600 && url === undefined; i++) {
    url = /live view: (http:\/\/127\.0\.0\.1:\d+\/)/.exec(out)?.[1];
    if (url === undefined) await new Promise((r) => setTimeout(r, 100));
  }
  if (url === undefined) throw new Error(`the rig printed no live view address:\n${out}`);

  const response = await fetch(`${url}events`);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let caughtUp = false;
  let ended = false;
  const delays = [];
  const fromBoard = [];
  const requestMs = [];
  let lastProbe = 0;
  while (!ended) {
    const { value, done } = await reader.read();
    if (done) break;
    const arrivedMs = Date.now();
    buffer += decoder.decode(value, { stream: true });
    let end = buffer.indexOf("\n\n");
    while (end >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      end = buffer.indexOf("\n\n");
      const event = /^event: (.*)$/m.exec(frame)?.[1] ?? "message";
      const data = /^data: (.*)$/m.exec(frame)?.[1];
      if (event === "caught-up") caughtUp = true;
      else if (event === "report") ended = true;
      else if (event === "message" && caughtUp && data !== undefined) {
        const e = JSON.parse(data);
        delays.push(arrivedMs - e.wallMs);
        // A board's event, from the instant the board itself logged it (its log line's time).
        if (typeof e.fields?.boardTimeMs === "number")
          fromBoard.push(arrivedMs - e.fields.boardTimeMs);
      }
    }
    // The reference, now and then while the rig runs: a plain request to the same server.
    if (caughtUp && !ended && arrivedMs - lastProbe > 500) {
      lastProbe = arrivedMs;
      const started = performance.now();
      await (await fetch(`${url}testbed.json`)).arrayBuffer();
      requestMs.push(performance.now() - started);
    }
  }
  await reader.cancel().catch(() => {});
  delays.sort((a, b) => a - b);
  fromBoard.sort((a, b) => a - b);
  requestMs.sort((a, b) => a - b);
  const p50 = percentile(delays, 0.5);
  const p99 = percentile(delays, 0.99);
  const max = delays[delays.length - 1] ?? Number.NaN;
  const request50 = percentile(requestMs, 0.5);
  console.log(`live page (smw rig up --live --periods ${periods}, client load on):`);
  console.log(`  events pushed after the replay: ${delays.length}`);
  console.log(
    `  push delay: median ${fmt(p50)}, p99 ${fmt(p99)}, max ${fmt(max)}; p99 vs the ${TARGET_MS} ms target: ${(p99 / TARGET_MS).toFixed(3)}`,
  );
  console.log(
    `  boards' events (${fromBoard.length}) from the board's own log stamp: median ${fmt(percentile(fromBoard, 0.5))}, p99 ${fmt(percentile(fromBoard, 0.99))}, max ${fmt(fromBoard[fromBoard.length - 1] ?? Number.NaN)}; p99 vs the ${TARGET_MS} ms target: ${(percentile(fromBoard, 0.99) / TARGET_MS).toFixed(3)}`,
  );
  console.log(
    `  a plain request to the same server (median of ${requestMs.length}): ${fmt(request50)}; push median vs it: ${(p50 / request50).toFixed(2)}`,
  );
  const verdict = /promises:\n([\s\S]*?)\n\n/.exec(out)?.[1] ?? "";
  if (/BROKEN/.test(verdict)) console.log(`  the run broke a promise:\n${verdict}`);
} finally {
  child.kill("SIGINT");
  await exited;
  clearTimeout(giveUp);
  rmSync(dir, { recursive: true, force: true });
}
