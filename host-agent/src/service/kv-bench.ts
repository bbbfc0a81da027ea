/**
 * A closed-loop load: N clients, each with one request outstanding, for S
 * seconds; throughput, latency percentiles, failures and the longest stall
 * (the longest time in which no client got an answer).
 */
import type { Testbed } from "@smw/wiring";
import type { KvClient } from "../client/kv-client.js";
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
  /** Called once a second with the operations completed so far. */
  onProgress?: (completed: number, elapsedMs: number) => void;
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
  const startMs = performance.now();
  const endMs = startMs + options.seconds * 1000;
  const value = "v".repeat(valueBytes);
  let n = 0;
  const progress = setInterval(
    () => options.onProgress?.(latencies.length, performance.now() - startMs),
    1000,
  );
  try {
    // Let connections come up and keys be exchanged before the clock starts mattering.
    await Promise.all(clients.map((c) => c.call({ op: "get", key: "warm-up" }, 20_000)));
    lastAnswerMs = performance.now();
    await Promise.all(
      clients.map(async (client) => {
        while (performance.now() < endMs) {
          const key = `key${(n++ * 7919) % keys}`;
          const op: KvOperation = n % 2 === 0 ? { op: "put", key, value } : { op: "get", key };
          try {
            const answer = await client.call(op, 10_000);
            const now = performance.now();
            longestStallMs = Math.max(longestStallMs, now - lastAnswerMs);
            lastAnswerMs = now;
            latencies.push(answer.latencyMs);
          } catch {
            failed++;
          }
        }
      }),
    );
  } finally {
    clearInterval(progress);
    await Promise.all(clients.map((c) => c.close()));
  }
  const elapsedS = (performance.now() - startMs) / 1000;
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
  };
}
