/**
 * The client load that runs throughout a rig run: a few closed-loop clients on a small set of
 * shared keys (so that their operations collide), a mix of reads, writes, compare-and-sets and
 * deletes, paced to a steady rate. Every operation is recorded in a history (invoke and
 * completion, monotonic time; history-file.ts in host-agent has the format), which the report
 * checks for linearizability: a Byzantine replica's answer getting through, a lost or stale
 * write would show there. It also counts operations completed and failed (no answer from k'+1
 * replicas in time: outcome unknown) and the longest stall, the longest time in which no
 * client completed anything.
 */
import { connectClient, type HistoryEvent, type KvClient, type KvOperation } from "@smw/host-agent";
import type { Testbed } from "@smw/wiring";

/** The shared keys the clients work on. */
export const LOAD_KEYS = ["k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7"] as const;

/** How hard the load presses: closed-loop clients, each pausing between its operations. */
export interface LoadShape {
  clients: number;
  pauseMs: number;
}

/**
 * A light load that leaves the rig's timing promises room on two shared cores: `rig up`, the
 * drills and the timing campaigns run under it.
 */
export const DEFAULT_LOAD: LoadShape = { clients: 4, pauseMs: 20 };

/** Client keys the rig makes for its own load (`load-1` ... `load-16`): the most clients a load can have. */
export const MAX_LOAD_CLIENTS = 16;

/**
 * The demo's load: every client the rig has keys for, none pausing, so that the report's ops/s
 * (and the dip while a host is rejuvenated) say what the service can do, not what the load asked
 * of it. Under the light load the clients asked for at most 200 ops/s, a fifth of what the
 * service answered under this one on two shared cores. The calibration period runs under it too,
 * so the budgets are measured under it.
 */
export const DEMO_LOAD: LoadShape = { clients: MAX_LOAD_CLIENTS, pauseMs: 0 };

/**
 * The rig's own load: ids of their own, so that a person's `smw kv` commands and `smw kv bench`
 * on the running rig (which take `client` and `c1` ... `c16`, sorted before these) never share
 * an id with it: two clients under one id would refuse each other's requests as stale.
 */
export function loadClientIds(count: number): string[] {
  if (!Number.isInteger(count) || count < 1 || count > MAX_LOAD_CLIENTS)
    throw new RangeError(`a load has 1 to ${MAX_LOAD_CLIENTS} clients, not ${count}`);
  return Array.from({ length: count }, (_, i) => `load-${i + 1}`);
}

/** Client keys the rig makes for people's own commands: `client` (`smw kv`'s default) and c1 ... c16. */
export const PERSONAL_CLIENT_IDS: readonly string[] = [
  "client",
  ...Array.from({ length: MAX_LOAD_CLIENTS }, (_, i) => `c${i + 1}`),
];

export interface LoadFigures {
  completed: number;
  /** Operations whose outcome is unknown (no answer in time, a connection lost). */
  failed: number;
  /** Every invoke and completion, in the order they happened. */
  history: HistoryEvent[];
  longestStallMs: number;
  /** When the longest stall ended, ms since the epoch. */
  longestStallEndWallMs: number | undefined;
  latenciesMs: number[];
  /** When each operation completed, ms since the epoch (to split the load by what the rig did). */
  completedAtWallMs: number[];
  /** When the load started, ms since the epoch. */
  startedAtWallMs: number;
  durationMs: number;
  /** The load's shape: how many clients, and each one's pause between operations. */
  clients: number;
  pauseMs: number;
  /**
   * Replies the clients refused, by why (their `rejected.*` counters, summed once the load
   * stopped): `no-lease` for a key its board no longer vouches for, `stale-epoch` for a replaced
   * key, `bad-signature`, `bad-mac`...
   */
  refused: Record<string, number>;
}

export class ClientLoad {
  private readonly clients: KvClient[] = [];
  private running = false;
  private loops: Promise<void>[] = [];
  private lastCompletionMs = 0;
  /** History times count from here (monotonic). */
  private readonly originNs = process.hrtime.bigint();
  private startedMs = 0;
  private readonly figures: LoadFigures = {
    completed: 0,
    failed: 0,
    history: [],
    longestStallMs: 0,
    longestStallEndWallMs: undefined,
    latenciesMs: [],
    completedAtWallMs: [],
    startedAtWallMs: 0,
    durationMs: 0,
    clients: 0,
    pauseMs: 0,
    refused: {},
  };

  constructor(
    private readonly testbed: Testbed,
    private readonly clientIds: readonly string[],
    private readonly options: {
      /** Pause between one client's operations. */
      pauseMs?: number;
      opTimeoutMs?: number;
      /** Talk to the unreplicated store (`smw kv serve --single`): the reference. */
      single?: boolean;
      /** The keys to work on (default `LOAD_KEYS`). */
      keys?: readonly string[];
    } = {},
  ) {}

  private get pauseMs(): number {
    return this.options.pauseMs ?? DEFAULT_LOAD.pauseMs;
  }

  private get opTimeoutMs(): number {
    return this.options.opTimeoutMs ?? 5_000;
  }

