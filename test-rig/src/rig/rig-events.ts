/**
 * What happens on the rig, as one stream of events: the hosts (up, down, a boot
 * that fails), the faults injected, every board's log (steps, triggers, the
 * fail-safe state), the alerts received and the client load. The narration,
 * `events.jsonl` and the report are all read from this stream.
 */
import type { StateNote } from "@smw/host-agent";

export type RigEvent =
  | { kind: "rig"; detail: string }
  | { kind: "host-up" | "host-down" | "host-boot-failed"; host: string; detail: string }
  | { kind: "fault"; host?: string; board?: string; detail: string }
  /** What a host's replica said on its console about its state (a checkpoint rejected, a transfer). */
  | { kind: "host-state"; host: string; note: StateNote }
  /** A reset or power line of a host's board changed level. */
  | { kind: "line"; host: string; role: "reset" | "power"; level: "active" | "inactive" }
  /** A line of a board daemon's log: `msg` and its fields as the daemon wrote them. */
  | { kind: "board"; board: string; msg: string; fields: Record<string, unknown> }
  | { kind: "board-exit"; board: string; detail: string }
  | { kind: "alert"; board: string; detail: string }
  | {
      kind: "load";
      completed: number;
      failed: number;
      opsPerSecond: number;
      /** Latency of the operations completed since the last sample (none: no completion). */
      p50Ms?: number;
      p99Ms?: number;
    };

export type StampedEvent = RigEvent & {
  /** Milliseconds since the rig started. */
  atMs: number;
  /** Wall clock, ms since the epoch. */
  wallMs: number;
};

export interface RigEventSink {
  emit(event: RigEvent): void;
}

export class RigEventStream implements RigEventSink {
  private readonly listeners = new Set<(event: StampedEvent) => void>();
  readonly all: StampedEvent[] = [];
  readonly startedWallMs = Date.now();

  emit(event: RigEvent): void {
    const wallMs = Date.now();
    const stamped = { ...event, atMs: wallMs - this.startedWallMs, wallMs } as StampedEvent;
    this.all.push(stamped);
    for (const listener of this.listeners) listener(stamped);
  }

  on(listener: (event: StampedEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Resolves with the first event (from now on) that `accept` takes, or undefined after `timeoutMs`. */
  waitFor(
    accept: (event: StampedEvent) => boolean,
    timeoutMs: number,
  ): Promise<StampedEvent | undefined> {
    return new Promise((resolve) => {
      const off = this.on((event) => {
        if (!accept(event)) return;
        clearTimeout(timer);
        off();
        resolve(event);
      });
      const timer = setTimeout(() => {
        off();
        resolve(undefined);
      }, timeoutMs);
    });
  }
}
