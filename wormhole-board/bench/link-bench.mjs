// Benchmark of the control link and the timely core (npm run bench -- link [--seconds N]).
// Round trip of an authenticated frame over UDP loopback and over a socat PTY
// pair, against the same round trip of raw lines without framing or HMAC;
// group hand-off latency (DONE sent to the next group's start); trigger
// lateness of the timely core, idle, with both cores loaded, and while a whole
// image is restored, against setInterval's drift over the same time; the time
// from a fault to every host held, also with 30% of control frames lost.
import { spawn } from "node:child_process";
import { generateKeyPairSync, randomBytes, randomFillSync } from "node:crypto";
import { createSocket } from "node:dgram";
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  rmSync,
  truncateSync,
  writeSync,
} from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import path from "node:path";
import { encodeControlFrame, LineSplitter } from "@smw/wiring";
import { pino } from "pino";
import { SerialPort } from "serialport";
import { ensureToolsOrExit, RIG_TOOLS } from "../../scripts/tools.mjs";
import { openBoardDaemon } from "../dist/cli/index.js";
import {
  BoardLines,
  ControlLink,
  DeadlineTimer,
  filteredTransport,
  GroupSchedule,
  makeTestbed6,
  raiseEventLoopPriority,
  restoreImage,
  SerialLinksTransport,
  SimulatedLines,
  sealImage,
  TimelyCore,
  UdpTransport,
} from "../dist/index.js";
import { throttledTarget } from "./throttled-target.mjs";

