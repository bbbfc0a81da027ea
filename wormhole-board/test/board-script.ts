/**
 * Board-core scenarios as text, after etcd raft's `testdata/*.txt`: a script of commands, each
 * followed by `----` and the output it must print, run against six board cores (the testbed of
 * `sim-config.ts`, one host per group) on a simulated clock and network. A reader follows each
 * scenario frame by frame; a change in what the cores do shows as a changed line.
 *
 * Commands:
 *   start [join]                 every board starts: on period 0 at 1000 ms, or joining
 *   run MS [cut=B] [lose=TYPE>B] [steps=manual]
 *                                the clock advances MS; every frame arrives 1 ms after it was
 *                                sent, but those of a cut board (both ways) and, with lose=, the
 *                                frames of that type to that board are lost as they arrive; steps
 *                                finish ok at half their budget, unless steps=manual
 *   finish B ok|corrupted|fail REASON
 *                                the step board B runs ends so
 *   fault B REASON               board B's driver found a local fault (a start-up check failed)
 *   forge B from=P count=N       N frames claimed to be from P fail authentication at board B
 *   restart B                    board B's process starts again: joining, or in its latched
 *                                fail-safe state
 *   clear B                      the operator clears board B's fail-safe state
 *   status                       each board's phase, period and group, fail-safe reason
 * Output: every action but heartbeats, as `MS board what`; heartbeats are only counted.
 * `SMW_REWRITE_SCRIPTS=1` writes the outputs into the files instead of comparing them.
 */
import type { ControlMessage } from "@smw/wiring";
import {
  type BoardAction,
  BoardCore,
  type RecoveryStep,
  type StepOutcome,
  stepBudgetMs,
} from "@smw/wormhole-board";
import { base, boards, coreConfig } from "./sim-config.js";

interface Frame {
  atMs: number;
  from: string;
  to: string;
  message: ControlMessage;
}

interface RunningStep {
  period: number;
  step: RecoveryStep;
  startedMs: number;
}

/** Six board cores, a clock and a network, driven by script commands. */
export class BoardScript {
  private nowMs = 0;
  private readonly cores = new Map<string, BoardCore>();
  private frames: Frame[] = [];
  private readonly steps = new Map<string, RunningStep>();
  /** Per board, the instant its timer last fired. */
  private readonly wokenMs = new Map<string, number>();

  /** Runs one command line; what it printed. */
  run(command: string): string {
    const [verb, ...args] = command.trim().split(/\s+/);
    const out: string[] = [];
    switch (verb) {
      case "start":
        this.start(args[0] === "join", out);
        break;
      case "run":
        this.advance(Number(args[0]), options(args.slice(1)), out);
        break;
      case "finish":
        this.finish(args[0] as string, args[1] as string, args.slice(2).join(" "), out);
        break;
      case "fault":
        this.handle(
          args[0] as string,
          { kind: "localFault", reason: args.slice(1).join(" "), nowMs: this.nowMs },
          out,
        );
        break;
      case "clear":
        this.handle(args[0] as string, { kind: "clearFailsafe", nowMs: this.nowMs }, out);
        break;
      case "forge": {
        // Frames that fail authentication, claimed to come from `from=`.
        const o = Object.fromEntries(args.slice(1).map((a) => a.split("=")));
        for (let i = 0; i < Number(o.count ?? 1); i++)
          this.handle(
            args[0] as string,
            { kind: "authFailure", from: o.from, nowMs: this.nowMs },
            out,
          );
        break;
      }
      case "restart":
        this.restart(args[0] as string, out);
        break;
      case "status":
        for (const [board, core] of this.cores) {
          const s = core.scheduleState;
          out.push(
            `${board} ${core.phase}${s === undefined ? "" : ` period ${s.period} group ${s.group + 1}`}${
              core.failsafeState === undefined ? "" : `: ${core.failsafeState.reason}`
            }`,
          );
        }
        break;
      default:
        throw new Error(`unknown command "${verb}"`);
    }
    return out.join("\n");
  }

