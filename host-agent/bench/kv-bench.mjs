#!/usr/bin/env node
// npm run bench -- kv [--seconds S] [--clients C] [--quick] [--only n4|n6|reads|transfer|rolling|checkpoint|flood|large|pieces]
//                     [--profile DIR]  (a V8 CPU profile of every server and client process, into DIR)
//                     [--batches-in-flight N]  (the replicas' window; the testbed's default otherwise)
//                     [--logs DIR]  (every replica process's log, a file each, as it exits)
//
// 1. Throughput and latency of the replicated key-value service (n = 4 with
//    k' = 1, k = 0; n = 6 with k' = 1, k = 1), every replica its own process on
//    loopback, against the same store unreplicated (smw kv serve --single)
//    over the same client path: the ratio is the price of replication.
//    Then n = 6 again with gets only: reads answered without ordering.
// 2. State transfer of a 64 MiB state with 1% of its partitions diverged,
//    against a full transfer of the same state, in the same run.
// 0. The floor: a raw TCP request/response round trip (node, length-prefixed 128-byte
//    messages, an echo server in its own process), same clients, same seconds.
// 3. A rolling cycle: replicas handed off, killed and recovered one at a time
//    under load, in blocks between blocks of the same load without the cycle; throughput and
//    CPU per operation.
// 4. Checkpoint writing: a 64 MiB state written whole, then again with 1% of its
//    partitions changed (only those written), in the same run.
// 5. Faulty clients flooding: n = 4, the correct clients' load alone, then beside a client of
//    the testbed that sends READ scans to every replica as fast as they take them, then beside
//    one that sends one signed write again and again.
// 6. Writes of 1 MiB on a starved CPU: one client writing values of 1 MiB one after another,
//    beside eight busy loops per core, n = 4 against the same store unreplicated beside the same
//    loops: megabyte messages on a CPU too slow for one view-change timeout.
// 7. State transfer of 31 values of 1 MiB under keys a client chose to share one partition
//    (fetched in pieces of 2 MiB, each checked on arrival), against the same values under
//    ordinary keys (31 partitions, fetched whole), nothing stored, in the same run.
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const smw = path.join(root, "bin/smw.js");
const { makeServiceTestbed } = await import(
  path.join(root, "host-agent/dist/service/service-testbed.js")
);
const { startReplica } = await import(
  path.join(root, "host-agent/dist/service/service-runtime.js")
);
const { quorumsFor } = await import(path.join(root, "host-agent/dist/replica/quorums.js"));
const { KvStore } = await import(path.join(root, "host-agent/dist/kv/kv-store.js"));
const { PARTITION_COUNT, partitionOf } = await import(
  path.join(root, "host-agent/dist/kv/partition-tree.js")
);
const { writeCheckpointFile } = await import(
  path.join(root, "host-agent/dist/storage/checkpoint-file.js")
);
const { StoredPartitions, SEGMENT_DIR } = await import(
  path.join(root, "host-agent/dist/storage/partition-segments.js")
);
const { checkpointDigest, clientTableDigest } = await import(
  path.join(root, "host-agent/dist/replica/client-table.js")
);

const args = process.argv.slice(2);
/** Every option, and whether it takes a value: anything else is refused before anything runs. */
const OPTIONS = {
  "--seconds": "S",
  "--clients": "C",
  "--quick": undefined,
  "--only": "PART",
  "--profile": "DIR",
  "--logs": "DIR",
  "--batches-in-flight": "N",
  "--rolling-runs": "N",
  "--help": undefined,
};
const usage = `npm run bench -- kv [--seconds S] [--clients C] [--quick] [--only n4|n6|reads|transfer|rolling|checkpoint|flood|large|pieces] [--batches-in-flight N] [--rolling-runs N] [--profile DIR] [--logs DIR]\n`;
for (let i = 0; i < args.length; i++) {
  const arg = args[i];
  if (!(arg in OPTIONS)) {
    process.stderr.write(`kv benchmark: unknown option "${arg}"\nusage: ${usage}`);
    process.exit(2);
  }
  if (OPTIONS[arg] !== undefined) {
    if (args[i + 1] === undefined || args[i + 1].startsWith("--")) {
      process.stderr.write(`kv benchmark: ${arg} needs a value (${OPTIONS[arg]})\nusage: ${usage}`);
      process.exit(2);
    }
    i++;
  }
}
if (args.includes("--help")) {
  process.stdout.write(`usage: ${usage}`);
  process.exit(0);
}
const flag = (name, fallback) => {
  const i = args.indexOf(name);
  if (i < 0) return fallback;
  const value = Number(args[i + 1]);
  if (!Number.isInteger(value) || value < 1) {
    process.stderr.write(
      `kv benchmark: ${name}: expected a whole number of at least 1, got "${args[i + 1]}"\n`,
    );
    process.exit(2);
  }
  return value;
};
const quick = args.includes("--quick");
const seconds = flag("--seconds", quick ? 4 : 10);
const clients = flag("--clients", 8);
/**
 * `--rolling-runs N`: the rolling part N times, then the median of its ratios: one run's ratio
 * moves by a tenth or more with the machine's speed, which drifts within a run.
 */
const rollingRuns = flag("--rolling-runs", 1);
/** `--batches-in-flight N`: the replicas' window (the testbed's default otherwise). */
const batchesInFlight = flag("--batches-in-flight", undefined);
/** `--profile DIR`: node's --cpu-prof for every process started here (a .cpuprofile each, on exit). */
const profileDir = args.includes("--profile")
  ? path.resolve(args[args.indexOf("--profile") + 1] ?? "")
  : undefined;
if (profileDir !== undefined) mkdirSync(profileDir, { recursive: true });
const nodeArgs = profileDir === undefined ? [] : ["--cpu-prof", "--cpu-prof-dir", profileDir];
/** `--logs DIR`: every replica's log (what it wrote to stderr), one file per process, as it exits. */
const logsDir = args.includes("--logs")
  ? path.resolve(args[args.indexOf("--logs") + 1] ?? "")
  : undefined;
if (logsDir !== undefined) mkdirSync(logsDir, { recursive: true });
let served = 0;
const children = new Set();
process.on("exit", () => {
  for (const c of children) c.kill("SIGKILL");
});

function serve(bed, extra, waitFor = /serving/) {
  const child = spawn(
    process.execPath,
    [...nodeArgs, smw, "kv", "serve", "--testbed", bed.file, ...extra],
    {
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
  children.add(child);
  child.log = "";
  const logName = `${String(++served).padStart(3, "0")}-${extra
    .join("-")
    .replace(/[^A-Za-z0-9]+/g, "-")
    .replace(/^-|-$/g, "")}.log`;
  child.on("exit", () => {
    children.delete(child);
    if (logsDir !== undefined) writeFileSync(path.join(logsDir, logName), child.log);
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`kv serve ${extra.join(" ")} did not start:\n${child.log}`)),
      20_000,
    );
    child.stderr.on("data", (d) => {
      child.log += d.toString();
      if (waitFor.test(child.log)) {
        clearTimeout(timer);
        resolve(child);
      }
    });
  });
}

