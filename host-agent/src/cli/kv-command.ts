/**
 * `smw kv`: the replicated key-value service from the command line. Client
 * operations (get, put, del, cas, scan), a replica or the unreplicated
 * baseline (serve), and a closed-loop load (bench).
 */
import {
  DurationError,
  formatProblem,
  loadTestbedFile,
  parseDurationMs,
  type Testbed,
} from "@smw/wiring";
import { type CliContext, UsageError } from "@smw/wiring/cli";
import { Command } from "commander";
import type { KvOperation, KvResult } from "../kv/kv-operation.js";
import { MAX_KEY_BYTES, MAX_PARTITION_BYTES, parseKvOperation } from "../kv/kv-operation.js";
import { QuorumError } from "../replica/quorums.js";
import { runKvBench } from "../service/kv-bench.js";
import { KeyFileError } from "../service/service-keys.js";
import {
  clientIdsWithKeys,
  connectClient,
  startReplica,
  startSingle,
} from "../service/service-runtime.js";

interface ClientFlags {
  testbed: string;
  k?: string;
  client: string;
  key?: string;
  single?: boolean;
  json?: boolean;
  timeout: string;
}

function loadTestbed(file: string): Testbed {
  const loaded = loadTestbedFile(file);
  if (!loaded.ok) throw new UsageError(loaded.problems.map(formatProblem).join("\n"));
  return loaded.testbed;
}

function durationMs(text: string, flag: string): number {
  try {
    return parseDurationMs(text);
  } catch (error) {
    if (error instanceof DurationError) throw new UsageError(`${flag}: ${error.message}`);
    throw error;
  }
}

function kOption(text: string | undefined): { k?: number } {
  if (text === undefined) return {};
  const k = Number(text);
  if (!Number.isInteger(k) || k < 0)
    throw new UsageError(`--k: expected a whole number, got "${text}"`);
  return { k };
}

function describeResult(result: KvResult): string {
  switch (result.op) {
    case "get":
      return result.value ?? "(absent)";
    case "put":
      if (result.full === true)
        return `refused: the key's partition would pass ${MAX_PARTITION_BYTES} bytes; nothing written (the value is ${result.previous ?? "absent"})`;
      return `ok (previous: ${result.previous ?? "absent"})`;
    case "del":
      return `ok (previous: ${result.previous ?? "absent"})`;
    case "cas":
      if (result.full === true)
        return `refused: the key's partition would pass ${MAX_PARTITION_BYTES} bytes; not swapped (the value is ${result.current ?? "absent"})`;
      return result.ok ? "ok" : `not swapped: the value is ${result.current ?? "absent"}`;
    case "scan": {
      const lines = result.entries.map(([k, v]) => `${k}\t${v}`).join("\n") || "(nothing in range)";
      const last = result.entries[result.entries.length - 1];
      // The answer's size bound ended it: the rest of the range is one more scan away.
      return result.more === true && last !== undefined
        ? `${lines}\n(more: the answer's size bound ended it; the rest: scan from ${JSON.stringify(last[0])} with --after)`
        : lines;
    }
  }
}

/** `smw kv get|put|del|cas|scan`: no quorum answered in time (1: a cas did not swap, a write was refused). */
export const NO_ANSWER_EXIT = 3;

/**
 * A client with no key in the testbed's client key folder: named with the ids that have one, so
 * that `--client` is the obvious fix (a rig makes keys for clients with other names).
 */
function missingClientKey(testbed: Testbed, client: string): void {
  const ids = clientIdsWithKeys(testbed);
  if (ids.length === 0 || ids.includes(client)) return;
  const shown = ids.length > 12 ? [...ids.slice(0, 12), "..."] : ids;
  throw new UsageError(
    `no key for client "${client}" in ${testbed.clientKeysDir}; clients with keys there: ${shown.join(", ")} (pass --client ID, or --key FILE)`,
  );
}

function withKeyErrors<T>(testbedFile: string, run: () => Promise<T>): Promise<T> {
  return run().catch((error: unknown) => {
    if (error instanceof KeyFileError) throw new UsageError(error.message);
    if (error instanceof QuorumError)
      throw new UsageError(
        `${testbedFile}: ${error.message} (--k N sets the replicas silent for rejuvenation at once; --k 0: none)`,
      );
    throw error;
  });
}

