/** Narrates a rig run as it happens: one line per thing a person watching the testbed would want to know. */
import { reasonWithoutFolder } from "@smw/host-agent";
import type { StampedEvent } from "./rig-events.js";

const STEP_WORDS: Record<string, string> = {
  shutdown: "shutdown",
  checkOS: "check OS image",
  restoreOS: "restore OS image",
  checkSM: "check SM code",
  restoreSM: "restore SM code",
  boot: "boot",
  transfer: "state transfer",
};

/** The line for an event, or undefined when it is not worth a line. */
export interface NarrationContext {
  hostOf(board: string): string;
  /** Schedule-wide news (agreement, period start) is told once, from this board. */
  firstBoard: string;
}

export function narrate(event: StampedEvent, context: NarrationContext): string | undefined {
  const at = `[${(event.atMs / 1000).toFixed(1).padStart(6)} s]`;
  switch (event.kind) {
    case "rig":
      return `${at} ${event.detail}`;
    case "host-up":
    case "host-down":
      return `${at} ${event.host}: ${event.detail}`;
    case "host-boot-failed":
      return `${at} ${event.host}: DOES NOT BOOT: ${event.detail}`;
    case "host-state": {
      const n = event.note;
      if (n.kind === "checkpoint-rejected")
        return `${at} ${event.host}: stored checkpoint REJECTED (${reasonWithoutFolder(n.why)}): all state from the peers`;
      if (n.kind === "transferred")
        return `${at} ${event.host}: state transfer fetched ${n.partitions} partitions (${formatBytes(n.sizeBytes)}) for checkpoint ${n.seq}`;
      return undefined;
    }
    case "fault":
      return `${at} FAULT ${event.host ?? event.board ?? "testbed"}: ${event.detail}`;
    case "board-exit":
      return `${at} ${event.board}: ${event.detail}`;
    case "alert":
      return `${at} ALERT received from ${event.board}: ${event.detail}`;
    case "line":
      return undefined;
    case "load":
      return `${at} clients: ${event.completed} operations completed, ${event.failed} unanswered, ${event.opsPerSecond.toFixed(0)} ops/s`;
    case "board": {
      const f = event.fields;
      const who = `${event.board}/${context.hostOf(event.board)}`;
      switch (event.msg) {
        case "joined: the schedule is agreed":
          return event.board === context.firstBoard
            ? `${at} boards agreed on the schedule: period 0 at ${new Date(Number(f.schedule)).toISOString()}`
            : undefined;
        case "period triggered":
          return event.board === context.firstBoard
            ? `${at} period ${f.period} starts (trigger ${Number(f.latenessMs).toFixed(1)} ms late)`
            : undefined;
        case "step finished": {
          const step = STEP_WORDS[String(f.step)] ?? String(f.step);
          const took = `${Math.round(Number(f.tookMs))} ms`;
          if (typeof f.failed === "string")
            return `${at} ${who}: ${step} FAILED after ${took}: ${f.failed}`;
          if (f.corrupted === true)
            return `${at} ${who}: ${step}: CORRUPTED (${f.detail ?? ""}), ${took}`;
          if (String(f.step).startsWith("restore"))
            return `${at} ${who}: ${step}: ${f.detail ?? "done"}, ${took}`;
          return `${at} ${who}: ${step} ${took}`;
        }
        case "host rejuvenated":
          return `${at} ${who}: rejuvenated in period ${f.period}`;
        case "FAIL-SAFE":
          return `${at} ${who}: FAIL-SAFE (${f.origin}): ${f.reason}`;
        case "host booted outside a rejuvenation: its key certified once":
          return `${at} ${who}: first boot, replica key certified`;
        default:
          return undefined;
      }
    }
  }
}

function formatBytes(sizeBytes: number): string {
  if (sizeBytes < 1024) return `${sizeBytes} B`;
  if (sizeBytes < 1024 * 1024) return `${(sizeBytes / 1024).toFixed(1)} KiB`;
  return `${(sizeBytes / 1024 / 1024).toFixed(1)} MiB`;
}

/** How long a host's "booted" line waits for its board's last check to be told first. */
export const BOOTED_HOLD_MS = 150;

/** The checks a board makes just before it releases its host's reset. */
const CHECKS_BEFORE_BOOT = new Set(["checkSM", "restoreSM"]);

/**
 * The narration as said, in the order things happened on the testbed. A board logs its code
 * check before it releases its host's reset, but the log line and the line change reach the rig
 * by different channels (the board's output, its IPC), and "booted the host agent" could come
 * before "check SM code": read as the host booting unchecked code. So a host's "booted" line
 * waits up to `holdMs` for its board's last check, which is said first; the boot then bears the
 * check's time where that is later (both are when the rig heard of them, and the boot came after
 * the check).
 */
export class Narration {
  private readonly held = new Map<string, { event: StampedEvent; timer: NodeJS.Timeout }>();

  constructor(
    private readonly context: NarrationContext,
    private readonly say: (line: string) => void,
    private readonly holdMs = BOOTED_HOLD_MS,
  ) {}

  tell(event: StampedEvent): void {
    if (event.kind === "host-up") {
      this.release(event.host);
      const timer = setTimeout(() => this.release(event.host), this.holdMs);
      timer.unref();
      this.held.set(event.host, { event, timer });
      return;
    }
    // Whatever else happens to the host goes after its "booted".
    if (
      event.kind === "host-down" ||
      event.kind === "host-boot-failed" ||
      event.kind === "host-state"
    )
      this.release(event.host);
    const line = narrate(event, this.context);
    if (line !== undefined) this.say(line);
    if (
      event.kind === "board" &&
      event.msg === "step finished" &&
      CHECKS_BEFORE_BOOT.has(String(event.fields.step)) &&
      event.fields.corrupted !== true
    )
      this.release(this.context.hostOf(event.board), event.atMs);
  }

  /** Says what is held back (at the end of a run). */
  flush(): void {
    for (const host of [...this.held.keys()]) this.release(host);
  }

  private release(host: string, notBeforeMs = 0): void {
    const held = this.held.get(host);
    if (held === undefined) return;
    this.held.delete(host);
    clearTimeout(held.timer);
    const line = narrate(
      { ...held.event, atMs: Math.max(held.event.atMs, notBeforeMs) },
      this.context,
    );
    if (line !== undefined) this.say(line);
  }
}