const restoreFlag = process.argv.indexOf("--restore-mib");
const RESTORE_MIB = restoreFlag > 0 ? Number(process.argv[restoreFlag + 1]) : 1024;
const throttleFlag = process.argv.indexOf("--throttle-mibps");
const THROTTLE_MIBPS = throttleFlag > 0 ? Number(process.argv[throttleFlag + 1]) : 25;
const secondsFlag = process.argv.indexOf("--seconds");
const SECONDS = secondsFlag > 0 ? Number(process.argv[secondsFlag + 1]) : 60;
const ROUNDS = 2_000;
ensureToolsOrExit("link bench", RIG_TOOLS);
// This process stands for a board: its event loop at the priority `smw board run` gives it.
// As `smw board run` sets it (SCHED_FIFO too where permitted); --no-realtime as `smw board run --no-realtime`.
const priority = raiseEventLoopPriority({ realtime: !process.argv.includes("--no-realtime") });
const dir = mkdtempSync(path.join(tmpdir(), "smw-bench-link-"));
const children = [];
process.on("exit", () => {
  for (const child of children) child.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

const percentile = (values, p) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
};
const fmt = (ms) => `${ms.toFixed(3)} ms`;
const summary = (values) => ({
  p50: percentile(values, 50),
  p99: percentile(values, 99),
  max: Math.max(...values),
});

async function ptyPair(a, b) {
  const child = spawn("socat", [`pty,raw,echo=0,link=${a}`, `pty,raw,echo=0,link=${b}`], {
    stdio: "ignore",
  });
  children.push(child);
  while (!(existsSync(a) && existsSync(b))) await new Promise((r) => setTimeout(r, 10));
  return child;
}

async function freePort() {
  const s = createSocket("udp4");
  await new Promise((r) => s.bind(0, "127.0.0.1", r));
  const port = s.address().port;
  await new Promise((r) => s.close(r));
  return port;
}

/** Ping-pong of HB frames between two control links; returns round trips in ms. */
async function linkRoundTrips(t1, t2) {
  const key = randomBytes(32);
  const a = new ControlLink("b1", new Map([["b2", key]]), 1, t1);
  const b = new ControlLink("b2", new Map([["b1", key]]), 1, t2);
  let resolveReply;
  await a.open({ message: () => resolveReply?.(), authFailure: () => {} });
  await b.open({ message: (from, m) => b.send(from, m), authFailure: () => {} });
  const rtts = [];
  for (let i = 0; i < ROUNDS; i++) {
    const reply = new Promise((r) => {
      resolveReply = r;
    });
    const started = performance.now();
    a.send("b2", heartbeat(i));
    await reply;
    rtts.push(performance.now() - started);
  }
  await a.close();
  await b.close();
  return rtts;
}

/** The same round trip with raw lines: no framing, no HMAC. */
async function rawUdpRoundTrips(size) {
  const a = createSocket("udp4");
  const b = createSocket("udp4");
  await new Promise((r) => a.bind(0, "127.0.0.1", r));
  await new Promise((r) => b.bind(0, "127.0.0.1", r));
  b.on("message", (data, info) => b.send(data, info.port, info.address));
  let resolveReply;
  a.on("message", () => resolveReply?.());
  const line = Buffer.alloc(size, 0x61);
  const rtts = [];
  for (let i = 0; i < ROUNDS; i++) {
    const reply = new Promise((r) => {
      resolveReply = r;
    });
    const started = performance.now();
    a.send(line, b.address().port, "127.0.0.1");
    await reply;
    rtts.push(performance.now() - started);
  }
  a.close();
  b.close();
  return rtts;
}

async function rawPtyRoundTrips(pathA, pathB, size) {
  const a = new SerialPort({ path: pathA, baudRate: 115200 });
  const b = new SerialPort({ path: pathB, baudRate: 115200 });
  await Promise.all([new Promise((r) => a.on("open", r)), new Promise((r) => b.on("open", r))]);
  const echo = new LineSplitter(4096, (text) => b.write(`${text}\n`));
  b.on("data", (chunk) => echo.push(chunk));
  let resolveReply;
  const back = new LineSplitter(4096, () => resolveReply?.());
  a.on("data", (chunk) => back.push(chunk));
  const line = `${"a".repeat(size - 1)}\n`;
  const rtts = [];
  for (let i = 0; i < ROUNDS; i++) {
    const reply = new Promise((r) => {
      resolveReply = r;
    });
    const started = performance.now();
    a.write(line);
    await reply;
    rtts.push(performance.now() - started);
  }
  await Promise.all([new Promise((r) => a.close(r)), new Promise((r) => b.close(r))]);
  return rtts;
}

/** DONE from the last board of group 1 to the start of group 2 on the next board. */
async function handoffs(t1, t2) {
  const key = randomBytes(32);
  const a = new ControlLink("b1", new Map([["b2", key]]), 1, t1);
  const b = new ControlLink("b2", new Map([["b1", key]]), 1, t2);
  let schedule;
  let resolveStart;
  await a.open({ message: () => {}, authFailure: () => {} });
  await b.open({
    message: (from, m) => {
      if (m.type !== "DONE") return;
      const out = schedule.boardDone(from, m.period, performance.now());
      if (out.some((o) => o.kind === "startRecovery")) resolveStart?.();
    },
    authFailure: () => {},
  });
  const times = [];
  for (let i = 0; i < ROUNDS / 2; i++) {
    schedule = new GroupSchedule({
      self: "b2",
      groups: [["b1"], ["b2"]],
      tLocalexecMs: 10_000,
      handoffMs: 20,
    });
    schedule.periodStarted(i, performance.now());
    const started = new Promise((r) => {
      resolveStart = r;
    });
    const t0 = performance.now();
    a.send("b2", { type: "DONE", period: i, schedule: 0 });
    await started;
    times.push(performance.now() - t0);
  }
  await a.close();
  await b.close();
  return times;
}

/** Trigger lateness of the timely core on chained absolute timers, for `seconds` or until `until` settles. */
async function timelyLateness(seconds, until) {
  let stopped = false;
  until?.finally(() => {
    stopped = true;
  });
  const periodMs = 50;
  const newCore = (firstTriggerMs) =>
    new TimelyCore({ tPMs: periodMs, tDMs: 20, latenessBoundMs: 2, firstTriggerMs });
  let core = newCore(performance.now() + 100);
  const lateness = [];
  const endAt = performance.now() + seconds * 1000;
  // The board daemon's own timer (DeadlineTimer), so the figure is the daemon's.
  const timer = new DeadlineTimer(() => performance.now());
  await new Promise((resolve) => {
    const arm = () => {
      const wake = core.nextWakeupMs();
      timer.arm(wake, (now) => {
        for (const out of core.tick(now)) {
          if (out.kind === "trigger") {
            lateness.push(out.latenessMs);
            core.done(out.index, now);
          } else {
            // Over the core's 2 ms bound: counted as it was, then measuring goes on afresh.
            lateness.push(now - wake);
            core = newCore(now + periodMs);
          }
        }
        if (until === undefined ? now >= endAt : stopped) resolve();
        else arm();
      });
    };
    arm();
  });
  return lateness;
}

/** The reference: setInterval's drift from the absolute schedule over the same time. */
async function setIntervalDrift(seconds, until) {
  let stopped = false;
  until?.finally(() => {
    stopped = true;
  });
  const periodMs = 50;
  const start = performance.now();
  let ticks = 0;
  const drift = [];
  await new Promise((resolve) => {
    const id = setInterval(() => {
      ticks++;
      drift.push(performance.now() - (start + ticks * periodMs));
      if (until === undefined ? ticks * periodMs >= seconds * 1000 : stopped) {
        clearInterval(id);
        resolve();
      }
    }, periodMs);
  });
  return drift;
}

function cpuLoad() {
  const burners = [];
  for (let i = 0; i < availableParallelism(); i++) {
    const child = spawn(process.execPath, ["-e", "for(;;){}"], { stdio: "ignore" });
    children.push(child);
    burners.push(child);
  }
  return () => {
    for (const b of burners) b.kill("SIGKILL");
  };
}

/** Six daemons in this process over UDP with simulated lines; resolves once all run. */
async function sixDaemons(basePort, lossFraction = 0) {
  const bed = await makeTestbed6("udp", basePort);
  const sim = new SimulatedLines();
  const t = bed.testbed;
  const daemons = [];
  for (const board of t.boards) {
    // Built as `smw board run` builds it.
    const daemon = await openBoardDaemon(t, board, {
      log: pino({ level: "silent" }),
      alerts: { webhook: async () => {}, exec: () => {} },
      ...(lossFraction > 0
        ? {
            wrapTransport: (inner) => filteredTransport(inner, () => Math.random() >= lossFraction),
          }
        : {}),
    });
    await daemon.start(BoardLines.claim(board, sim));
    daemons.push(daemon);
  }
  while (!daemons.every((d) => d.currentPhase === "running"))
    await new Promise((r) => setTimeout(r, 5));
  const resetAt = new Map();
  sim.onChange((e) => {
    if (e.role === "reset" && e.level === "active" && !resetAt.has(e.chip))
      resetAt.set(e.chip, performance.now());
  });
  return {
    daemons,
    resetAt,
    async close() {
      for (const d of daemons) await d.stop();
      await bed.close();
    },
  };
}

/** Five frames claiming to be b6's, under a key nobody holds, to b1's control port. */
function sendForged(socket, port) {
  for (let n = 0; n < 5; n++) {
    const frame = encodeControlFrame(
      {
        from: "b6",
        to: "b1",
        epoch: 999,
        seq: n + 1,
        type: "HB",
        body: { period: 0, schedule: 0, joined: true },
      },
      randomBytes(32),
    );
    socket.send(frame, port, "127.0.0.1");
  }
}

/** From a fault to every host held in reset: forged frames (detected at once) and a dead board (detected by silence). */
async function faultToReset(rounds) {
  const forged = [];
  const dead = [];
  for (let i = 0; i < rounds; i++) {
    const rig = await sixDaemons(18000 + i * 20);
    const raw = createSocket("udp4");
    const t0 = performance.now();
    sendForged(raw, 18000 + i * 20 + 1);
    while (rig.resetAt.size < 6) await new Promise((r) => setTimeout(r, 1));
    forged.push(Math.max(...rig.resetAt.values()) - t0);
    raw.close();
    await rig.close();

    const rig2 = await sixDaemons(18010 + i * 20);
    const victim = rig2.daemons[5];
    const t1 = performance.now();
    await victim.stop();
    while ([...rig2.resetAt.keys()].filter((c) => c !== "sim-b6").length < 5)
      await new Promise((r) => setTimeout(r, 1));
    dead.push(
      Math.max(...[...rig2.resetAt.entries()].filter(([c]) => c !== "sim-b6").map(([, at]) => at)) -
        t1,
    );
    await rig2.close();
  }
  return { forged, dead };
}

/**
 * From a fault to every host held with `lossFraction` of control frames lost: the fail-safe
 * reaches each board by FAILSAFE or by any later heartbeat, or by the silence bound.
 */
async function faultToResetLossy(rounds, lossFraction) {
  const times = [];
  let spurious = 0;
  for (let i = 0; i < rounds; i++) {
    const rig = await sixDaemons(18200 + i * 20, lossFraction);
    // Let the boards run a moment: a silence the loss itself caused shows here, not as a result.
    await new Promise((r) => setTimeout(r, 500));
    if (rig.daemons.some((d) => d.failsafeState !== undefined)) {
      spurious++;
      await rig.close();
      continue;
    }
    const raw = createSocket("udp4");
    const t0 = performance.now();
    sendForged(raw, 18200 + i * 20 + 1);
    while (rig.resetAt.size < 6) await new Promise((r) => setTimeout(r, 1));
    times.push(Math.max(...rig.resetAt.values()) - t0);
    raw.close();
    await rig.close();
  }
  return { times, spurious };
}

/** Timer lateness while a whole image of `mib` MiB, every chunk corrupted, is restored. */
async function restoreLateness(mib, liveDir = dir) {
  const golden = path.join(dir, "golden.img");
  const live = path.join(liveDir, "live.img");
  const fd = openSync(golden, "w");
  const piece = Buffer.allocUnsafe(16 * 1024 * 1024);
  for (let written = 0; written < mib * 1024 * 1024; written += piece.length) {
    randomFillSync(piece);
    writeSync(fd, piece, 0, Math.min(piece.length, mib * 1024 * 1024 - written));
  }
  closeSync(fd);
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const manifest = sealImage({ goldenPath: golden, privateKey, publicKey });
  // The live copy: zeros everywhere, so every chunk is rewritten.
  closeSync(openSync(live, "w"));
  truncateSync(live, mib * 1024 * 1024);
  let result;
  const restoring = restoreImage({ livePath: live, goldenPath: golden, manifest }).then((r) => {
    result = r;
  });
  const [lateness, drift] = await Promise.all([
    timelyLateness(0, restoring),
    setIntervalDrift(0, restoring),
  ]);
  await restoring;
  rmSync(golden);
  rmSync(live);
  return { lateness, drift, result };
}

/** A heartbeat as a running daemon sends it: its clock, the echo of the peer's, how long it held it. */
function heartbeat(period) {
  const now = Date.now() + 0.123456;
  return {
    type: "HB",
    period,
    schedule: Math.floor(now) - 3_600_000,
    joined: true,
    sentAtMs: now,
    echoMs: now - 97.654321,
    heldMs: 3.210987,
  };
}

// Bytes on the wire of the frames a hand-off and a heartbeat take, a day into a run (sequence
// numbers of six digits), and what a 115200-baud line (10 bits a byte) adds to each.
const { type: _hb, ...hbBody } = heartbeat(1234);
const frameBytes = {
  HB: encodeControlFrame(
    { from: "b1", to: "b6", epoch: 12, seq: 864_000, type: "HB", body: hbBody },
    randomBytes(32),
  ).length,
  DONE: encodeControlFrame(
    {
      from: "b1",
      to: "b6",
      epoch: 12,
      seq: 864_000,
      type: "DONE",
      body: { period: 1234, schedule: Date.now() - 3_600_000 },
    },
    randomBytes(32),
  ).length,
};
const wireMs = (bytes) => (bytes * 10 * 1000) / 115_200;

const out = [];
// UDP loopback.
const [p1, p2] = [await freePort(), await freePort()];
const udp = () => [
  new UdpTransport("127.0.0.1", p1, new Map([["b2", { address: "127.0.0.1", port: p2 }]])),
  new UdpTransport("127.0.0.1", p2, new Map([["b1", { address: "127.0.0.1", port: p1 }]])),
];
const udpLink = summary(await linkRoundTrips(...udp()));
const udpRaw = summary(await rawUdpRoundTrips(frameBytes.HB));
const udpHandoff = summary(await handoffs(...udp()));
// PTY pair.
const a = path.join(dir, "a");
const b = path.join(dir, "b");
await ptyPair(a, b);
const pty = () => [
  new SerialLinksTransport(new Map([["b2", a]]), 115200),
  new SerialLinksTransport(new Map([["b1", b]]), 115200),
];
const ptyLink = summary(await linkRoundTrips(...pty()));
const ptyHandoff = summary(await handoffs(...pty()));
const c = path.join(dir, "c");
const d = path.join(dir, "d");
await ptyPair(c, d);
const ptyRaw = summary(await rawPtyRoundTrips(c, d, frameBytes.HB));

process.stderr.write(
  `measuring timer lateness: ${SECONDS} s idle, then ${SECONDS} s with every core loaded ...\n`,
);
const [idle, idleRef] = await Promise.all([timelyLateness(SECONDS), setIntervalDrift(SECONDS)]);
const stopLoad = cpuLoad();
const [loaded, loadedRef] = await Promise.all([timelyLateness(SECONDS), setIntervalDrift(SECONDS)]);
stopLoad();
process.stderr.write("measuring the time from a fault to every host held in reset ...\n");
const toReset = await faultToReset(3);
process.stderr.write("measuring the same with 30% of control frames lost ...\n");
const lossy = await faultToResetLossy(5, 0.3);
process.stderr.write(`measuring timer lateness while a ${RESTORE_MIB} MiB image is restored ...\n`);
const restore = await restoreLateness(RESTORE_MIB);
const restoreS = summary(restore.lateness);
// The same onto a disk that takes writes at SD-card speed: the restore's writes and fdatasync
// block for long, in the workers, while the board's timers must still fire on time.
const target = throttledTarget(dir, RESTORE_MIB * 1024 * 1024, THROTTLE_MIBPS * 1024 * 1024);
let throttled;
if ("skipped" in target) {
  process.stderr.write(`write-throttled restore skipped: ${target.skipped}\n`);
} else {
  process.stderr.write(
    `measuring the same onto ${target.device}, writes throttled to ${THROTTLE_MIBPS} MiB/s ...\n`,
  );
  try {
    throttled = await restoreLateness(RESTORE_MIB, target.dir);
  } finally {
    target.close();
  }
}
const throttledS = throttled === undefined ? undefined : summary(throttled.lateness);
const idleS = summary(idle);
const loadedS = summary(loaded);

out.push(
  `smw link benchmark: ${ROUNDS} round trips per transport, ${availableParallelism()} cores, event loop ${"nice" in priority ? `at nice ${priority.nice}${priority.realtime === undefined ? "" : "fifoPriority" in priority.realtime ? `, SCHED_FIFO ${priority.realtime.fifoPriority}` : ` (not real-time: ${priority.realtime.notPermitted})`} (as smw board run${priority.realtime === undefined ? " --no-realtime" : ""} sets it)` : "at normal priority (raising it needs root)"}`,
  "",
  "round trip of one HB frame (framing + HMAC-SHA256 + replay check, both ways)",
  `  UDP loopback   p50 ${fmt(udpLink.p50)}  p99 ${fmt(udpLink.p99)}   raw UDP p50 ${fmt(udpRaw.p50)} p99 ${fmt(udpRaw.p99)}   ratio p50 ${(udpLink.p50 / udpRaw.p50).toFixed(2)}x, p99 ${(udpLink.p99 / udpRaw.p99).toFixed(2)}x`,
  `  socat PTY      p50 ${fmt(ptyLink.p50)}  p99 ${fmt(ptyLink.p99)}   raw PTY p50 ${fmt(ptyRaw.p50)} p99 ${fmt(ptyRaw.p99)}   ratio p50 ${(ptyLink.p50 / ptyRaw.p50).toFixed(2)}x, p99 ${(ptyLink.p99 / ptyRaw.p99).toFixed(2)}x`,
  `  (a PTY does not pace bytes at its baud rate: a real 115200-baud line adds ${wireMs(frameBytes.HB).toFixed(1)} ms to each ${frameBytes.HB}-byte heartbeat, target <= 128 bytes)`,
  "",
  "group hand-off (DONE sent to the next group's start)",
  `  UDP loopback   p50 ${fmt(udpHandoff.p50)}  p99 ${fmt(udpHandoff.p99)}  max ${fmt(udpHandoff.max)}`,
  `  socat PTY      p50 ${fmt(ptyHandoff.p50)}  p99 ${fmt(ptyHandoff.p99)}  max ${fmt(ptyHandoff.max)}   (target p99 <= 5 ms)`,
  `  a DONE frame is ${frameBytes.DONE} bytes: a real 115200-baud line adds ${wireMs(frameBytes.DONE).toFixed(1)} ms to the hand-off`,
  "",
  `trigger lateness of the timely core, ${SECONDS} s, a trigger every 50 ms on chained absolute timers (the daemon's DeadlineTimer)`,
  `  idle           p50 ${fmt(idleS.p50)}  p99 ${fmt(idleS.p99)}  max ${fmt(idleS.max)}   (target p99 <= 2 ms); setInterval drifted ${fmt(idleRef[idleRef.length - 1])} from the same schedule`,
  `  cores loaded   p50 ${fmt(loadedS.p50)}  p99 ${fmt(loadedS.p99)}  max ${fmt(loadedS.max)}   (target p99 <= 2 ms); setInterval drifted ${fmt(loadedRef[loadedRef.length - 1])}`,
  "",
  "from a fault to all six hosts held in reset (six daemons in one process, UDP loopback, heartbeat 100 ms, silence bound 600 ms, delivery bound 20 ms)",
  `  forged frames from one peer   ${toReset.forged.map(fmt).join(", ")}   (target <= delivery bound + 20 ms = 40 ms)`,
  `  a board dies                  ${toReset.dead.map(fmt).join(", ")}   (target <= heartbeat + silence bound + 20 ms = 720 ms)`,
  `  forged frames, 30% of frames lost   ${lossy.times.map(fmt).join(", ")}   (target <= silence bound + delivery bound + 20 ms = 640 ms; the same without loss above)${lossy.spurious > 0 ? `; ${lossy.spurious} round(s) failed safe on a silence the loss caused before the fault` : ""}`,
  "",
  `trigger lateness while a whole ${RESTORE_MIB} MiB image (every chunk corrupted) is restored: check, golden check, writes, fdatasync, read-back in ${(restore.result.checkMs + restore.result.restoreMs).toFixed(0)} ms, ${restore.result.bytesWritten} bytes written`,
  restore.lateness.length === 0
    ? "  during restore: no trigger fell within it (too short; try a larger --restore-mib)"
    : `  during restore p50 ${fmt(restoreS.p50)}  p99 ${fmt(restoreS.p99)}  max ${fmt(restoreS.max)}   (${restore.lateness.length} triggers; target p99 <= 2 ms); setInterval drifted ${fmt(restore.drift[restore.drift.length - 1] ?? 0)}`,
  "skipped" in target
    ? `  onto a write-throttled disk: skipped (${target.skipped})`
    : throttled.lateness.length === 0
      ? "  onto a write-throttled disk: no trigger fell within it"
      : `  onto a disk throttled to ${THROTTLE_MIBPS} MiB/s of writes (a loop device, block I/O cgroup): golden check, writes, fdatasync, read-back in ${(throttled.result.restoreMs / 1000).toFixed(1)} s (${(throttled.result.bytesWritten / 1024 / 1024 / (throttled.result.restoreMs / 1000)).toFixed(1)} MiB/s), p50 ${fmt(throttledS.p50)}  p99 ${fmt(throttledS.p99)}  max ${fmt(throttledS.max)}   (${throttled.lateness.length} triggers; target p99 <= 2 ms); setInterval drifted ${fmt(throttled.drift[throttled.drift.length - 1] ?? 0)}`,
);
process.stdout.write(`${out.join("\n")}\n`);
process.exit(0);