function waitLog(child, pattern, timeoutMs) {
  const start = child.log.length;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no ${pattern} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    const check = () => {
      if (pattern.test(child.log.slice(start))) {
        clearTimeout(timer);
        child.stderr.off("data", check);
        resolve();
      }
    };
    child.stderr.on("data", check);
  });
}

/**
 * What the replicas' stop summaries say of the run: the primary's batches (requests each), and
 * the frames every replica read and wrote per request proposed.
 */
function batchShape(replicas, completed) {
  let batches = 0;
  let requests = 0;
  let frames = 0;
  for (const r of replicas) {
    const m = /proposed (\d+) batches \(([\d.]+) requests each\b.*frames in (\d+) out (\d+)/.exec(
      r.log,
    );
    if (m === null) return undefined;
    if (Number(m[1]) > batches) {
      batches = Number(m[1]);
      requests = Math.round(Number(m[1]) * Number(m[2]));
    }
    frames += Number(m[3]) + Number(m[4]);
  }
  if (requests === 0) return undefined;
  // The unreplicated server reads one frame and writes one per operation: the floor this
  // compares with, whatever the CPU each frame costs.
  return (
    `batches: ${batches} proposed, ${(requests / batches).toFixed(1)} requests each; ` +
    `frames read and written per request ordered, all replicas: ${(frames / requests).toFixed(1)}; ` +
    `per operation completed: ${(frames / completed).toFixed(1)} (unreplicated: 2)`
  );
}

async function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  await exited;
}

function bench(bed, extra, secs) {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        ...nodeArgs,
        smw,
        "kv",
        "bench",
        "--testbed",
        bed.file,
        "--clients",
        String(clients),
        "--seconds",
        String(secs),
        "--json",
        ...extra,
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    children.add(child);
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
    });
    child.on("exit", () => {
      children.delete(child);
      try {
        resolve(JSON.parse(out));
      } catch {
        reject(new Error(`kv bench printed no figures: ${out}`));
      }
    });
  });
}

/** CPU time (user + system) a live process has used so far, from /proc, in ms. */
function cpuMsOf(child) {
  try {
    const stat = readFileSync(`/proc/${child.pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTicks;
  } catch {
    return Number.NaN;
  }
}
const clockTicks = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** Servers' and clients' CPU per completed operation, in µs, over the measured window. */
async function benchWithCpu(bed, extra, secs, servers) {
  const before = servers.map(cpuMsOf);
  const r = await bench(bed, extra, secs);
  const serverMs = servers.reduce((sum, s, i) => sum + cpuMsOf(s) - before[i], 0);
  r.serverCpuUsPerOp = (serverMs * 1000) / r.completed;
  r.clientCpuUsPerOp = (r.clientCpuMs * 1000) / r.completed;
  return r;
}

const cpuLine = (label, r) =>
  `  ${label.padEnd(13)} CPU per operation: servers ${r.serverCpuUsPerOp.toFixed(0).padStart(5)} µs, clients ${r.clientCpuUsPerOp.toFixed(0).padStart(4)} µs`;

/**
 * What the CPU figures allow, all processes sharing the cores: the throughput ratio cannot pass
 * the unreplicated run's CPU per operation over the replicated clients' alone (were the replicas
 * free), and each replica's share of the servers' CPU against the single server's.
 */
const cpuCeiling = (base, replicated, n) => {
  const baseUs = base.serverCpuUsPerOp + base.clientCpuUsPerOp;
  return (
    `  ceiling from CPU: the replicated clients alone use ${replicated.clientCpuUsPerOp.toFixed(0)} µs per operation, so even with replicas that cost nothing ` +
    `the throughput ratio could not pass ${(baseUs / replicated.clientCpuUsPerOp).toFixed(2)}; each replica uses ` +
    `${(replicated.serverCpuUsPerOp / n / base.serverCpuUsPerOp).toFixed(1)}x the single server's CPU per operation\n`
  );
};

/**
 * Where some processes' CPU went, from the profiles `--profile` had them write on exit: the
 * functions that took the most of their busy time (self time, summed over the processes; a
 * native frame such as `writeBuffer` is the system call under a socket write). Empty without
 * `--profile`, or when a profile is missing.
 */
function profileLines(whose, processes, top = 12) {
  if (profileDir === undefined) return "";
  const files = readdirSync(profileDir);
  const self = new Map();
  let busyUs = 0;
  let totalUs = 0;
  for (const child of processes) {
    const file = files.find((f) => f.includes(`.${child.pid}.`) && f.endsWith(".cpuprofile"));
    if (file === undefined) return "";
    const profile = JSON.parse(readFileSync(path.join(profileDir, file), "utf8"));
    const frames = new Map(profile.nodes.map((node) => [node.id, node.callFrame]));
    profile.samples.forEach((id, i) => {
      const us = profile.timeDeltas[i] ?? 0;
      totalUs += us;
      const frame = frames.get(id);
      if (frame === undefined || frame.functionName === "(idle)") return;
      busyUs += us;
      const where = frame.url === "" ? "" : ` ${path.basename(frame.url)}:${frame.lineNumber + 1}`;
      const name = `${frame.functionName || "(anonymous)"}${where}`;
      self.set(name, (self.get(name) ?? 0) + us);
    });
  }
  if (busyUs === 0) return "";
  const rows = [...self]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([name, us]) => `    ${((100 * us) / busyUs).toFixed(1).padStart(5)}%  ${name}\n`);
  return (
    `  where ${whose} CPU went (${profileDir}: busy ${((100 * busyUs) / totalUs).toFixed(0)}% of their profiled time; ` +
    `the functions that took the most of it, self time):\n${rows.join("")}`
  );
}

/** Message frames a server read and wrote over its life, from its stop summary. */
function framesOf(server) {
  const m = /frames in (\d+) out (\d+)/.exec(server.log);
  return m === null ? undefined : Number(m[1]) + Number(m[2]);
}

/**
 * Where the gap to the unreplicated store comes from: the frames each operation costs (the
 * protocol's share) and the CPU each frame costs (the implementation's). Every frame is a read or
 * a write of a socket plus what its message costs to handle; were the replicated run's frames as
 * cheap as the unreplicated run's (each side's CPU over its own frames), its frames alone would
 * hold the ratio to `capFromFrames`. `serverFrames`: frames every server read and wrote over
 * its life, counted against the operations it handled over it (the warm-up's too).
 */