export function kvCommand(context: CliContext): Command {
  const kv = new Command("kv").description(
    "the replicated key-value service: operations, replicas, load",
  );

  const clientCommand = (
    name: string,
    args: string,
    description: string,
    toOp: (
      args: string[],
      flags: { limit?: string; expectAbsent?: boolean; after?: boolean },
    ) => unknown,
  ) => {
    const command = kv
      .command(`${name} ${args}`)
      .description(description)
      .requiredOption("--testbed <file>", "testbed file (hosts, board keys, client keys)")
      .option("--client <id>", "client id: its key is <client key folder>/<id>.key", "client")
      .option("--key <file>", "the client's private key, if not in the client key folder")
      .option("--single", "talk to the unreplicated baseline (smw kv serve --single)")
      .option("--timeout <duration>", "give up after this long", "10s")
      .option(
        "--k <n>",
        "replicas silent for rejuvenation at once (default: the testbed's k; 0: no rejuvenation)",
      )
      .option("--json", "print the result as JSON");
    if (name === "scan")
      command
        .option("--limit <n>", "at most this many entries", "100")
        .option(
          "--after",
          "FROM itself left out: the rest of a scan whose answer said more, after its last key",
        );
    if (name === "cas")
      command.option(
        "--expect-absent",
        "swap only if the key is absent (EXPECTED is then left out)",
      );
    command.action(async (...raw: unknown[]) => {
      const command = raw.at(-1) as Command;
      const positional = command.args;
      const flags = command.opts() as ClientFlags & {
        limit?: string;
        expectAbsent?: boolean;
        after?: boolean;
      };
      const parsed = parseKvOperation(toOp(positional, flags));
      if ("error" in parsed) throw new UsageError(`${name}: ${parsed.error}`);
      const op: KvOperation = parsed;
      const timeoutMs = durationMs(flags.timeout, "--timeout");
      const testbed = loadTestbed(flags.testbed);
      await withKeyErrors(flags.testbed, async () => {
        if (flags.key === undefined) missingClientKey(testbed, flags.client);
        const client = connectClient(testbed, {
          clientId: flags.client,
          ...(flags.key ? { keyFile: flags.key } : {}),
          ...(flags.single ? { single: true } : {}),
          ...kOption(flags.k),
        });
        try {
          const answer = await client.call(op, timeoutMs);
          context.io.out(
            flags.json
              ? `${JSON.stringify({ ...answer.result, latencyMs: Math.round(answer.latencyMs * 100) / 100 })}\n`
              : `${describeResult(answer.result)}\n`,
          );
          const { result } = answer;
          const notWritten =
            (result.op === "cas" && !result.ok) || (result.op === "put" && result.full === true);
          context.setExitCode(notWritten ? 1 : 0);
        } catch (error) {
          // No answer: its own status, so that a script tells it from a cas that did not swap.
          context.io.err(`smw kv ${name}: ${(error as Error).message}\n`);
          context.setExitCode(NO_ANSWER_EXIT);
        } finally {
          await client.close();
        }
      });
    });
  };

  clientCommand("get", "<key>", "print the value of a key", ([key]) => ({ op: "get", key }));
  clientCommand("put", "<key> <value>", "set a key", ([key, value]) => ({
    op: "put",
    key,
    value,
  }));
  clientCommand("del", "<key>", "delete a key", ([key]) => ({ op: "del", key }));
  clientCommand(
    "cas",
    "<key> <values...>",
    "compare-and-set: cas KEY EXPECTED NEW, or cas KEY NEW --expect-absent (exit 1 if not swapped)",
    ([key, ...values], { expectAbsent }) => {
      const wanted = expectAbsent ? 1 : 2;
      if (values.length !== wanted)
        throw new UsageError(
          `cas: give KEY EXPECTED NEW, or KEY NEW --expect-absent; got ${values.length} value${values.length === 1 ? "" : "s"} after the key${expectAbsent ? " with --expect-absent" : ""}`,
        );
      return expectAbsent
        ? { op: "cas", key, expected: null, value: values[0] }
        : { op: "cas", key, expected: values[0], value: values[1] };
    },
  );
  clientCommand(
    "scan",
    "<from> [to]",
    "keys from FROM up to (not including) TO (to the last key if left out), in order",
    ([from, to], { limit, after }) => {
      const count = Number(limit);
      if (!Number.isInteger(count) || count < 1)
        throw new UsageError(
          `scan: --limit: expected a whole number of at least 1, got "${limit}"`,
        );
      // The first key after FROM in byte order is FROM followed by a NUL.
      const start = after === true ? `${from}\u0000` : (from as string);
      if (after === true && Buffer.byteLength(start) > MAX_KEY_BYTES)
        throw new UsageError(
          `scan: --after: FROM is ${Buffer.byteLength(from as string)} bytes, the longest a key may be; scan from the key after it instead`,
        );
      return { op: "scan", from: start, to: to ?? "", limit: count };
    },
  );

  kv.command("serve")
    .description(
      "run one replica of the testbed (--host) or the unreplicated baseline (--single), until interrupted",
    )
    .requiredOption("--testbed <file>", "testbed file")
    .option("--host <id>", "the host whose replica to run")
    .option("--single", "the same store unreplicated, at the first host's address")
    .option("--recovering", "trust nothing stored: recover the state from the other replicas first")
    .option(
      "--cold-start",
      "every replica was restarted: agree with the others on the stored checkpoint to start from",
    )
    .option(
      "--k <n>",
      "replicas silent for rejuvenation at once (default: the testbed's k; 0: no rejuvenation)",
    )
    .action(
      async (flags: {
        testbed: string;
        host?: string;
        single?: boolean;
        recovering?: boolean;
        coldStart?: boolean;
        k?: string;
      }) => {
        if ((flags.host === undefined) === (flags.single === undefined))
          throw new UsageError("kv serve: give either --host ID or --single");
        const testbed = loadTestbed(flags.testbed);
        await withKeyErrors(flags.testbed, async () => {
          const log = (line: string) => context.io.err(`${line}\n`);
          const server = flags.single
            ? await startSingle(testbed)
            : await startReplica(testbed, flags.host as string, {
                recovering: flags.recovering === true,
                coldStart: flags.coldStart === true,
                log,
                ...kOption(flags.k),
              });
          context.io.err(
            flags.single
              ? `serving the unreplicated store at ${testbed.hosts[0]?.address.host}:${testbed.hosts[0]?.address.port}\n`
              : `replica ${flags.host} serving\n`,
          );
          // SIGUSR2: a shutdown is coming; a primary hands off now rather than leave the others to time out.
          const handOff = () => {
            if ("prepareShutdown" in server) server.prepareShutdown();
          };
          process.on("SIGUSR2", handOff);
          await new Promise<void>((resolve) => {
            const stop = () => resolve();
            process.once("SIGINT", stop);
            process.once("SIGTERM", stop);
          });
          process.off("SIGUSR2", handOff);
          // A replica writes its own summary as it closes; the unreplicated store's is written here.
          if (!("prepareShutdown" in server)) log(`unreplicated store ${server.summary()}`);
          await server.close();
          context.setExitCode(0);
        });
      },
    );

  kv.command("bench")
    .description("a closed-loop load: N clients for S seconds; throughput and latency percentiles")
    .requiredOption("--testbed <file>", "testbed file")
    .option(
      "--clients <n>",
      "concurrent clients, 4 if not given (each needs a key in the client key folder; the first N ids in sorted order)",
    )
    .option(
      "--client-ids <ids>",
      "the clients' ids, comma-separated, instead of the first N (ids another load uses at the same time would collide)",
    )
    .option("--seconds <s>", "how long", "10")
    .option("--single", "against the unreplicated baseline")
    .option("--value-bytes <n>", "size of the values written", "64")
    .option("--read-percent <p>", "share of reads (get) in the load; the rest are puts", "50")
    .option("--keys <n>", "how many keys the load spreads over", "1000")
    .option("--prefill", "write every key once before the clock starts")
    .option(
      "--k <n>",
      "replicas silent for rejuvenation at once (default: the testbed's k; 0: no rejuvenation)",
    )
    .option(
      "--timeline <ms>",
      "also count the operations completed in each interval of this many ms (printed, and in --json as timeline)",
    )
    .option("--json", "print the figures as JSON")
    .action(
      async (flags: {
        testbed: string;
        clients?: string;
        clientIds?: string;
        timeline?: string;
        seconds: string;
        single?: boolean;
        valueBytes: string;
        readPercent: string;
        keys: string;
        prefill?: boolean;
        json?: boolean;
        k?: string;
      }) => {
        const givenIds = flags.clientIds?.split(",").filter((id) => id !== "");
        const clients = Number(flags.clients ?? givenIds?.length ?? 4);
        const seconds = Number(flags.seconds);
        const valueBytes = Number(flags.valueBytes);
        if (!Number.isInteger(clients) || clients < 1 || clients > 256)
          throw new UsageError(`--clients: expected 1 to 256, got "${flags.clients}"`);
        if (!Number.isFinite(seconds) || seconds <= 0 || seconds > 3600)
          throw new UsageError(
            `--seconds: expected more than 0 and at most 3600, got "${flags.seconds}"`,
          );
        if (!Number.isInteger(valueBytes) || valueBytes < 0 || valueBytes > 1 << 20)
          throw new UsageError(`--value-bytes: expected 0 to 1048576, got "${flags.valueBytes}"`);
        const readPercent = Number(flags.readPercent);
        if (!Number.isFinite(readPercent) || readPercent < 0 || readPercent > 100)
          throw new UsageError(`--read-percent: expected 0 to 100, got "${flags.readPercent}"`);
        const keys = Number(flags.keys);
        if (!Number.isInteger(keys) || keys < 1 || keys > 1_000_000)
          throw new UsageError(`--keys: expected 1 to 1000000, got "${flags.keys}"`);
        const timelineMs = flags.timeline === undefined ? undefined : Number(flags.timeline);
        if (
          timelineMs !== undefined &&
          (!Number.isInteger(timelineMs) || timelineMs < 1 || timelineMs > 60_000)
        )
          throw new UsageError(`--timeline: expected 1 to 60000 ms, got "${flags.timeline}"`);
        const testbed = loadTestbed(flags.testbed);
        const withKeys = clientIdsWithKeys(testbed);
        let ids = withKeys.slice(0, clients);
        if (givenIds !== undefined) {
          ids = givenIds;
          const missing = ids.filter((id) => !withKeys.includes(id));
          if (ids.length === 0 || new Set(ids).size !== ids.length || missing.length > 0)
            throw new UsageError(
              `--client-ids "${flags.clientIds}": ${ids.length === 0 ? "no ids" : missing.length > 0 ? `no key for ${missing.join(", ")} in ${testbed.clientKeysDir}` : "an id given twice"}`,
            );
          if (flags.clients !== undefined && clients !== ids.length)
            throw new UsageError(
              `--clients ${flags.clients} and --client-ids with ${ids.length} ids: give one or the other`,
            );
        } else if (ids.length < clients)
          throw new UsageError(
            `kv bench: ${clients} clients need ${clients} client keys in ${testbed.clientKeysDir ?? "the client key folder (keys: { clients: FOLDER })"}; found ${ids.length} (smw keys gen --out FOLDER --name <id>)`,
          );
        await withKeyErrors(flags.testbed, async () => {
          const r = await runKvBench({
            testbed,
            clientIds: ids,
            seconds,
            valueBytes,
            readPercent,
            keys,
            ...(flags.prefill ? { prefill: true } : {}),
            ...(flags.single ? { single: true } : {}),
            ...(timelineMs !== undefined ? { timelineMs } : {}),
            ...kOption(flags.k),
          });
          context.io.out(
            flags.json
              ? `${JSON.stringify(r)}\n`
              : [
                  `${r.completed} operations in ${r.seconds.toFixed(1)} s by ${r.clients} clients: ${r.opsPerSecond.toFixed(0)} ops/s`,
                  `latency p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms, max ${r.maxMs.toFixed(2)} ms`,
                  `failed ${r.failed}, longest stall ${r.longestStallMs.toFixed(0)} ms, reads ordered after unordered answers disagreed ${r.readsOrdered}`,
                  `clients' CPU ${r.clientCpuMs.toFixed(0)} ms (${r.completed > 0 ? ((r.clientCpuMs * 1000) / r.completed).toFixed(0) : "-"} µs per operation), frames read and written ${r.clientFrames} (${r.completed > 0 ? (r.clientFrames / r.completed).toFixed(1) : "-"} per operation)`,
                  ...(r.timeline === undefined
                    ? []
                    : [
                        `completed per ${r.timeline.intervalMs} ms from ${new Date(r.timeline.startedAtEpochMs).toISOString()}: ${r.timeline.completed.join(" ")}`,
                      ]),
                  "",
                ].join("\n"),
          );
          context.setExitCode(r.failed > 0 ? 1 : 0);
        });
      },
    );
  return kv;
}
