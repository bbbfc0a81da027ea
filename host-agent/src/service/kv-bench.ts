/**
 * A closed-loop load: N clients, each with one request outstanding, for S
 * seconds; throughput, latency percentiles, failures and the longest stall
 * (the longest time in which no client got an answer).
 */
import type { Testbed } from "@smw/wiring";
import { type KvClient, KvClientClosedError } from "../client/kv-client.js";
import type { KvOperation } from "../kv/kv-operation.js";
import { connectClient } from "./service-runtime.js";

export interface KvBenchOptions {
  testbed: Testbed;
  clientIds: string[];
  seconds: number;
  single?: boolean;
  k?: number;
  valueBytes?: number;
  keys?: number;
  /** Share of reads (get) in the load, 0 to 100 (default 50); the rest are puts. */
  readPercent?: number;
  /** Write every key once before the clock starts, so that reads find values. */
  prefill?: boolean;
  /** Called once a second with the operations completed so far. */
  onProgress?: (completed: number, elapsedMs: number) => void;
  /** Also count the operations completed in each interval of this many ms (`timeline`). */
  timelineMs?: number;
}

/** Operations completed per interval, from the moment the clock started (wall clock, to line up with other logs). */
export interface KvBenchTimeline {
  startedAtEpochMs: number;
  intervalMs: number;
  completed: number[];
}

export interface KvBenchResult {
  clients: number;
  seconds: number;
  completed: number;
  failed: number;
  opsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  longestStallMs: number;
  /** Reads that went unordered but were ordered after all (answers at different states). */
  readsOrdered: number;
  /** CPU time of this process (every client) over the measured seconds, user and system. */
  clientCpuMs: number;
  /** Message frames every client read and wrote over the measured seconds, summed. */
  clientFrames: number;
  /** What the clients' cores counted over the measured seconds, summed (retransmits, reads widened...). */
  clientCounters: Record<string, number>;
  timeline?: KvBenchTimeline;
}

function sumCounters(clients: readonly KvClient[]): Record<string, number> {
  const sum: Record<string, number> = {};
  for (const c of clients)
    for (const [name, count] of c.counters) sum[name] = (sum[name] ?? 0) + count;
  return sum;
}

function sumFrames(clients: readonly KvClient[]): number {
  return clients.reduce((sum, c) => sum + c.frames, 0);
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

export async function runKvBench(options: KvBenchOptions): Promise<KvBenchResult> {
  const valueBytes = options.valueBytes ?? 64;
  const keys = options.keys ?? 1000;
  const clients: KvClient[] = options.clientIds.map((clientId) =>
    connectClient(options.testbed, {
      clientId,
      ...(options.single ? { single: true } : {}),
      ...(options.k !== undefined ? { k: options.k } : {}),
    }),
  );
  const latencies: number[] = [];
  let failed = 0;
  let lastAnswerMs = performance.now();
  let longestStallMs = 0;
  // The clock starts once connections are up and the keys written: set below.
  let startMs = performance.now();
  let endMs = startMs + options.seconds * 1000;
  let cpuAtStart = process.cpuUsage();
  let clientCpuMs = 0;
  let stoppedMs: number | undefined;
  const value = "v".repeat(valueBytes);
  const readPercent = options.readPercent ?? 50;
  let readsOrdered = 0;
  let countersBefore: Record<string, number> = {};
  let framesBefore = 0;
  let clientFrames = 0;
  const clientCounters: Record<string, number> = {};
  let n = 0;
  const timelineMs = options.timelineMs;
  if (timelineMs !== undefined && !(timelineMs >= 1))
    throw new RangeError(`a timeline interval must be at least 1 ms, not ${timelineMs}`);
  let startedAtEpochMs = Date.now();
  const timeline: number[] = [];
  const progress = setInterval(
    () => options.onProgress?.(latencies.length, performance.now() - startMs),
    1000,
  );
  try {
    // Let connections come up and keys be exchanged before the clock starts mattering.
    await Promise.all(clients.map((c) => c.call({ op: "get", key: "warm-up" }, 20_000)));
    if (options.prefill) {
      let next = 0;
      await Promise.all(
        clients.map(async (client) => {
          for (let i = next++; i < keys; i = next++)
            await client.call({ op: "put", key: `key${i}`, value }, 20_000);
        }),
      );
    }
    const orderedBefore = clients.reduce((sum, c) => sum + c.readsOrdered, 0);
    countersBefore = sumCounters(clients);
    framesBefore = sumFrames(clients);
    startMs = performance.now();
    startedAtEpochMs = Date.now();
    endMs = startMs + options.seconds * 1000;
    cpuAtStart = process.cpuUsage();
    lastAnswerMs = startMs;
    await Promise.all(
      clients.map(async (client) => {
        while (performance.now() < endMs) {
          const key = `key${(n * 7919) % keys}`;
          // Spread evenly: operation n is a read when the running share of reads falls behind.
          const read =
            Math.floor(((n + 1) * readPercent) / 100) > Math.floor((n * readPercent) / 100);
          n++;
          const op: KvOperation = read ? { op: "get", key } : { op: "put", key, value };
          try {
            const answer = await client.call(op, 10_000);
            const now = performance.now();
            longestStallMs = Math.max(longestStallMs, now - lastAnswerMs);
            lastAnswerMs = now;
            latencies.push(answer.latencyMs);
            if (timelineMs !== undefined) {
              const i = Math.floor((now - startMs) / timelineMs);
              while (timeline.length <= i) timeline.push(0);
              timeline[i] = (timeline[i] as number) + 1;
            }
          } catch (error) {
            // A closed client refuses every call at once: its loop ends rather than spin.
            if (error instanceof KvClientClosedError) return;
            failed++;
          }
        }
      }),
    );
    readsOrdered = clients.reduce((sum, c) => sum + c.readsOrdered, 0) - orderedBefore;
    for (const [name, count] of Object.entries(sumCounters(clients))) {
      const delta = count - (countersBefore[name] ?? 0);
      if (delta > 0) clientCounters[name] = delta;
    }
    clientFrames = sumFrames(clients) - framesBefore;
    stoppedMs = performance.now();
    const cpu = process.cpuUsage(cpuAtStart);
    clientCpuMs = (cpu.user + cpu.system) / 1000;
  } finally {
    clearInterval(progress);
    await Promise.all(clients.map((c) => c.close()));
  }
  const elapsedS = ((stoppedMs ?? performance.now()) - startMs) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    clients: clients.length,
    seconds: elapsedS,
    completed: latencies.length,
    failed,
    opsPerSecond: latencies.length / elapsedS,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    maxMs: latencies.at(-1) ?? 0,
    longestStallMs,
    readsOrdered,
    clientCpuMs,
    clientFrames,
    clientCounters,
    ...(timelineMs !== undefined
      ? { timeline: { startedAtEpochMs, intervalMs: timelineMs, completed: timeline } }
      : {}),
  };
}