  start(): void {
    this.figures.clients = this.clientIds.length;
    this.figures.pauseMs = this.pauseMs;
    this.running = true;
    this.startedMs = Date.now();
    this.figures.startedAtWallMs = this.startedMs;
    this.lastCompletionMs = this.startedMs;
    for (const id of this.clientIds) {
      const client = connectClient(this.testbed, {
        clientId: id,
        ...(this.options.single ? { single: true } : {}),
      });
      this.clients.push(client);
      this.loops.push(this.loop(id, client));
    }
  }

  /** Figures so far. */
  snapshot(): LoadFigures {
    const now = Date.now();
    const openStallMs = this.running ? now - this.lastCompletionMs : 0;
    return {
      ...this.figures,
      latenciesMs: [...this.figures.latenciesMs],
      completedAtWallMs: [...this.figures.completedAtWallMs],
      history: [...this.figures.history],
      longestStallMs: Math.max(this.figures.longestStallMs, openStallMs),
      durationMs: (this.running ? now : this.startedMs + this.figures.durationMs) - this.startedMs,
    };
  }

  /**
   * One sample of the load while it runs, without copying its history: the counts so far and the
   * latencies of the operations completed since the `fromCompleted`-th.
   */
  sample(fromCompleted: number): { completed: number; failed: number; latenciesMs: number[] } {
    return {
      completed: this.figures.completed,
      failed: this.figures.failed,
      latenciesMs: this.figures.latenciesMs.slice(fromCompleted),
    };
  }

  /**
   * Stops the load. A call still waiting has up to `waitMs` (default: its own timeout) to be
   * answered; then its client is closed and it is recorded as of unknown outcome. Pass 0 when
   * the service is known not to answer (every host held), rather than wait out the timeout.
   */
  async stop(waitMs = this.opTimeoutMs): Promise<LoadFigures> {
    if (!this.running) return this.snapshot();
    this.figures.durationMs = Date.now() - this.startedMs;
    this.running = false;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(this.loops),
      new Promise((resolve) => {
        timer = setTimeout(resolve, waitMs);
      }),
    ]);
    clearTimeout(timer);
    await Promise.all(this.clients.map((c) => c.close()));
    await Promise.all(this.loops);
    const refused = new Map<string, number>();
    for (const client of this.clients)
      for (const [name, count] of client.counters)
        if (name.startsWith("rejected."))
          refused.set(name.slice(9), (refused.get(name.slice(9)) ?? 0) + count);
    this.figures.refused = Object.fromEntries([...refused].sort((a, b) => b[1] - a[1]));
    return {
      ...this.figures,
      latenciesMs: [...this.figures.latenciesMs],
      completedAtWallMs: [...this.figures.completedAtWallMs],
      history: [...this.figures.history],
    };
  }

  private completed(latencyMs: number): void {
    const now = Date.now();
    const gap = now - this.lastCompletionMs;
    if (gap > this.figures.longestStallMs) {
      this.figures.longestStallMs = gap;
      this.figures.longestStallEndWallMs = now;
    }
    this.lastCompletionMs = now;
    this.figures.completed++;
    this.figures.latenciesMs.push(latencyMs);
    this.figures.completedAtWallMs.push(now);
  }

  private async loop(id: string, client: KvClient): Promise<void> {
    const index = this.clientIds.indexOf(id);
    // Jepsen's convention: a client whose operation's outcome is unknown goes on as a new process.
    let processId = index;
    let n = 0;
    /** The last value this client saw for each key: what its compare-and-sets expect. */
    const seen = new Map<string, string | null>();
    while (this.running) {
      n++;
      const keys = this.options.keys ?? LOAD_KEYS;
      const key = keys[Math.floor(Math.random() * keys.length)] as string;
      const value = `${id}-${n}`;
      const dice = Math.random();
      const op: KvOperation =
        dice < 0.4
          ? { op: "get", key }
          : dice < 0.7
            ? { op: "put", key, value }
            : dice < 0.8
              ? { op: "del", key }
              : { op: "cas", key, expected: seen.get(key) ?? null, value };
      const input = op.op === "put" ? value : op.op === "cas" ? [op.expected, value] : null;
      const event = { process: processId, f: op.op, key } as const;
      this.record({ ...event, type: "invoke", value: input });
      try {
        const reply = await client.call(op, this.opTimeoutMs);
        this.completed(reply.latencyMs);
        const r = reply.result as {
          value?: string | null;
          previous?: string | null;
          ok?: boolean;
          current?: string | null;
          full?: true;
        };
        if (op.op === "get") {
          this.record({ ...event, type: "ok", value: r.value ?? null });
          seen.set(key, r.value ?? null);
        } else if (op.op === "cas") {
          this.record({ ...event, type: r.ok ? "ok" : "fail", value: input });
          seen.set(key, r.current ?? null);
        } else if (r.full === true) {
          // Refused, nothing written (its partition full): an operation that did not happen.
          this.record({ ...event, type: "fail", value: input });
        } else {
          this.record({ ...event, type: "ok", value: input, previous: r.previous ?? null });
          seen.set(key, op.op === "put" ? value : null);
        }
      } catch {
        // No answer in time: it may or may not have taken effect.
        this.record({ ...event, type: "info", value: input });
        processId += this.clientIds.length;
        if (this.running) this.figures.failed++;
      }
      await new Promise((resolve) => setTimeout(resolve, this.pauseMs));
    }
  }

  private record(event: Omit<HistoryEvent, "time">): void {
    this.figures.history.push({ ...event, time: Number(process.hrtime.bigint() - this.originNs) });
  }
}
