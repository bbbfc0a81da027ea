/**
 * Every process the rig starts is written down (a pid file in the run folder)
 * and killed when the rig stops, however it stops: a normal end, Ctrl-C, an
 * uncaught error. If the rig itself was killed outright, the next rig on the
 * same folder (or `smw rig down`) reaps what the file names, after checking
 * that each pid still runs a program of this rig (pids are reused).
 */
import type { ChildProcess } from "node:child_process";
import { appendFileSync, existsSync, readFileSync, rmSync } from "node:fs";

interface Entry {
  pid: number;
  /** A process group of its own: killing it takes its children too. */
  group: boolean;
  tag: string;
}

export class ProcessRegistry {
  private readonly live = new Map<number, Entry>();
  private readonly onExit = () => this.killAllNow();

  constructor(private readonly pidFile: string) {
    process.on("exit", this.onExit);
  }

  add(child: ChildProcess, tag: string, group: boolean): void {
    // A process that could not start, or a message to a board just killed (EPIPE): what it
    // means shows where the rig waits for the process, and unheard it would end the rig.
    child.on("error", () => {});
    const pid = child.pid;
    if (pid === undefined) return;
    const entry = { pid, group, tag };
    this.live.set(pid, entry);
    appendFileSync(this.pidFile, `${JSON.stringify(entry)}\n`);
    child.once("exit", () => this.live.delete(pid));
  }

  /** SIGKILL everything still alive, synchronously (safe in an exit handler). */
  killAllNow(): void {
    for (const entry of this.live.values()) killEntry(entry);
    this.live.clear();
  }

  /** Kills every process, waits for them to be gone, removes the pid file. */
  async close(): Promise<void> {
    const pids = [...this.live.keys()];
    this.killAllNow();
    await waitGone(pids, 3_000);
    rmSync(this.pidFile, { force: true });
    process.off("exit", this.onExit);
  }

  /** Kills what an earlier rig on this folder left running; returns how many. */
  /** `markers`: texts one of which every process of that rig has on its command line. */
  static reap(pidFile: string, markers: readonly string[]): number {
    if (!existsSync(pidFile)) return 0;
    let reaped = 0;
    for (const line of readFileSync(pidFile, "utf8").split("\n")) {
      if (line.trim() === "") continue;
      let entry: Entry;
      try {
        entry = JSON.parse(line) as Entry;
      } catch {
        continue;
      }
      if (!Number.isInteger(entry.pid) || entry.pid <= 1) continue;
      const commandLine = commandLineOf(entry.pid);
      if (!markers.some((m) => commandLine.includes(m))) continue;
      killEntry(entry);
      reaped++;
    }
    rmSync(pidFile, { force: true });
    return reaped;
  }
}

function killEntry(entry: Entry): void {
  try {
    process.kill(entry.group ? -entry.pid : entry.pid, "SIGKILL");
  } catch {
    // Already gone.
  }
}

function commandLineOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\u0000", " ");
  } catch {
    return "";
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitGone(pids: readonly number[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (pids.some(alive) && Date.now() < deadline)
    await new Promise((resolve) => setTimeout(resolve, 20));
}
