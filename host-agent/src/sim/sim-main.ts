/**
 * `npm run sim -- --seeds N [--from S] [--jobs J] [--trace SEED]`: runs
 * seeds S..S+N-1 of the cluster simulation on J worker threads and prints a
 * summary; every failing seed is printed with what it broke and the command
 * that replays it. Exit 1 if any seed failed, 2 on bad usage.
 */
import { availableParallelism } from "node:os";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { runSimulation, type SimResult } from "./cluster-sim.js";
import { runSeed, summarize } from "./run-seeds.js";
import { scenarioFor } from "./sim-scenario.js";

interface Job {
  from: number;
  count: number;
}

function usage(message: string): never {
  process.stderr.write(
    `sim: ${message}\nusage: npm run sim -- --seeds N [--from S] [--jobs J]\n       npm run sim -- --trace SEED\n`,
  );
  process.exit(2);
}

function parseArgs(argv: string[]): { seeds: number; from: number; jobs: number; trace?: number } {
  const out = { seeds: 100, from: 1, jobs: Math.max(1, availableParallelism()) } as {
    seeds: number;
    from: number;
    jobs: number;
    trace?: number;
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = Number(argv[i + 1]);
    if (!["--seeds", "--from", "--jobs", "--trace"].includes(flag as string))
      usage(`unknown argument ${flag}`);
    if (!Number.isSafeInteger(value) || value < (flag === "--from" || flag === "--trace" ? 0 : 1))
      usage(`${flag} needs a whole number, got ${argv[i + 1] ?? "nothing"}`);
    i++;
    if (flag === "--seeds") out.seeds = value;
    else if (flag === "--from") out.from = value;
    else if (flag === "--jobs") out.jobs = value;
    else out.trace = value;
  }
  return out;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.trace !== undefined) {
    const scenario = scenarioFor(args.trace);
    process.stdout.write(`${JSON.stringify(scenario)}\n`);
    const result = runSimulation(scenario, { trace: (line) => process.stdout.write(`${line}\n`) });
    process.stdout.write(
      `${result.passed ? "passed" : `FAILED:\n  ${result.violations.join("\n  ")}`}\n`,
    );
    process.exit(result.passed ? 0 : 1);
  }
  const started = performance.now();
  const jobs = Math.min(args.jobs, args.seeds);
  const per = Math.ceil(args.seeds / jobs);
  const results: SimResult[] = [];
  let done = 0;
  await Promise.all(
    Array.from({ length: jobs }, (_, j) => {
      const job: Job = {
        from: args.from + j * per,
        count: Math.max(0, Math.min(per, args.seeds - j * per)),
      };
      return new Promise<void>((resolve, reject) => {
        const worker = new Worker(new URL(import.meta.url), { workerData: job });
        worker.on("message", (r: SimResult) => {
          results.push(r);
          done++;
          if (!r.passed)
            process.stdout.write(
              `seed ${r.seed} FAILED: ${r.violations[0]}\n  replay: npm run sim -- --trace ${r.seed}\n`,
            );
          if (done % 500 === 0) process.stderr.write(`  ${done}/${args.seeds} seeds\n`);
        });
        worker.on("error", reject);
        worker.on("exit", () => resolve());
      });
    }),
  );
  const s = summarize(results);
  const seconds = (performance.now() - started) / 1000;
  process.stdout.write(
    [
      `seeds ${args.from}..${args.from + args.seeds - 1}: ${s.seeds - s.failed.length} passed, ${s.failed.length} failed (${seconds.toFixed(1)} s on ${jobs} threads)`,
      `  client operations completed ${s.completed}, batches executed ${s.executedSeqs}, views entered ${s.viewChanges}`,
      `  cold starts ${s.coldStarts}, requests executed after the checkpoint they went back to ${s.lostToColdStart}`,
      `  rejuvenations ${s.rejuvenations}, state transfers ${s.stateTransfers}, rejected inputs ${s.rejected}, simulated time ${(s.simulatedMs / 3_600_000).toFixed(2)} h`,
      `  the adversary's actions: ${formatCounts(s.byzantineActions)}`,
      `  refused from compromised replicas: ${formatCounts(s.rejectedFromByzantine)}`,
      `  correct replicas' counters: ${formatCounts(s.replicaCounters)}`,
      ...(s.failed.length > 0 ? [`  failing seeds: ${s.failed.map((r) => r.seed).join(" ")}`] : []),
      "",
    ].join("\n"),
  );
  process.exit(s.failed.length > 0 ? 1 : 0);
}

function formatCounts(counts: Record<string, number>): string {
  const entries = Object.entries(counts).sort((a, b) => b[1] - a[1]);
  return entries.length === 0 ? "none" : entries.map(([k, n]) => `${k} ${n}`).join(", ");
}

if (isMainThread) {
  await main();
} else {
  const job = workerData as Job;
  for (let seed = job.from; seed < job.from + job.count; seed++)
    parentPort?.postMessage(runSeed(seed));
}
