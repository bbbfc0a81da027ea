/**
 * The client load that runs throughout a rig run: a few closed-loop clients,
 * each writing its own keys and reading every write back, paced to a steady
 * rate. It counts operations completed and failed (no answer from k'+1
 * replicas in time), reads that returned something other than what was
 * written (a Byzantine replica getting through would show here), and the
 * longest stall: the longest time in which no client completed anything.
 */
import { connectClient, type KvClient } from "@smw/host-agent";
import type { Testbed } from "@smw/wiring";

export interface LoadFigures {
  completed: number;
  failed: number;
  wrong: number;
  longestStallMs: number;
  /** When the longest stall ended, ms since the epoch. */
  longestStallEndWallMs: number | undefined;
  latenciesMs: number[];
  durationMs: number;
}

export class ClientLoad {
  private readonly clients: KvClient[] = [];
  private running = false;
  private loops: Promise<void>[] = [];
  private lastCompletionMs = 0;
  private startedMs = 0;
  private readonly figures: LoadFigures = {
    completed: 0,
    failed: 0,
    wrong: 0,
    longestStallMs: 0,
    longestStallEndWallMs: undefined,
    latenciesMs: [],
    durationMs: 0,
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
    } = {},
  ) {}

  private get pauseMs(): number {
    return this.options.pauseMs ?? 40;
  }

  private get opTimeoutMs(): number {
    return this.options.opTimeoutMs ?? 5_000;
  }

  start(): void {
    this.running = true;
    this.startedMs = Date.now();
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
      longestStallMs: Math.max(this.figures.longestStallMs, openStallMs),
      durationMs: (this.running ? now : this.startedMs + this.figures.durationMs) - this.startedMs,
    };
  }

  async stop(): Promise<LoadFigures> {
    if (!this.running) return this.snapshot();
    this.figures.durationMs = Date.now() - this.startedMs;
    this.running = false;
    await Promise.all(this.loops);
    await Promise.all(this.clients.map((c) => c.close()));
    return { ...this.figures, latenciesMs: [...this.figures.latenciesMs] };
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
  }

  private async loop(id: string, client: KvClient): Promise<void> {
    let n = 0;
    while (this.running) {
      n++;
      const key = `${id}/${n % 500}`;
      const value = `${id}-${n}`;
      try {
        const put = await client.call({ op: "put", key, value }, this.opTimeoutMs);
        this.completed(put.latencyMs);
        if (!this.running) break;
        const got = await client.call({ op: "get", key }, this.opTimeoutMs);
        this.completed(got.latencyMs);
        const result = got.result as { value?: unknown };
        if (result.value !== value) this.figures.wrong++;
      } catch {
        if (this.running) this.figures.failed++;
      }
      await new Promise((resolve) => setTimeout(resolve, this.pauseMs));
    }
  }
}
