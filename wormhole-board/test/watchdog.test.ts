/**
 * A board daemon feeds its watchdog while its core ticks, and stops when its event loop stalls
 * or its timer chain breaks (the loop still running); a clean stop disarms it ("V", the magic
 * close). The daemon runs in a child process writing to a FIFO that stands for /dev/watchdog;
 * this process timestamps what arrives.
 */
import { spawn, spawnSync } from "node:child_process";
import { createReadStream, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { type SystemdNotify, systemdNotifyFromEnvironment } from "@smw/wiring/cli";
import { afterAll, describe, expect, it } from "vitest";
import { makeTestbed6, socatUnavailable } from "../src/index.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.resolve(here, "../dist/index.js");
const distCli = path.resolve(here, "../dist/cli/index.js");
const dir = mkdtempSync(path.join(tmpdir(), "smw-watchdog-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const noSocat = socatUnavailable();

/** Runs one board daemon with the FIFO as its watchdog, then the `script` of events; returns what arrived when. */
async function run(script: string): Promise<{
  feeds: number[];
  disarmedAtMs: number | undefined;
  marks: Map<string, number>;
  code: number | null;
  stderr: string;
}> {
  const fifo = path.join(dir, `watchdog-${Math.random().toString(36).slice(2)}`);
  expect(spawnSync("mkfifo", [fifo]).status).toBe(0);
  const child = spawn(
    process.execPath,
    [
      "--input-type=module",
      "-e",
      `
      import { createRequire } from "node:module";
      const board = await import(${JSON.stringify(dist)});
      const { openBoardDaemon } = await import(${JSON.stringify(distCli)});
      const { pino } = createRequire(${JSON.stringify(dist)})("pino");
      const mark = (name) => process.stdout.write(name + "\\n");
      const bed = await board.makeTestbed6("udp", "free");
      const spec = bed.testbed.boards[0];
      const daemon = await openBoardDaemon(bed.testbed, spec, {
        log: pino({ level: "silent" }),
        watchdogs: [new board.HardwareWatchdog(${JSON.stringify(fifo)})],
      });
      const lines = board.BoardLines.claim(spec, new board.SimulatedLines(), { levels: "safe" });
      daemon.run(lines);
      mark("running");
      const stop = async () => {
        await daemon.stop();
        lines.releaseAll();
        mark("stopped");
        await bed.close();
        process.exit(0);
      };
      ${script}
      `,
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  const feeds: number[] = [];
  let disarmedAtMs: number | undefined;
  const marks = new Map<string, number>();
  const started = performance.now();
  createReadStream(fifo).on("data", (chunk: string | Buffer) => {
    const at = performance.now() - started;
    for (const byte of Buffer.from(chunk)) {
      if (byte === 0) feeds.push(at);
      else if (byte === "V".charCodeAt(0)) disarmedAtMs = at;
    }
  });
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  let pending = "";
  child.stdout.on("data", (chunk: Buffer) => {
    pending += chunk.toString();
    const parts = pending.split("\n");
    pending = parts.pop() ?? "";
    for (const name of parts) marks.set(name, performance.now() - started);
  });
  const code = await new Promise<number | null>((resolve) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    child.on("exit", (exitCode) => {
      clearTimeout(timer);
      resolve(exitCode);
    });
  });
  // What the FIFO still held.
  await new Promise((resolve) => setTimeout(resolve, 100));
  return { feeds, disarmedAtMs, marks, code, stderr };
}

const between = (feeds: number[], fromMs: number, toMs: number) =>
  feeds.filter((at) => at > fromMs && at < toMs).length;

describe.skipIf(noSocat !== undefined)("the board's watchdog", () => {
  it("is fed while the board runs, not while its event loop stalls, and disarmed on a clean stop", async () => {
    const result = await run(`
      setTimeout(() => {
        mark("stall");
        const end = performance.now() + 2500;
        while (performance.now() < end) {}
        mark("resume");
        setTimeout(stop, 2500);
      }, 2500);`);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    const running = result.marks.get("running") as number;
    const stall = result.marks.get("stall") as number;
    const resume = result.marks.get("resume") as number;
    const stopped = result.marks.get("stopped") as number;
    // Fed every second from the start.
    expect(between(result.feeds, running - 50, stall)).toBeGreaterThanOrEqual(2);
    // Nothing while stalled (the stall mark is written first; what the loop owed arrives after).
    expect(between(result.feeds, stall + 100, resume - 100)).toBe(0);
    expect(between(result.feeds, resume, stopped)).toBeGreaterThanOrEqual(2);
    expect(result.disarmedAtMs).toBeDefined();
    expect(result.feeds.every((at) => at < (result.disarmedAtMs as number))).toBe(true);
  }, 40_000);

  it("stops feeding when the core's timer chain breaks, though the event loop runs on", async () => {
    // The daemon's timer, cancelled from outside: a broken chain (the loop stays busy with
    // other timers, as a daemon waiting on a promise that never settles would be).
    const result = await run(`
      setTimeout(() => {
        daemon.timer.cancel();
        mark("broken");
        const alive = setInterval(() => {}, 50);
        setTimeout(async () => {
          clearInterval(alive);
          mark("still-broken");
          // Dies without stopping the daemon (no magic close); the testbed's socats go with it.
          await bed.close();
          process.exit(3);
        }, 3500);
      }, 2500);`);
    expect(result.code).toBe(3);
    const broken = result.marks.get("broken") as number;
    const end = result.marks.get("still-broken") as number;
    expect(between(result.feeds, 0, broken)).toBeGreaterThanOrEqual(2);
    // The core woke last at most a heartbeat before; fed until the bound (silence bound 600 ms +
    // procMax 200 ms) passes, then never again: at most one feed after the break.
    expect(between(result.feeds, broken, end)).toBeLessThanOrEqual(1);
    // Not disarmed: the process died without a clean stop, so the watchdog would fire.
    expect(result.disarmedAtMs).toBeUndefined();
  }, 40_000);

  it("smw board run --watchdog: a SIGTERM (systemctl stop) disarms it, so the board is not rebooted", async () => {
    const bed = await makeTestbed6("udp", "free");
    const fifo = path.join(dir, "cli-watchdog");
    expect(spawnSync("mkfifo", [fifo]).status).toBe(0);
    const child = spawn(
      process.execPath,
      [
        path.join(here, "../../bin/smw.js"),
        "board",
        "run",
        "--testbed",
        bed.file,
        "--board",
        "b1",
        "--watchdog",
        fifo,
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let logged = "";
    child.stdout?.on("data", (chunk: Buffer) => {
      logged += chunk.toString();
    });
    let received = "";
    createReadStream(fifo).on("data", (chunk: string | Buffer) => {
      received += Buffer.from(chunk).toString("latin1");
    });
    try {
      const started = Date.now();
      while ((received.match(/\0/g)?.length ?? 0) < 2 && Date.now() - started < 15_000)
        await new Promise((resolve) => setTimeout(resolve, 50));
      expect(received.match(/\0/g)?.length ?? 0).toBeGreaterThanOrEqual(2);
      child.kill("SIGTERM");
      const code = await new Promise((resolve) =>
        child.on("exit", (c, signal) => resolve(c ?? signal)),
      );
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(code).toBe(143);
      expect(received.endsWith("V")).toBe(true);
      // The daemon's own stop ran before the lines' safe exit ended the process.
      expect(logged).toContain("stopping: no more certificates or leases");
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
      await bed.close();
    }
  }, 40_000);

  it("speaks systemd's notify protocol: READY, WATCHDOG at half WatchdogSec, STOPPING", async () => {
    const socket = path.join(dir, "notify.sock");
    // systemd's end: a Unix datagram socket, each datagram printed on a line of its own.
    const receiver = spawn("socat", ["-u", `UNIX-RECV:${socket}`, "STDOUT"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let heard = "";
    receiver.stdout.on("data", (chunk: Buffer) => {
      heard += chunk.toString();
    });
    try {
      const started = Date.now();
      while (!existsSync(socket) && Date.now() - started < 5_000)
        await new Promise((resolve) => setTimeout(resolve, 20));
      const notify = systemdNotifyFromEnvironment({
        NOTIFY_SOCKET: socket,
        WATCHDOG_USEC: "4000000",
        WATCHDOG_PID: String(process.pid),
      }) as SystemdNotify;
      expect(notify.feedIntervalMs).toBe(2_000);
      notify.ready();
      notify.feed();
      notify.close();
      const until = Date.now() + 5_000;
      while (!heard.includes("STOPPING=1") && Date.now() < until)
        await new Promise((resolve) => setTimeout(resolve, 20));
      expect(heard).toContain("READY=1");
      expect(heard).toContain("WATCHDOG=1");
      expect(heard).toContain("STOPPING=1");
      expect(heard.indexOf("READY=1")).toBeLessThan(heard.indexOf("WATCHDOG=1"));
    } finally {
      receiver.kill();
    }
    // Another process's watchdog is not this one's to feed.
    const other = systemdNotifyFromEnvironment({
      NOTIFY_SOCKET: socket,
      WATCHDOG_USEC: "4000000",
      WATCHDOG_PID: "1",
    }) as SystemdNotify;
    expect(other.feedIntervalMs).toBe(Number.POSITIVE_INFINITY);
    other.close();
  });

  it("refuses to start under systemd without socat, rather than never saying READY", () => {
    const path0 = process.env.PATH;
    process.env.PATH = path.join(dir, "no-tools-here");
    try {
      expect(() => systemdNotifyFromEnvironment({ NOTIFY_SOCKET: "/run/systemd/notify" })).toThrow(
        /NOTIFY_SOCKET is set\) but socat, which carries them, is not installed/,
      );
    } finally {
      process.env.PATH = path0;
    }
    expect(systemdNotifyFromEnvironment({})).toBeUndefined();
  });
});
