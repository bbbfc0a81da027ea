/**
 * A simulated payload host driven as a process tree booted from its own disk folder.
 * Its board's reset (or power) line asserted kills it at once (SIGKILL to the
 * whole process group: memory lost, the stable-storage folder kept); released,
 * it boots what its SM code image says to run. Faults the rig can inject: a
 * boot that hangs, and a host that stalls (SIGSTOP) right after its key is
 * certified, so its state transfer overruns T_transfer.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { setPriority } from "node:os";
import { createInterface } from "node:readline";
import { parseStateNote } from "@smw/host-agent";
import type { Board, Host, Level, LineRole, Testbed } from "@smw/wiring";
import type { HostDriver } from "./host-driver.js";
import type { HostNetwork } from "./host-network.js";
import type { ProcessRegistry } from "./process-registry.js";
import type { RigEventSink } from "./rig-events.js";
import { decodeSmImage } from "./sm-image.js";

export interface ProcessHostOptions {
  testbed: Testbed;
  host: Host;
  board: Board;
  /** argv that runs `smw` (node and the bin script). */
  smw: readonly string[];
  /** The payload network its programs run on. */
  network: HostNetwork;
  registry: ProcessRegistry;
  events: RigEventSink;
  /** Every line the host's programs print. */
  console: (line: string) => void;
}

export class ProcessHost implements HostDriver {
  private process: ChildProcess | undefined;
  private resetAsserted = false;
  private powered = true;
  private booted = 0;
  /** Fault: the next boots hang before the agent starts. */
  bootHang = false;
  /** Fault: after its key is certified the host stalls this long (0: it does not). */
  stallAfterCertificateMs = 0;
  /** Fault: done to the host's disk while it is down, just before it next boots (then forgotten). */
  beforeNextBoot: (() => void) | undefined;

  constructor(private readonly options: ProcessHostOptions) {}

  get id(): string {
    return this.options.host.id;
  }

  /** The pid of its first program (its process group), while it runs. */
  get pid(): number | undefined {
    return this.process?.pid;
  }

  /** Held in reset or powered off. */
  get held(): boolean {
    return this.resetAsserted || !this.powered;
  }

  /** A line of this host's board changed level. */
  onLine(role: LineRole, level: Level): void {
    if (role === "reset") this.resetAsserted = level === "active";
    else if (role === "power") this.powered = level === "active";
    else return;
    this.options.events.emit({ kind: "line", host: this.id, role, level });
    if (!this.powered || this.resetAsserted) {
      if (this.process !== undefined) {
        this.kill();
        this.options.events.emit({
          kind: "host-down",
          host: this.id,
          detail: this.powered ? "held in reset" : "powered off",
        });
      }
    } else if (this.process === undefined) {
      this.boot();
    }
  }

  /** An intruder replaces the running code with what is now on the disk: a reboot outside the board's control. */
  rebootFromDisk(): void {
    if (this.process !== undefined) this.kill();
    if (this.powered && !this.resetAsserted) this.boot();
  }

  private kill(): void {
    const child = this.process;
    this.process = undefined;
    if (child?.pid === undefined) return;
    try {
      process.kill(-child.pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }

  private boot(): void {
    const host = this.options.host;
    const tamper = this.beforeNextBoot;
    this.beforeNextBoot = undefined;
    tamper?.();
    let image: Buffer;
    try {
      image = readFileSync(this.options.board.images.sm.live);
    } catch (error) {
      this.options.events.emit({
        kind: "host-boot-failed",
        host: host.id,
        detail: `cannot read its SM code image: ${(error as Error).message}`,
      });
      return;
    }
    const decoded = decodeSmImage(image);
    if ("error" in decoded) {
      this.options.events.emit({
        kind: "host-boot-failed",
        host: host.id,
        detail: `its SM code image does not boot: ${decoded.error}`,
      });
      return;
    }
    if (this.bootHang) {
      this.options.events.emit({
        kind: "host-boot-failed",
        host: host.id,
        detail: "boot hangs (fault)",
      });
      return;
    }
    const first = this.booted === 0;
    this.booted++;
    const program = decoded.program;
    const args =
      program.kind === "host-agent"
        ? [
            "host",
            "run",
            "--testbed",
            this.options.testbed.file,
            "--host",
            host.id,
            ...(first ? ["--initial"] : []),
          ]
        : [
            "rig",
            "byzantine-host",
            "--testbed",
            this.options.testbed.file,
            "--host",
            host.id,
            "--behaviours",
            program.behaviours.join(","),
          ];
    const [command, ...rest] = this.options.network.wrap(host.id, [...this.options.smw, ...args]);
    const child = spawn(command as string, rest, {
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.process = child;
    this.options.registry.add(child, `host ${host.id}`, true);
    // The boards are separate hardware: on this one machine they must not wait for the hosts.
    try {
      if (child.pid !== undefined) setPriority(child.pid, 19);
    } catch {
      // Not allowed to lower priority: run as is.
    }
    child.on("error", (error) =>
      this.options.events.emit({ kind: "host-boot-failed", host: host.id, detail: error.message }),
    );
    for (const stream of [child.stdout, child.stderr]) {
      if (stream === null) continue;
      createInterface({ input: stream }).on("line", (line) => this.onConsole(child, line));
    }
    this.options.events.emit({
      kind: "host-up",
      host: host.id,
      detail:
        program.kind === "host-agent"
          ? `booted the host agent${first ? " (first start: empty state)" : ""}`
          : `booted a BYZANTINE replica (${program.behaviours.join(", ")})`,
    });
  }

  private onConsole(child: ChildProcess, line: string): void {
    this.options.console(`${this.id}: ${line}`);
    if (child !== this.process) return;
    const note = parseStateNote(line);
    if (note !== undefined) this.options.events.emit({ kind: "host-state", host: this.id, note });
    if (this.stallAfterCertificateMs > 0 && line.includes("key certified by board")) {
      const pid = child.pid as number;
      const stallMs = this.stallAfterCertificateMs;
      try {
        process.kill(-pid, "SIGSTOP");
      } catch {
        return;
      }
      this.options.events.emit({
        kind: "fault",
        host: this.id,
        detail: `host stalls for ${stallMs} ms after its key is certified (state transfer slowed)`,
      });
      setTimeout(() => {
        try {
          process.kill(-pid, "SIGCONT");
        } catch {
          // Gone meanwhile (reset).
        }
      }, stallMs).unref();
    }
  }

  /** Kills the host's processes (the rig is going down). */
  stop(): void {
    this.kill();
  }
}
