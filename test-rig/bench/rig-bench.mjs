#!/usr/bin/env node
// npm run bench -- rig [--cycles N]: the rig's figures, each against its reference measured or
// configured in the same run. Every fail-safe drill (smw drill all): the time from the fault to
// every host held in reset, against the bound that should detect it. A timing campaign (smw rig
// measure): each step's largest time against its budget, and the client load's throughput and
// latency while hosts are rejuvenated against the same load on the unreplicated store.
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const smwBin = path.join(root, "bin/smw.js");
const { ClientLoad, CLIENT_IDS, percentile } = await import(
  path.join(root, "test-rig/dist/index.js")
);
const { startSingle } = await import(path.join(root, "host-agent/dist/index.js"));
const { loadTestbedFile } = await import(path.join(root, "wiring/dist/index.js"));

const args = process.argv.slice(2);
const cyclesAt = args.indexOf("--cycles");
const cycles = cyclesAt >= 0 ? Number(args[cyclesAt + 1]) : 2;
if (!Number.isInteger(cycles) || cycles < 1) {
  process.stderr.write("--cycles: a whole number of at least 1\n");
  process.exit(2);
}

const dir = mkdtempSync(path.join(tmpdir(), "smw-rig-bench-"));
const testbedFile = path.join(dir, "rig-6.yaml");
copyFileSync(path.join(root, "wiring/examples/rig-6.yaml"), testbedFile);
const loaded = loadTestbedFile(testbedFile);
if (!loaded.ok) throw new Error("rig-6.yaml does not load");
const t = loaded.testbed;
const b = t.rejuvenation.budgets;

function smw(...argv) {
  const run = spawnSync(process.execPath, [smwBin, ...argv], {
    encoding: "utf8",
    maxBuffer: 64 << 20,
  });
  if (run.status === 2) {
    process.stderr.write(run.stderr);
    process.exit(2);
  }
  return run;
}

try {
  // 1. Every drill.
  console.log("fail-safe drills (smw drill all --json), each on a fresh rig:");
  const drills = JSON.parse(
    smw("drill", "all", "--json", "--testbed", testbedFile, "--runs", dir).stdout,
  );
  const bound = {
    "host-will-not-boot": ["T_boot", b.tBootMs],
    "transfer-hangs": ["T_transfer", b.tTransferMs],
    "board-dies": ["silenceBound", t.controlNetwork.silenceBoundMs],
    "control-link-cut": ["silenceBound", t.controlNetwork.silenceBoundMs],
    "clock-skew": ["heartbeat", t.controlNetwork.heartbeatMs],
    "golden-image-tampered": ["T_restorecode", b.tRestorecodeMs],
    "manifest-tampered": ["T_checkcode", b.tCheckcodeMs],
    "restore-cannot-write": ["T_restorecode", b.tRestorecodeMs],
  };
  for (const d of drills) {
    const [name, ms] = bound[d.name] ?? ["-", undefined];
    const ratio =
      d.timeToSafeMs === null || ms === undefined ? "-" : (d.timeToSafeMs / ms).toFixed(2);
    console.log(
      `  ${d.name.padEnd(22)} ${d.passed ? "PASS" : "FAIL"}  time to safe ${String(d.timeToSafeMs ?? "-").padStart(5)} ms` +
        (ms === undefined ? "" : `  vs ${name} ${ms} ms: ${ratio}`) +
        `  alerts ${d.alerts.length}`,
    );
  }

  // 2. A timing campaign.
  console.log(`\ntiming campaign (smw rig measure --cycles ${cycles}):`);
  const out = path.join(dir, "measure");
  const measure = smw(
    "rig",
    "measure",
    "--testbed",
    testbedFile,
    "--runs",
    dir,
    "--cycles",
    String(cycles),
    "--out",
    out,
  );
  const summary = readFileSync(path.join(out, "summary.txt"), "utf8");
  const table = summary.split("\n").filter((l) => /^(step|T_)/.test(l));
  for (const line of table) console.log(`  ${line}`);
  const ops =
    /client operations(?: \([^)]*\))?: (\d+) completed, (\d+) unanswered.*\((\d+) ops\/s; latency p50 (\d+) ms, p99 (\d+) ms\)/.exec(
      summary,
    );
  const stall = /longest client stall: (\d+) ms/.exec(summary);

  // 3. The reference: the same client load on the unreplicated store, same machine, now.
  const seconds = 20;
  // The run folder's copy of the testbed: its client keys are the ones the campaign made.
  const ran = loadTestbedFile(path.join(dir, t.name, "testbed.yaml"));
  if (!ran.ok) throw new Error("the campaign's testbed copy does not load");
  const single = await startSingle(ran.testbed);
  const load = new ClientLoad(ran.testbed, CLIENT_IDS, { single: true });
  load.start();
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  const ref = await load.stop();
  await single.close();
  const refOps = ref.completed / (ref.durationMs / 1000);
  const sorted = [...ref.latenciesMs].sort((x, y) => x - y);
  if (ops !== null) {
    const [, , unanswered, rigOps, p50, p99] = ops.map(Number);
    console.log(
      `\nclient load (4 clients, paced) while hosts are rejuvenated: ${rigOps} ops/s, p50 ${p50} ms, p99 ${p99} ms, ${unanswered} unanswered, longest stall ${stall?.[1] ?? "?"} ms`,
    );
    console.log(
      `the same load on the unreplicated store (${seconds} s): ${refOps.toFixed(0)} ops/s, p50 ${percentile(sorted, 50).toFixed(1)} ms, p99 ${percentile(sorted, 99).toFixed(1)} ms`,
    );
    console.log(
      `ratio: throughput ${(rigOps / refOps).toFixed(2)}, p50 latency ${(p50 / percentile(sorted, 50)).toFixed(1)}x`,
    );
  }
  console.log(`\nmeasure exit ${measure.status}; report kept while the bench runs: ${out}`);
  process.exitCode = drills.every((d) => d.passed) && measure.status === 0 ? 0 : 1;
} finally {
  rmSync(dir, { recursive: true, force: true });
}
