/**
 * The service manager's watchdog, as both daemons (`smw board run`, `smw host run`) speak to it:
 * systemd's notification socket (`Type=notify`, `WatchdogSec=`) and a feeder on the event loop
 * that feeds every watchdog only while its daemon says it is healthy. A stalled event loop feeds
 * nothing, so the service manager restarts (or, with the board's hardware watchdog, the kernel
 * reboots) what hung.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";

export interface WatchdogSink {
  readonly name: string;
  /** How often it must be fed, at most. */
  readonly feedIntervalMs: number;
  /** The daemon is up (lines claimed, links open). */
  ready(): void;
  feed(): void;
  /** A clean stop: disarmed, so that stopping the service does not reboot the board. */
  close(): void;
}

export class WatchdogError extends Error {
  override name = "WatchdogError";
}

/**
 * systemd's notification socket (`Type=notify`, `WatchdogSec=`), from `NOTIFY_SOCKET` and
 * `WATCHDOG_USEC`. Node has no Unix datagram sockets: one long-lived socat sends what is
 * written to it, each write a datagram of newline-separated assignments. Long-lived, so systemd
 * attributes every message to the service (`NotifyAccess=all`).
 */
export class SystemdNotify implements WatchdogSink {
  readonly name = "systemd";
  readonly feedIntervalMs: number;
  private child: ChildProcess | undefined;

  constructor(socketPath: string, watchdogUsec: number | undefined) {
    // Fed at half the interval systemd expects, as sd_watchdog_enabled(3) advises.
    this.feedIntervalMs =
      watchdogUsec === undefined ? Number.POSITIVE_INFINITY : watchdogUsec / 1000 / 2;
    const address = socketPath.startsWith("@")
      ? `ABSTRACT-SENDTO:${socketPath.slice(1)}`
      : `UNIX-SENDTO:${socketPath}`;
    // socat's own complaints go to the service's log (a pipe nobody read could fill and block it).
    this.child = spawn("socat", ["-u", "STDIN", address], { stdio: ["pipe", "ignore", "inherit"] });
    this.child.on("error", () => {
      this.child = undefined;
    });
    this.child.stdin?.on("error", () => {});
  }

  ready(): void {
    this.send("READY=1\nSTATUS=running");
  }

  feed(): void {
    if (Number.isFinite(this.feedIntervalMs)) this.send("WATCHDOG=1");
  }

  close(): void {
    this.send("STOPPING=1");
    this.child?.stdin?.end();
    this.child = undefined;
  }

  private send(assignments: string): void {
    this.child?.stdin?.write(`${assignments}\n`);
  }
}

/** systemd's watchdog from the environment the service manager gives, if it gives one. */
export function systemdNotifyFromEnvironment(
  env: NodeJS.ProcessEnv = process.env,
): SystemdNotify | undefined {
  const socketPath = env.NOTIFY_SOCKET;
  if (socketPath === undefined || socketPath === "") return undefined;
  // Without socat systemd would never hear READY and kill the service at its start timeout:
  // say so at once instead.
  if (spawnSync("socat", ["-V"], { stdio: "ignore" }).status !== 0)
    throw new WatchdogError(
      "systemd expects notifications (NOTIFY_SOCKET is set) but socat, which carries them, is not installed: apt-get install socat",
    );
  const usec = Number(env.WATCHDOG_USEC);
  // WATCHDOG_PID names the process meant to feed; another process's watchdog is not ours.
  const pid = env.WATCHDOG_PID === undefined ? process.pid : Number(env.WATCHDOG_PID);
  return new SystemdNotify(
    socketPath,
    Number.isFinite(usec) && usec > 0 && pid === process.pid ? usec : undefined,
  );
}

/**
 * Feeds every sink at the shortest interval any asks for, while `healthy()` holds. A timer on
 * the event loop: if the loop stalls, nothing is fed.
 */
export class WatchdogFeeder {
  private interval: NodeJS.Timeout | undefined;
  /** Feeds skipped because the board was not healthy. */
  skipped = 0;

  constructor(
    private readonly sinks: readonly WatchdogSink[],
    private readonly healthy: () => boolean,
  ) {}

  start(): void {
    if (this.interval !== undefined || this.sinks.length === 0) return;
    const everyMs = Math.min(...this.sinks.map((sink) => sink.feedIntervalMs), 1_000);
    for (const sink of this.sinks) sink.ready();
    this.feed();
    this.interval = setInterval(() => this.feed(), everyMs);
  }

  stop(): void {
    if (this.interval !== undefined) clearInterval(this.interval);
    this.interval = undefined;
    for (const sink of this.sinks) {
      try {
        sink.close();
      } catch {
        // On the way out: a sink that cannot close lets its watchdog fire, which is safe.
      }
    }
  }

  private feed(): void {
    if (!this.healthy()) {
      this.skipped++;
      return;
    }
    for (const sink of this.sinks) sink.feed();
  }
}