const frameLines = (base, replicated, baseServerFrames, serverFrames, baseCompleted, completed) => {
  if ([baseServerFrames, serverFrames].includes(undefined) || base.clientFrames === undefined)
    return "";
  const per = (r, framesServers, ops) => ({
    servers: framesServers / ops,
    clients: r.clientFrames / r.completed,
  });
  const b = per(base, baseServerFrames, baseCompleted);
  const r = per(replicated, serverFrames, completed);
  const us = (cpuUsPerOp, framesPerOp) => cpuUsPerOp / framesPerOp;
  const bServerUs = us(base.serverCpuUsPerOp, b.servers);
  const bClientUs = us(base.clientCpuUsPerOp, b.clients);
  const rServerUs = us(replicated.serverCpuUsPerOp, r.servers);
  const rClientUs = us(replicated.clientCpuUsPerOp, r.clients);
  const capFromFrames =
    (base.serverCpuUsPerOp + base.clientCpuUsPerOp) /
    (bServerUs * r.servers + bClientUs * r.clients);
  return (
    `  frames per operation: servers ${r.servers.toFixed(1)}, clients ${r.clients.toFixed(1)} (unreplicated: ${b.servers.toFixed(1)}, ${b.clients.toFixed(1)}); ` +
    `CPU per frame: servers ${rServerUs.toFixed(0)} µs, clients ${rClientUs.toFixed(0)} µs (unreplicated: ${bServerUs.toFixed(0)}, ${bClientUs.toFixed(0)})\n` +
    `  split of the gap: at the unreplicated run's CPU per frame, these frames alone would hold the throughput ratio to ${capFromFrames.toFixed(3)} (the protocol's share); ` +
    `the dearer frames take it to ${(replicated.opsPerSecond / base.opsPerSecond).toFixed(3)} (the implementation's, ${(replicated.opsPerSecond / base.opsPerSecond / capFromFrames).toFixed(2)} of the cap)\n`
  );
};

/**
 * A read's floor: it needs q_r matching answers (`unorderedRead`: more than q where replicas are
 * rejuvenated), so the client writes q_r frames and reads q_r, and q_r replicas each read one
 * and write one, where the unreplicated store moves one each way on each side. At the
 * unreplicated run's CPU per frame no implementation of this read rule passes 1/q_r, however
 * cheap its frames.
 */
const quorumFloor = (n, kPrime, k) => {
  const { quorum, unorderedRead } = quorumsFor(n, kPrime, k);
  return (
    `  a get takes q_r = ${unorderedRead} matching answers (q = ${quorum}${unorderedRead > quorum ? "; more, as the adversary may move between two answers of one read" : ""}): ` +
    `2q_r frames at the clients and 2 at each of q_r replicas, where the unreplicated store moves 2 and 2; ` +
    `at the unreplicated CPU per frame no implementation of this read rule passes 1/q_r = ${(1 / unorderedRead).toFixed(3)}\n`
  );
};

/**
 * Operations a run's servers handled besides those it measured: one get per client before the
 * clock starts, and the prefilled keys.
 */
const handled = (r, mix) =>
  r.completed +
  r.clients +
  (mix.includes("--prefill") ? Number(mix[mix.indexOf("--keys") + 1]) : 0);

const median = (xs) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted.length === 0
    ? Number.NaN
    : (sorted[Math.floor((sorted.length - 1) / 2)] ?? Number.NaN);
};

/** Two equal-length runs as one: mean throughput and latencies (of the two runs'), failures summed. */
const meanOf = (a, b) => ({
  opsPerSecond: (a.opsPerSecond + b.opsPerSecond) / 2,
  p50Ms: (a.p50Ms + b.p50Ms) / 2,
  p99Ms: (a.p99Ms + b.p99Ms) / 2,
  failed: a.failed + b.failed,
});

const fmt = (r) =>
  `${r.opsPerSecond.toFixed(0).padStart(6)} ops/s  p50 ${r.p50Ms.toFixed(2).padStart(6)} ms  p99 ${r.p99Ms.toFixed(2).padStart(7)} ms  failed ${r.failed}`;

let port = 29000;
const nextPorts = () => {
  port += 20;
  return port;
};
/** Unmeasured load on freshly started servers before a measurement (as the rolling part does). */
const WARM_UP_SECONDS = 3;

/** `load`: "mixed" (half gets, half puts) or "reads" (gets only, of keys written first). */
async function throughput(n, kPrime, k, load = "mixed") {
  const bed = makeServiceTestbed({
    n,
    kPrime,
    k,
    basePort: nextPorts(),
    clients,
    ...(batchesInFlight !== undefined ? { batchesInFlight } : {}),
  });
  const mix = load === "reads" ? ["--read-percent", "100", "--keys", "256", "--prefill"] : [];
  try {
    // Each side measured warm: a freshly started process runs its code unoptimised for a while
    // (the replicated side has n of them, and more code), which the measured seconds would
    // otherwise count against it.
    const single = await serve(bed, ["--single"]);
    const baseWarm = await bench(bed, ["--single", ...mix], WARM_UP_SECONDS);
    const base = await benchWithCpu(bed, ["--single", ...mix], seconds, [single]);
    await stop(single);
    const baseServerFrames = framesOf(single);
    const replicas = await Promise.all(
      bed.testbed.hosts.map((h) => serve(bed, ["--host", h.id, "--k", String(k)])),
    );
    const warm = await bench(bed, ["--k", String(k), ...mix], WARM_UP_SECONDS);
    const replicated = await benchWithCpu(bed, ["--k", String(k), ...mix], seconds, replicas);
    await Promise.all(replicas.map(stop));
    // The replicas' summaries count their whole life: the warm-up's operations too.
    const shape = batchShape(replicas, handled(warm, mix) + handled(replicated, mix));
    const replicaFrames = replicas.map(framesOf);
    const frames = frameLines(
      base,
      replicated,
      baseServerFrames,
      replicaFrames.includes(undefined) ? undefined : replicaFrames.reduce((a, f) => a + f, 0),
      handled(baseWarm, mix) + handled(base, mix),
      handled(warm, mix) + handled(replicated, mix),
    );
    const what =
      load === "reads"
        ? `gets only (unordered reads; ${replicated.readsOrdered} ordered after answers disagreed)`
        : `half gets, half puts; ${replicated.readsOrdered} gets ordered after answers disagreed`;
    process.stdout.write(
      `n = ${n} (k' = ${kPrime}, k = ${k}), ${clients} clients, ${seconds} s each, ${what}:\n` +
        `  unreplicated  ${fmt(base)}\n  replicated    ${fmt(replicated)}\n` +
        `  ratio replicated/unreplicated: throughput ${(replicated.opsPerSecond / base.opsPerSecond).toFixed(3)}, p50 latency ${(replicated.p50Ms / base.p50Ms).toFixed(1)}x\n` +
        `  ratio to the raw TCP floor: unreplicated ${(base.opsPerSecond / floor.opsPerSecond).toFixed(3)}, replicated ${(replicated.opsPerSecond / floor.opsPerSecond).toFixed(3)}\n` +
        `${cpuLine("unreplicated", base)}\n${cpuLine("replicated", replicated)} (${n} replicas)\n` +
        `  ratio of CPU per operation, replicated/unreplicated: ${((replicated.serverCpuUsPerOp + replicated.clientCpuUsPerOp) / (base.serverCpuUsPerOp + base.clientCpuUsPerOp)).toFixed(1)}x` +
        ` (on ${availableParallelism()} cores every process shares, throughput is bounded by it)\n` +
        cpuCeiling(base, replicated, n) +
        (shape === undefined ? "" : `  ${shape}\n`) +
        frames +
        (load === "reads" ? quorumFloor(n, kPrime, k) : "") +
        profileLines("the unreplicated server's", [single]) +
        profileLines("the replicas'", replicas),
    );
  } finally {
    bed.remove();
  }
}