  private start(join: boolean, out: string[]): void {
    for (const board of boards) {
      const core = new BoardCore(
        coreConfig({
          self: board,
          clockOffsetBoundMs: 10,
          ...(join ? {} : { firstTriggerMs: 1_000 }),
          startMs: this.nowMs,
        }),
      );
      this.cores.set(board, core);
      this.apply(board, core.start(), out);
    }
  }

  /**
   * Board `board`'s process starts again: a new core, joining its peers, from its latched
   * fail-safe state if it had one (what survives on disk); its step and its frames in flight are
   * gone.
   */
  private restart(board: string, out: string[]): void {
    const restored = this.cores.get(board)?.failsafeState;
    this.steps.delete(board);
    this.wokenMs.delete(board);
    this.frames = this.frames.filter((f) => f.from !== board && f.to !== board);
    const core = new BoardCore(
      coreConfig({
        self: board,
        clockOffsetBoundMs: 10,
        startMs: this.nowMs,
        ...(restored === undefined ? {} : { restoredFailsafe: restored }),
      }),
    );
    this.cores.set(board, core);
    out.push(
      `${this.nowMs} ${board} restarted${restored === undefined ? "" : " (fail-safe latched)"}`,
    );
    this.apply(board, core.start(), out);
  }

  private advance(ms: number, o: RunOptions, out: string[]): void {
    const endMs = this.nowMs + ms;
    let heartbeats = 0;
    for (let guard = 0; guard < 1_000_000; guard++) {
      // The next event: a frame's arrival, a step's end, a board's timer; ties in that order.
      const frame = this.frames.reduce<Frame | undefined>(
        (first, f) => (first === undefined || f.atMs < first.atMs ? f : first),
        undefined,
      );
      const stepEnds = o.manualSteps
        ? []
        : [...this.steps].map(([board, s]) => ({
            board,
            atMs: s.startedMs + stepBudgetMs(s.step, base.budgets) / 2,
          }));
      const stepEnd = stepEnds.sort((a, b) => a.atMs - b.atMs)[0];
      // A core woken at an instant that asks for the same one again (a deadline is missed only
      // once it has passed) is woken at the clock's next reading, as the daemon's timer does.
      const timers = [...this.cores].map(([board, core]) => {
        const wakeMs = core.nextWakeupMs() ?? Number.POSITIVE_INFINITY;
        const wokenMs = this.wokenMs.get(board) ?? Number.NEGATIVE_INFINITY;
        return { board, atMs: wakeMs > wokenMs ? wakeMs : wokenMs + 1 };
      });
      const timer = timers.sort((a, b) => a.atMs - b.atMs)[0];
      const nextMs = Math.min(
        frame?.atMs ?? Number.POSITIVE_INFINITY,
        stepEnd?.atMs ?? Number.POSITIVE_INFINITY,
        timer?.atMs ?? Number.POSITIVE_INFINITY,
      );
      if (nextMs > endMs) break;
      this.nowMs = Math.max(this.nowMs, nextMs);
      if (frame !== undefined && frame.atMs === nextMs) {
        this.frames = this.frames.filter((f) => f !== frame);
        if (lost(frame, o)) continue;
        if (frame.message.type === "HB") heartbeats++;
        this.handle(
          frame.to,
          { kind: "message", from: frame.from, message: frame.message, nowMs: this.nowMs },
          out,
        );
      } else if (stepEnd !== undefined && stepEnd.atMs === nextMs) {
        this.finish(stepEnd.board, "ok", "", out);
      } else if (timer !== undefined) {
        this.wokenMs.set(timer.board, this.nowMs);
        this.handle(timer.board, { kind: "time", nowMs: this.nowMs }, out);
      }
    }
    this.nowMs = endMs;
    out.push(`${this.nowMs} ${heartbeats} heartbeats delivered`);
  }

