/** The rig's handle on one board process: start it, hear its lines and log, skew its clock, stick a line, kill it. */
import { type ChildProcess, fork } from "node:child_process";
import { setPriority } from "node:os";
import { createInterface } from "node:readline";
import type { Level, LineRole } from "@smw/wiring";
import { type BoardToRig, isBoardToRig, type RigToBoard } from "./board-ipc.js";
import type { ProcessRegistry } from "./process-registry.js";
import type { RigEventSink } from "./rig-events.js";

export interface BoardProcessOptions {
  boardId: string;
  testbedFile: string;
  smwBin: string;
  webhookUrl?: string;
  /** How long after the boards start the first period may begin. */
  joinLeadMs?: number;
  registry: ProcessRegistry;
  events: RigEventSink;
  onLine: (role: LineRole, level: Level) => void;
  /** Every line the board prints. */
  console: (line: string) => void;
}

export class BoardProcess {
  private child: ChildProcess | undefined;
  private killedByRig = false;

  constructor(private readonly options: BoardProcessOptions) {}

  get id(): string {
    return this.options.boardId;
  }

  get alive(): boolean {
    return this.child !== undefined;
  }

  /** Starts the board; resolves once its links are open and its lines claimed. */
  start(): Promise<void> {
    const o = this.options;
    const child = fork(
      o.smwBin,
      [
        "rig",
        "board",
        "--testbed",
        o.testbedFile,
        "--board",
        o.boardId,
        ...(o.webhookUrl === undefined ? [] : ["--webhook", o.webhookUrl]),
        ...(o.joinLeadMs === undefined ? [] : ["--join-lead", String(o.joinLeadMs)]),
      ],
      { stdio: ["ignore", "pipe", "pipe", "ipc"] },
    );
    this.child = child;
    o.registry.add(child, `board ${o.boardId}`, false);
    // A board is hardware of its own: here it shares the CPU, so it goes first (when allowed to).
    try {
      if (child.pid !== undefined) setPriority(child.pid, -10);
    } catch {
      // Not root: the boards run at normal priority, the hosts below them.
    }
    if (child.stdout)
      createInterface({ input: child.stdout }).on("line", (line) => this.onLog(line));
    if (child.stderr)
      createInterface({ input: child.stderr }).on("line", (line) =>
        o.console(`${o.boardId}: ${line}`),
      );
    return new Promise((resolve, reject) => {
      let settled = false;
      child.on("message", (m: unknown) => {
        if (!isBoardToRig(m)) return;
        const message: BoardToRig = m;
        if (message.type === "line") o.onLine(message.role, message.level);
        else if (message.type === "ready" && !settled) {
          settled = true;
          resolve();
        } else if (message.type === "error" && !settled) {
          settled = true;
          reject(new Error(`board ${o.boardId}: ${message.message}`));
        }
      });
      child.on("exit", (code, signal) => {
        this.child = undefined;
        if (!settled) {
          settled = true;
          reject(
            new Error(
              `board ${o.boardId} exited (${signal ?? `code ${code}`}) before it was ready`,
            ),
          );
          return;
        }
        if (!this.killedByRig)
          o.events.emit({
            kind: "board-exit",
            board: o.boardId,
            detail: `board process exited (${signal ?? `code ${code}`})`,
          });
      });
    });
  }

  private onLog(line: string): void {
    let record: Record<string, unknown>;
    try {
      record = JSON.parse(line) as Record<string, unknown>;
    } catch {
      this.options.console(`${this.options.boardId}: ${line}`);
      return;
    }
    this.options.console(`${this.options.boardId}: ${line}`);
    const {
      msg,
      level: _level,
      time,
      pid: _pid,
      hostname: _hostname,
      board: _board,
      ...rest
    } = record;
    // The board's own clock when it logged: its log lines may reach the rig later than the IPC channel.
    const fields = typeof time === "number" ? { ...rest, boardTimeMs: time } : rest;
    this.options.events.emit({
      kind: "board",
      board: this.options.boardId,
      msg: typeof msg === "string" ? msg : "",
      fields,
    });
  }

  tell(message: RigToBoard): void {
    // A board killed a moment ago still looks connected: the failed send is dropped (given a
    // callback, it is not emitted as an "error").
    if (this.child?.connected) this.child.send(message, () => {});
  }

  /** The board dies (a crash, a power cut): SIGKILL, no goodbye on any link. */
  crash(): void {
    const child = this.child;
    if (child === undefined) return;
    this.options.events.emit({ kind: "fault", board: this.id, detail: "board process killed" });
    child.kill("SIGKILL");
  }

  /** The rig is going down. */
  stop(): void {
    this.killedByRig = true;
    this.child?.kill("SIGKILL");
  }
}