/** Checkpoint writing: whole, then incremental (1% of the partitions changed), same state, same run. */
async function checkpointWrites() {
  const dir = path.join(tmpdir(), `smw-bench-cp-${process.pid}-${Date.now()}`);
  mkdirSync(dir, { recursive: true });
  try {
    const store = new KvStore();
    const value = "x".repeat(4096);
    for (let i = 0; i < 16_384; i++)
      store.apply({ op: "put", key: `key-${i}`, value: `${i}:${value}`.slice(0, 4096) });
    const stored = new StoredPartitions();
    const segmentBytes = () => {
      const folder = path.join(dir, SEGMENT_DIR);
      let total = 0;
      for (const name of readdirSync(folder)) total += statSync(path.join(folder, name)).size;
      return total;
    };
    const write = (seq) => {
      const snapshot = store.snapshot();
      const digest = checkpointDigest(snapshot.root().toString("hex"), clientTableDigest([]));
      const before = segmentBytes();
      const startMs = performance.now();
      writeCheckpointFile(dir, { seq, digest, snapshot, clients: [] }, stored);
      return { ms: performance.now() - startMs, grewBytes: Math.max(0, segmentBytes() - before) };
    };
    mkdirSync(path.join(dir, SEGMENT_DIR), { recursive: true });
    const whole = write(64);
    const touched = new Set();
    for (let i = 0; touched.size < Math.round(PARTITION_COUNT / 100); i++) {
      const key = `key-${i}`;
      if (touched.has(partitionOf(key))) continue;
      touched.add(partitionOf(key));
      store.apply({ op: "put", key, value: `changed ${i}` });
    }
    const incremental = write(128);
    const line = (label, r) =>
      `  ${label.padEnd(24)} ${r.ms.toFixed(0).padStart(5)} ms, ${(r.grewBytes / 2 ** 20).toFixed(2).padStart(6)} MiB of partitions written\n`;
    process.stdout.write(
      "checkpoint written to disk (fsync), a 64 MiB state (16384 values of 4 KiB):\n" +
        line("whole (nothing stored)", whole) +
        line("1% partitions changed", incremental) +
        `  ratio changed/whole: time ${(incremental.ms / whole.ms).toFixed(3)}, bytes ${(incremental.grewBytes / whole.grewBytes).toFixed(3)}\n`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The longest a recovery measured here may take before it is reported as not done. */
const RECOVERY_WAIT_MS = 60_000;

/**
 * Starts `hostId`'s replica recovering (its peers already serve), waits until it has recovered
 * (at most RECOVERY_WAIT_MS), stops it, and prints how long its state transfer and its whole
 * recovery took.
 */
async function measureRecovery(testbed, hostId, period, label) {
  const startMs = performance.now();
  let transferred;
  let transferStartMs;
  let transferMs = Number.NaN;
  let server;
  let timer;
  const recovered = await new Promise((resolve, reject) => {
    timer = setTimeout(() => resolve(false), RECOVERY_WAIT_MS);
    startReplica(testbed, hostId, {
      k: 0,
      recovering: true,
      period,
      onAction: (a) => {
        if (a.type === "transfer-started") transferStartMs = performance.now();
        if (a.type === "transferred") {
          transferred = a;
          transferMs = performance.now() - transferStartMs;
        }
        if (a.type === "recovered") resolve(true);
      },
    }).then((started) => {
      server = started;
    }, reject);
  });
  clearTimeout(timer);
  const ms = performance.now() - startMs;
  await server?.close();
  if (!recovered) {
    process.stdout.write(`  ${label.padEnd(24)} not recovered within ${RECOVERY_WAIT_MS} ms\n`);
    return { ms: Number.NaN, transferMs: Number.NaN };
  }
  process.stdout.write(
    `  ${label.padEnd(24)} transfer ${transferMs.toFixed(0).padStart(5)} ms, start to recovered ${ms.toFixed(0).padStart(5)} ms, ${transferred?.partitions ?? 0} partitions, ${((transferred?.bytes ?? 0) / 2 ** 20).toFixed(1)} MiB fetched\n`,
  );
  return { ms, transferMs };
}

async function piecedTransfer() {
  const value = (i) => String.fromCharCode(97 + (i % 26)).repeat(2 ** 20);
  const home = partitionOf("fat-0");
  const fatKeys = [];
  for (let i = 0; fatKeys.length < 31; i++)
    if (partitionOf(`fat-${i}`) === home) fatKeys.push(`fat-${i}`);
  const spread = fatKeys.map((_, i) => `key-${i}`);
  process.stdout.write(
    "state transfer of 31 values of 1 MiB, n = 4, nothing stored, to recovered:\n",
  );
  const results = [];
  for (const [label, keys] of [
    ["ordinary keys", spread],
    ["keys sharing a partition", fatKeys],
  ]) {
    const bed = makeServiceTestbed({ n: 4, kPrime: 1, k: 0, basePort: nextPorts(), clients: 1 });
    try {
      const store = new KvStore();
      for (const [i, key] of keys.entries()) store.apply({ op: "put", key, value: value(i) });
      const snapshot = store.snapshot();
      const digest = checkpointDigest(snapshot.root().toString("hex"), clientTableDigest([]));
      for (const h of bed.testbed.hosts) mkdirSync(h.stateDir, { recursive: true });
      for (const h of bed.testbed.hosts.slice(0, 3))
        writeCheckpointFile(h.stateDir, { seq: 64, digest, snapshot, clients: [] });
      const peers = [];
      for (const h of bed.testbed.hosts.slice(0, 3))
        peers.push(await startReplica(bed.testbed, h.id, { k: 0 }));
      results.push(await measureRecovery(bed.testbed, bed.testbed.hosts[3].id, 1, label));
      await Promise.all(peers.map((p) => p.close()));
    } finally {
      bed.remove();
    }
  }
  const [ordinary, shared] = results;
  process.stdout.write(
    `  ratio shared/ordinary: transfer ${(shared.transferMs / ordinary.transferMs).toFixed(2)}, start to recovered ${(shared.ms / ordinary.ms).toFixed(2)}\n`,
  );
}

async function stateTransfer() {
  const bed = makeServiceTestbed({ n: 4, kPrime: 1, k: 0, basePort: nextPorts(), clients: 1 });
  try {
    const store = new KvStore();
    const value = "x".repeat(4096);
    for (let i = 0; i < 16_384; i++)
      store.apply({ op: "put", key: `key-${i}`, value: `${i}:${value}`.slice(0, 4096) });
    const snapshot = store.snapshot();
    const seq = 64;
    const digest = checkpointDigest(snapshot.root().toString("hex"), clientTableDigest([]));
    for (const h of bed.testbed.hosts) mkdirSync(h.stateDir, { recursive: true });
    for (const h of bed.testbed.hosts.slice(0, 3))
      writeCheckpointFile(h.stateDir, { seq, digest, snapshot, clients: [] });
    // The recovering replica's copy: 1% of the partitions differ.
    const diverged = KvStore.fromSnapshot(snapshot);
    const touched = new Set();
    for (let i = 0; touched.size < Math.round(PARTITION_COUNT / 100); i++) {
      const key = `key-${i}`;
      if (touched.has(partitionOf(key))) continue;
      touched.add(partitionOf(key));
      diverged.apply({ op: "put", key, value: "stale" });
    }
    const h4 = bed.testbed.hosts[3];
    const peers = [];
    for (const h of bed.testbed.hosts.slice(0, 3))
      peers.push(await startReplica(bed.testbed, h.id, { k: 0 }));
    let period = 0;
    const measure = (label) => measureRecovery(bed.testbed, h4.id, ++period, label);
    process.stdout.write(
      "state transfer of a 64 MiB state (16384 values of 4 KiB), n = 4, to recovered:\n",
    );
    writeCheckpointFile(h4.stateDir, {
      seq,
      digest: checkpointDigest(diverged.rootDigest().toString("hex"), clientTableDigest([])),
      snapshot: diverged.snapshot(),
      clients: [],
    });
    const partial = await measure("1% partitions diverged");
    rmSync(path.join(h4.stateDir, "checkpoint.smw"));
    const full = await measure("nothing stored (full)");
    process.stdout.write(
      `  ratio diverged/full: transfer ${(partial.transferMs / full.transferMs).toFixed(3)} (target <= 0.05), start to recovered ${(partial.ms / full.ms).toFixed(3)}\n`,
    );
    await Promise.all(peers.map((p) => p.close()));
  } finally {
    bed.remove();
  }
}

/** Rolling blocks, each between two steady ones: S R S R S. */
const ROLLING_BLOCKS = 2;

/**
 * Rolling recovery, n = 6: load blocks of the same length in turn, steady (no cycle) and rolling
 * (replicas handed off, killed and recovered one after another from 2 s in), starting and ending
 * with a steady one. Each rolling block is compared with the mean of the steady blocks on either
 * side: the machine's speed drifts by a fifth or more within a minute here (other load, a shared
 * host's neighbours), and a steady state measured only before and after the whole cycle moved
 * the ratio by as much as the cycle did.
 */
async function rolling() {
  const bed = makeServiceTestbed({
    n: 6,
    kPrime: 1,
    k: 1,
    basePort: nextPorts(),
    clients,
    checkpointInterval: 64,
  });
  const blockSeconds = Math.max(seconds * 1.5, 12);
  const hosts = bed.testbed.hosts;
  const turnsPerBlock = Math.ceil(hosts.length / ROLLING_BLOCKS);
  try {
    const replicas = await Promise.all(hosts.map((h) => serve(bed, ["--host", h.id])));
    await bench(bed, [], WARM_UP_SECONDS); // freshly started replicas are slower for a while
    const steadyBlocks = [await benchWithCpu(bed, [], blockSeconds, replicas)];
    const rollingBlocks = [];
    for (let b = 0; b < ROLLING_BLOCKS; b++) {
      const turns = [...hosts.keys()].slice(b * turnsPerBlock, (b + 1) * turnsPerBlock);
      rollingBlocks.push(await rollingBlock(bed, replicas, turns, blockSeconds));
      // The replicas just restarted still run unoptimised code: unmeasured load first, as before
      // the first steady block, or the steady state after a rolling block would be measured low.
      await bench(bed, [], WARM_UP_SECONDS);
      steadyBlocks.push(await benchWithCpu(bed, [], blockSeconds, replicas));
    }
    await Promise.all(replicas.map(stop));
    const blockRatios = rollingBlocks.map(
      (r, b) =>
        r.during.opsPerSecond /
        ((steadyBlocks[b].opsPerSecond + steadyBlocks[b + 1].opsPerSecond) / 2),
    );
    const sum = (xs, f) => xs.reduce((total, x) => total + f(x), 0);
    const steadyOps = sum(steadyBlocks, (r) => r.completed);
    const rollingOps = sum(rollingBlocks, (r) => r.during.completed);
    const steadyOpsPerSecond = sum(steadyBlocks, (r) => r.opsPerSecond) / steadyBlocks.length;
    const cpuPerOp = {
      steadyServers: sum(steadyBlocks, (r) => r.serverCpuUsPerOp * r.completed) / steadyOps,
      steadyClients: sum(steadyBlocks, (r) => r.clientCpuUsPerOp * r.completed) / steadyOps,
      rollingServers: (sum(rollingBlocks, (r) => r.serverCpuMs) * 1000) / rollingOps,
      rollingClients: (sum(rollingBlocks, (r) => r.during.clientCpuMs) * 1000) / rollingOps,
    };
    const steadyUs = cpuPerOp.steadyServers + cpuPerOp.steadyClients;
    const rollingUs = cpuPerOp.rollingServers + cpuPerOp.rollingClients;
    const restartCpu = rollingBlocks.flatMap((r) => r.restartCpu);
    const warmUpRatios = rollingBlocks.flatMap((r) => r.warmUps);
    // On a testbed a restarted replica starts and recovers on its own host's CPU, not the others'.
    const ownStartUs = (sum(restartCpu, (c) => c.recoveredCpuMs) * 1000) / rollingOps;
    const failed = sum(rollingBlocks, (r) => r.during.failed);
    const ratios = {
      throughput: blockRatios.reduce((a, b) => a + b, 0) / blockRatios.length,
      cpuPerOp: steadyUs / rollingUs,
      failed,
    };
    const list = (xs, digits = 0) => xs.map((x) => x.toFixed(digits)).join(", ");
    process.stdout.write(
      `rolling recovery, n = 6 (k' = 1, k = 1), ${clients} clients, blocks of ${blockSeconds} s, steady and rolling in turn (${["S", ...rollingBlocks.map(() => "R S")].join(" ")}), ${restartCpu.length} replicas handed off, killed and recovered, ${turnsPerBlock} in each rolling block:\n` +
        `  steady blocks  ${list(steadyBlocks.map((r) => r.opsPerSecond))} ops/s; p50 ${list(
          steadyBlocks.map((r) => r.p50Ms),
          2,
        )} ms; p99 ${list(
          steadyBlocks.map((r) => r.p99Ms),
          2,
        )} ms; failed ${sum(steadyBlocks, (r) => r.failed)}\n` +
        rollingBlocks
          .map(
            (r, b) =>
              `  rolling block ${b + 1} ${fmt(r.during)}  longest stall ${r.during.longestStallMs.toFixed(0)} ms; against the steady blocks either side ${blockRatios[b].toFixed(3)}\n`,
          )
          .join("") +
        `  ratio rolling/steady throughput: ${ratios.throughput.toFixed(3)} (the mean of the blocks'; target >= 0.9, zero failed)\n` +
        `  CPU per operation: steady servers ${cpuPerOp.steadyServers.toFixed(0)} µs, clients ${cpuPerOp.steadyClients.toFixed(0)} µs; ` +
        `rolling servers ${cpuPerOp.rollingServers.toFixed(0)} µs, clients ${cpuPerOp.rollingClients.toFixed(0)} µs; ` +
        `ratio steady/rolling ${(steadyUs / rollingUs).toFixed(3)} (what the cycle's own work allows, whatever the machine's speed did); ` +
        `without the restarted replicas' own CPU until recovered (their hosts' on a testbed) ${(steadyUs / (rollingUs - ownStartUs)).toFixed(3)}\n` +
        `  CPU of each restarted replica (median of ${restartCpu.length}): ${median(restartCpu.map((c) => c.servingCpuMs)).toFixed(0)} ms until serving, ${median(restartCpu.map((c) => c.recoveredCpuMs)).toFixed(0)} ms until recovered;\n` +
        "  here it shares the two cores with the service, on a testbed it is its own host's\n" +
        (warmUpRatios.length === 0
          ? ""
          : `  CPU of each restarted replica in the ${WARM_UP_WINDOW_MS / 1000} s after it recovered, against the median of the others over the same time (a new process's code is not yet optimised; the window takes in the next turn's hand-off and restart, which the others serve): median ${median(warmUpRatios).toFixed(2)}× (${list(warmUpRatios, 2)})\n`) +
        formatPhases(
          rollingBlocks.reduce((sums, r) => addPhases(sums, r.during.timeline, r.phases), {}),
          restartCpu.length,
          steadyOpsPerSecond,
        ),
    );
    return ratios;
  } finally {
    bed.remove();
  }
}

/**
 * One rolling block: a load of `blockSeconds` during which the replicas at `turns` (indexes into
 * `replicas`, replaced there by their restarted processes) are handed off, killed and restarted
 * one after another, from 2 s in. Its load's figures; the CPU the replicas used over it; each
 * restarted replica's CPU until serving and until recovered, and its warm-up ratio; the times
 * of each turn's steps, to split the load's timeline by phase.
 */
async function rollingBlock(bed, replicas, turns, blockSeconds) {
  // The servers' CPU over the load: each original's until it is killed or the load ends, and
  // each restarted one's whole. Per operation, it does not move with the machine's speed as
  // throughput does, so it shows what the cycle itself costs.
  const originals = [...replicas];
  const cpuAtLoadStart = replicas.map(cpuMsOf);
  let killedCpuMs = 0;
  const load = bench(bed, ["--timeline", "100"], blockSeconds);
  const restartCpu = [];
  const phases = [];
  const warmUps = [];
  const cycle = (async () => {
    await new Promise((r) => setTimeout(r, 2000));
    for (const i of turns) {
      const h = bed.testbed.hosts[i];
      const old = replicas[i];
      const handoffAt = Date.now();
      old.kill("SIGUSR2"); // hand off if primary, as the host agent does on PREPARE_SHUTDOWN
      await new Promise((r) => setTimeout(r, 100));
      killedCpuMs += cpuMsOf(old) - cpuAtLoadStart[i];
      old.kill("SIGKILL");
      await new Promise((r) => setTimeout(r, 500));
      const startedAt = Date.now();
      const fresh = await serve(bed, ["--host", h.id, "--recovering"], /serving/);
      const servingAt = Date.now();
      replicas[i] = fresh;
      const servingCpuMs = cpuMsOf(fresh);
      await waitLog(fresh, /state recovered/, 20_000).catch(() => {});
      const recoveredAt = Date.now();
      restartCpu.push({ servingCpuMs, recoveredCpuMs: cpuMsOf(fresh) });
      warmUps.push(warmUpAfter(fresh, [...replicas]));
      phases.push({ handoffAt, startedAt, servingAt, recoveredAt });
      await new Promise((r) => setTimeout(r, 500));
    }
  })();
  const [during] = await Promise.all([load, cycle]);
  const serverCpuMs = replicas.reduce(
    (total, r, i) => total + cpuMsOf(r) - (r === originals[i] ? cpuAtLoadStart[i] : 0),
    killedCpuMs,
  );
  return {
    during,
    serverCpuMs,
    restartCpu,
    phases,
    warmUps: (await Promise.all(warmUps)).filter((r) => r !== undefined),
  };
}

const WARM_UP_WINDOW_MS = 2_000;

/**
 * How much CPU `fresh` uses in the `WARM_UP_WINDOW_MS` from now, as a multiple of the median the
 * other replicas in `all` use over the same time (those killed meanwhile left out); undefined if
 * none is left to compare with.
 */
async function warmUpAfter(fresh, all) {
  const before = all.map(cpuMsOf);
  await new Promise((r) => setTimeout(r, WARM_UP_WINDOW_MS));
  const used = all.map((r, i) =>
    r.exitCode === null && r.signalCode === null ? cpuMsOf(r) - before[i] : Number.NaN,
  );
  const mine = used[all.indexOf(fresh)];
  const others = used.filter((ms, i) => all[i] !== fresh && Number.isFinite(ms));
  if (!Number.isFinite(mine) || others.length === 0 || median(others) <= 0) return undefined;
  return mine / median(others);
}

/** The rolling part `rollingRuns` times; with more than one, each ratio and their medians. */
async function rollingRepeated() {
  const all = [];
  for (let i = 0; i < rollingRuns; i++) all.push(await rolling());
  if (all.length < 2) return;
  const list = (key) => all.map((r) => r[key].toFixed(3)).join(", ");
  process.stdout.write(
    `rolling recovery over ${all.length} runs: throughput ratios ${list("throughput")}; median ${median(all.map((r) => r.throughput)).toFixed(3)} (target >= 0.9); ` +
      `CPU per operation ratios ${list("cpuPerOp")}; median ${median(all.map((r) => r.cpuPerOp)).toFixed(3)}; ` +
      `failed ${all.reduce((sum, r) => sum + r.failed, 0)}\n`,
  );
}

const PHASE_NAMES = [
  "hand-off, kill, down",
  "restarted until serving",
  "serving until recovered",
  "recovered, until the next turn",
];

/**
 * Where a rolling block's throughput goes: its load's timeline (operations per 100 ms) split
 * into the phases of each replica's turn, each phase's time and operations added to `sums`.
 */
function addPhases(sums, timeline, phases) {
  if (timeline === undefined) return sums;
  const { startedAtEpochMs, intervalMs, completed } = timeline;
  const opsBetween = (fromMs, toMs) => {
    let ops = 0;
    for (const [i, count] of completed.entries()) {
      const at = startedAtEpochMs + (i + 0.5) * intervalMs;
      if (at >= fromMs && at < toMs) ops += count;
    }
    return ops;
  };
  const add = (name, fromMs, toMs) => {
    const [ms, ops] = sums[name] ?? [0, 0];
    sums[name] = [ms + Math.max(0, toMs - fromMs), ops + opsBetween(fromMs, toMs)];
  };
  for (const [i, p] of phases.entries()) {
    const next = phases[i + 1]?.handoffAt ?? p.recoveredAt + 500;
    const [handoff, restarted, serving, recovered] = PHASE_NAMES;
    add(handoff, p.handoffAt, p.startedAt);
    add(restarted, p.startedAt, p.servingAt);
    add(serving, p.servingAt, p.recoveredAt);
    add(recovered, p.recoveredAt, next);
  }
  return sums;
}

/** The phases' sums, each phase's throughput against the steady state's. */
function formatPhases(sums, turns, steadyOpsPerSecond) {
  if (Object.keys(sums).length === 0) return "";
  let out = `  where it goes (summed over the ${turns} turns; throughput against the steady state's):\n`;
  for (const name of PHASE_NAMES) {
    const [ms, ops] = sums[name] ?? [0, 0];
    const rate = ms > 0 ? (ops * 1000) / ms : 0;
    out += `    ${name.padEnd(32)} ${(ms / 1000).toFixed(1).padStart(5)} s  ${rate.toFixed(0).padStart(5)} ops/s  ${(rate / steadyOpsPerSecond).toFixed(2)}\n`;
  }
  return out;
}

/**
 * A client of the testbed, faulty: 16 messages every millisecond to every replica whatever comes
 * back (its connections queue what TCP does not take yet, dropping the oldest beyond their bound),
 * and it never offers a session half, so each answer is signed. `kind`: "reads", READ scans of up
 * to 1000 keys; "replayed-write", one write, the same bytes again and again (each copy costs a
 * replica the reading and refusing). In its own process, as a flooding host is.
 * Resolves `ready` once it floods; `stop()` ends it and resolves with the answers it got.
 */
function startFlooder(bed, id, kind = "reads") {
  const dist = path.join(root, "host-agent/dist");
  const script = `
    const [file, id, dist, wiring, kind] = process.argv.slice(1);
    const { loadTestbedFile } = await import(wiring);
    const { clientSigner } = await import(dist + "/service/service-keys.js");
    const { ClientConnections } = await import(dist + "/net/client-connection.js");
    const { encodeClientMessage } = await import(dist + "/replica/messages.js");
    const loaded = loadTestbedFile(file);
    if (!loaded.ok) throw new Error("flooder: testbed does not load");
    const signer = clientSigner(loaded.testbed, id);
    const replicas = Object.fromEntries(loaded.testbed.hosts.map((h) => [h.id, h.address]));
    const net = new ClientConnections({ clientId: id, replicas, proveHello: (s) => signer.sign(s) });
    let ts = Date.now() * 1000;
    let answered = 0;
    net.on("message", () => {
      answered++;
    });
    net.start();
    // One READ, encoded once and sent again and again (a replica answers every copy): the
    // flood costs the flooder little of the two cores it shares with the service here.
    const op = { op: "scan", from: "", to: "", limit: 1000 };
    let flood = encodeClientMessage({ type: "READ", client: id, ts: ++ts, op });
    if (kind === "replayed-write") {
      // One write, signed as any client signs one without a session, sent again and again: each
      // copy after the first is a retransmission of an executed request.
      const { KvClientCore } = await import(dist + "/client/kv-client-core.js");
      const { KeyRing } = await import(dist + "/replica/key-ring.js");
      const { Ed25519Scheme } = await import(dist + "/replica/ed25519.js");
      const { boardPublicKeys } = await import(dist + "/service/service-keys.js");
      const core = new KvClientCore(
        { id, replicas: Object.keys(replicas), replyQuorum: 1, retransmitMs: 500, firstTs: ts + 1 },
        new KeyRing(new Ed25519Scheme(), boardPublicKeys(loaded.testbed), new Map()),
        signer,
      );
      core.start();
      const sent = core.submit({ op: "put", key: "flood", value: "x".repeat(64) }, 0);
      flood = sent.find((a) => a.type === "send").message;
    }
    setInterval(() => {
      for (const r of Object.keys(replicas)) for (let i = 0; i < 16; i++) net.send(r, flood);
    }, 1);
    process.stdout.write("flooding\\n");
    process.on("SIGTERM", () => {
      process.stdout.write(JSON.stringify({ answered }) + "\\n");
      process.exit(0);
    });
  `;
  const child = spawn(
    process.execPath,
    [
      "--input-type=module",
      "-e",
      script,
      bed.file,
      id,
      dist,
      path.join(root, "wiring/dist/index.js"),
      kind,
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  children.add(child);
  let out = "";
  child.stdout.on("data", (d) => {
    out += d;
  });
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the flooder did not start")), 20_000);
    child.stdout.on("data", () => {
      if (out.includes("flooding")) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  const stop = async () => {
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    await exited;
    children.delete(child);
    const last = out.trim().split("\n").pop() ?? "";
    try {
      return JSON.parse(last).answered;
    } catch {
      return undefined;
    }
  };
  return { ready, stop, cpuMs: () => cpuMsOf(child) };
}

/**
 * What a flooding client costs the correct ones: their load alone, then beside each kind of
 * flooder in turn, at n = 4 in the same run; and the turns each replica's connections yielded
 * (`framed-socket.ts`) and the holds of clients in debt (`client-allowance.ts`).
 */
/** Writes of 1 MiB, one after another, beside busy loops: unreplicated, then n = 4. */
async function largeWrites() {
  const loops = 8 * availableParallelism();
  const secs = 2 * seconds;
  const bed = makeServiceTestbed({ n: 4, kPrime: 1, k: 0, basePort: nextPorts(), clients: 1 });
  const writes = ["--clients", "1", "--read-percent", "0", "--value-bytes", String(1 << 20)];
  const busy = Array.from({ length: loops }, () =>
    spawn(process.execPath, ["-e", "for (;;) {}"], { stdio: "ignore" }),
  );
  for (const b of busy) children.add(b);
  try {
    const single = await serve(bed, ["--single"]);
    const base = await bench(bed, ["--single", ...writes], secs);
    await stop(single);
    const replicas = await Promise.all(
      bed.testbed.hosts.map((h) => serve(bed, ["--host", h.id, "--k", "0"])),
    );
    const replicated = await bench(bed, ["--k", "0", ...writes], secs);
    await Promise.all(replicas.map(stop));
    // Each replica logs every view it enters; its stop summary, the bytes it wrote.
    const views = Math.max(
      0,
      ...replicas.flatMap((r) =>
        [...r.log.matchAll(/: view (\d+), primary/g)].map((m) => Number(m[1])),
      ),
    );
    const bytesOut = replicas.reduce(
      (sum, r) => sum + Number(/bytes in \d+ out (\d+)/.exec(r.log)?.[1] ?? Number.NaN),
      0,
    );
    const perWriteMiB = bytesOut / 2 ** 20 / Math.max(1, replicated.completed);
    process.stdout.write(
      `writes of 1 MiB, 1 client, one after another, ${secs} s each, beside ${loops} busy loops:\n` +
        `  unreplicated  ${fmt(base)}\n  replicated    ${fmt(replicated)}\n` +
        `  ratio replicated/unreplicated: throughput ${(replicated.opsPerSecond / base.opsPerSecond).toFixed(3)}, p50 latency ${(replicated.p50Ms / base.p50Ms).toFixed(1)}x\n` +
        `  views changed: ${views}; the replicas wrote ${perWriteMiB.toFixed(1)} MiB per write (a write reaches 4 replicas: 4 MiB from the client)\n`,
    );
  } finally {
    for (const b of busy) b.kill("SIGKILL");
    bed.remove();
  }
}

async function flood() {
  const bed = makeServiceTestbed({
    n: 4,
    kPrime: 1,
    k: 0,
    basePort: nextPorts(),
    clients: clients + 2,
  });
  const ids = Array.from({ length: clients }, (_, i) => `client${i + 1}`);
  const load = ["--k", "0", "--client-ids", ids.join(",")];
  try {
    const replicas = await Promise.all(
      bed.testbed.hosts.map((h) => serve(bed, ["--host", h.id, "--k", "0"])),
    );
    await bench(bed, load, WARM_UP_SECONDS);
    // CPU a second of the measured window, in ms: what a flood costs the replicas, and what the
    // flooder itself takes of the cores it shares with them here (on a testbed, its own host's).
    const replicaCpu = (r) => ((r.serverCpuUsPerOp * r.completed) / 1000 / seconds).toFixed(0);
    const aloneLine = (r) =>
      `  ${"alone".padEnd(34)}${fmt(r)}  replicas' CPU ${replicaCpu(r)} ms/s\n`;
    // The load alone before and after each flood, each flood compared with their mean: this
    // machine's speed drifts by a fifth within a minute, and drift moves both sides alike.
    let alone = await benchWithCpu(bed, load, seconds, replicas);
    let out =
      `faulty clients flooding, n = 4 (k' = 1, k = 0), ${clients} correct clients, ${seconds} s each, the load alone before and after each flood:\n` +
      aloneLine(alone);
    const kinds = {
      reads: "READ scans of 1000 keys",
      "replayed-write": "one signed write, replayed",
    };
    for (const [i, [kind, what]] of Object.entries(kinds).entries()) {
      const flooder = startFlooder(bed, `client${clients + 1 + i}`, kind);
      await flooder.ready;
      await new Promise((r) => setTimeout(r, 500));
      const flooderBeforeMs = flooder.cpuMs();
      const beside = await benchWithCpu(bed, load, seconds, replicas);
      const flooderMs = flooder.cpuMs() - flooderBeforeMs;
      const answered = await flooder.stop();
      const after = await benchWithCpu(bed, load, seconds, replicas);
      const reference = meanOf(alone, after);
      out +=
        `  ${`beside ${what}`.padEnd(34)}${fmt(beside)}  replicas' CPU ${replicaCpu(beside)} ms/s\n` +
        `    against the mean of the load alone before and after: throughput ${(beside.opsPerSecond / reference.opsPerSecond).toFixed(3)}, p99 latency ${(beside.p99Ms / reference.p99Ms).toFixed(1)}x; ` +
        `the flooder's answers ${answered ?? "?"} (${answered === undefined ? "?" : (answered / (seconds + 0.5)).toFixed(0)}/s, every replica), its own CPU ${(flooderMs / seconds).toFixed(0)} ms/s\n` +
        aloneLine(after);
      alone = after;
    }
    await Promise.all(replicas.map(stop));
    const yielded = replicas.map((r) => /(\d+) turns yielded/.exec(r.log)?.[1] ?? "?");
    const held = replicas.map((r) => /(\d+) holds of a client/.exec(r.log)?.[1] ?? "?");
    out += `  both floods, each replica: turns its connections yielded ${yielded.join(", ")}; holds of a client's connections ${held.join(", ")}\n`;
    process.stdout.write(out);
  } finally {
    bed.remove();
  }
}

/** The floor for every figure below: a bare TCP echo, one process each side, no crypto. */
async function rawTcp() {
  const server = spawn(
    process.execPath,
    [
      "-e",
      `const net = require("node:net");
       const s = net.createServer((c) => { c.setNoDelay(true); let buf = Buffer.alloc(0);
         c.on("data", (d) => { buf = Buffer.concat([buf, d]);
           while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
             const n = 4 + buf.readUInt32BE(0); c.write(buf.subarray(0, n)); buf = buf.subarray(n); } }); });
       s.listen(0, "127.0.0.1", () => process.stdout.write(String(s.address().port) + "\\n"));`,
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  children.add(server);
  const port = await new Promise((resolve) =>
    server.stdout.once("data", (d) => resolve(Number(String(d).trim()))),
  );
  const { connect } = await import("node:net");
  const latencies = [];
  const endMs = performance.now() + seconds * 1000;
  const payload = Buffer.alloc(128, 1);
  const frame = Buffer.concat([Buffer.from([0, 0, 0, 128]), payload]);
  await Promise.all(
    Array.from({ length: clients }, async () => {
      const socket = connect(port, "127.0.0.1");
      socket.setNoDelay(true);
      await new Promise((r) => socket.once("connect", r));
      let pending = Buffer.alloc(0);
      let waiting;
      socket.on("data", (d) => {
        pending = Buffer.concat([pending, d]);
        if (pending.length >= frame.length) {
          pending = pending.subarray(frame.length);
          waiting?.();
        }
      });
      while (performance.now() < endMs) {
        const t0 = performance.now();
        await new Promise((r) => {
          waiting = r;
          socket.write(frame);
        });
        latencies.push(performance.now() - t0);
      }
      socket.destroy();
    }),
  );
  await stop(server);
  latencies.sort((a, b) => a - b);
  const result = {
    opsPerSecond: latencies.length / seconds,
    p50Ms: latencies[Math.floor(latencies.length / 2)] ?? 0,
    p99Ms: latencies[Math.floor(latencies.length * 0.99)] ?? 0,
    failed: 0,
  };
  process.stdout.write(
    `raw TCP request/response (128 B, ${clients} connections, ${seconds} s), the floor:\n  raw TCP       ${fmt(result)}\n`,
  );
  return result;
}

const only = args.includes("--only") ? args[args.indexOf("--only") + 1] : undefined;
const parts = [
  "n4",
  "n6",
  "reads",
  "transfer",
  "rolling",
  "checkpoint",
  "flood",
  "large",
  "pieces",
];
if (only !== undefined && !parts.includes(only)) {
  process.stderr.write(`--only: expected one of ${parts.join(", ")}, got "${only}"\n`);
  process.exit(2);
}
const runs = (part) => only === undefined || only === part;
const floor = await rawTcp();
if (runs("n4")) await throughput(4, 1, 0);
if (runs("n6")) await throughput(6, 1, 1);
if (runs("reads")) await throughput(6, 1, 1, "reads");
if (runs("transfer")) await stateTransfer();
if (runs("rolling")) await rollingRepeated();
if (runs("checkpoint")) await checkpointWrites();
if (runs("flood")) await flood();
if (runs("large")) await largeWrites();
if (runs("pieces")) await piecedTransfer();