  private finish(board: string, how: string, reason: string, out: string[]): void {
    const s = this.steps.get(board);
    if (s === undefined) throw new Error(`${board} runs no step`);
    this.steps.delete(board);
    const outcome: StepOutcome =
      how === "fail" ? { ok: false, reason } : { ok: true, corrupted: how === "corrupted" };
    out.push(`${this.nowMs} ${board} ${s.step} ${how}${reason === "" ? "" : `: ${reason}`}`);
    this.handle(board, { kind: "stepFinished", step: s.step, outcome, nowMs: this.nowMs }, out);
  }

  private handle(board: string, event: Parameters<BoardCore["handle"]>[0], out: string[]): void {
    const core = this.cores.get(board);
    if (core === undefined) throw new Error(`no board ${board}`);
    this.apply(board, core.handle(event), out);
  }

  private apply(board: string, actions: BoardAction[], out: string[]) {
    const at = `${this.nowMs} ${board}`;
    const sendTo = (to: string, message: ControlMessage) =>
      this.frames.push({ atMs: this.nowMs + 1, from: board, to, message });
    for (const a of actions) {
      switch (a.kind) {
        case "broadcast":
          for (const peer of boards) if (peer !== board) sendTo(peer, a.message);
          if (a.message.type !== "HB") out.push(`${at} broadcast ${describe(a.message)}`);
          break;
        case "send":
          sendTo(a.to, a.message);
          if (a.message.type !== "HB") out.push(`${at} send ${describe(a.message)} to ${a.to}`);
          break;
        case "runStep":
          this.steps.set(board, { period: a.period, step: a.step, startedMs: this.nowMs });
          out.push(`${at} run ${a.step} (period ${a.period}, by ${a.deadlineMs})`);
          break;
        case "enterFailsafe":
          this.steps.delete(board);
          out.push(`${at} FAIL-SAFE: ${a.state.reason} (from ${a.state.origin})`);
          break;
        case "failsafeCleared":
          out.push(`${at} fail-safe cleared`);
          break;
        case "alarm":
          out.push(`${at} ALARM: ${a.reason}`);
          break;
        case "joined":
          out.push(`${at} joined schedule ${a.schedule} from period ${a.firstIndex}`);
          break;
        case "trigger":
          out.push(`${at} trigger ${a.record.index}`);
          break;
        case "recoveryDone":
          out.push(`${at} recovered (period ${a.period})`);
          break;
        case "recoveryInterrupted":
          out.push(`${at} rejuvenation cut short (period ${a.period})`);
          break;
        case "periodComplete":
          out.push(`${at} period ${a.period} complete`);
          break;
        case "revokeKeys":
          out.push(`${at} revoke the keys of group ${a.group + 1} (period ${a.period})`);
          break;
      }
    }
  }
}

interface RunOptions {
  cut?: string;
  lose?: { type: string; to: string };
  manualSteps?: boolean;
}

/** A frame the run loses on arrival: from or to a cut board, or of the type lost to its board. */
function lost(f: Frame, o: RunOptions): boolean {
  if (o.cut !== undefined && (f.from === o.cut || f.to === o.cut)) return true;
  return o.lose !== undefined && o.lose.to === f.to && o.lose.type === f.message.type;
}

function options(args: readonly string[]): RunOptions {
  const o: RunOptions = {};
  for (const arg of args) {
    const [key, value = ""] = arg.split("=");
    if (key === "cut") o.cut = value;
    else if (key === "lose") {
      const [type, to] = value.split(">");
      if (type === undefined || to === undefined) throw new Error(`lose=${value}: TYPE>BOARD`);
      o.lose = { type, to };
    } else if (key === "steps" && value === "manual") o.manualSteps = true;
    else throw new Error(`unknown option "${arg}"`);
  }
  return o;
}

function describe(m: ControlMessage): string {
  switch (m.type) {
    case "HB":
      return `HB period ${m.period}`;
    case "DONE":
      return `DONE period ${m.period} of schedule ${m.schedule}`;
    case "FAILSAFE":
      return `FAILSAFE "${m.reason}" (from ${m.origin})`;
  }
}
