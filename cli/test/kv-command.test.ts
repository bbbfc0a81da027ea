import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAX_PARTITION_BYTES, MAX_VALUE_BYTES } from "../../host-agent/src/kv/kv-operation.js";
import { partitionOf } from "../../host-agent/src/kv/partition-tree.js";
import type { ReplicaServer } from "../../host-agent/src/service/replica-server.js";
import { connectClient, startReplica } from "../../host-agent/src/service/service-runtime.js";
import {
  makeServiceTestbed,
  type ServiceTestbed,
} from "../../host-agent/src/service/service-testbed.js";
import { smw } from "./run-smw.js";

describe("smw kv against four replicas", () => {
  let bed: ServiceTestbed;
  const servers: ReplicaServer[] = [];
  beforeAll(async () => {
    // No view change: megabyte values on a starved CPU (this file beside the rig's in `npm test`)
    // can outlast a 1 s view-change timeout, and the view changes carrying them longer still
    // (SAFETY.md, "What an answer may hold"); these tests are about the commands.
    bed = makeServiceTestbed({
      n: 4,
      kPrime: 1,
      k: 0,
      basePort: 27800,
      clients: 2,
      viewChangeTimeout: "60s",
    });
    for (const h of bed.testbed.hosts)
      servers.push(await startReplica(bed.testbed, h.id, { k: 0 }));
  });
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.close()));
    bed.remove();
  });
  const kv = (...args: string[]) =>
    smw("kv", ...args, "--testbed", bed.file, "--client", "client1", "--k", "0");
  /** A one-second closed-loop load, its figures as JSON. */
  const shortBench = (...args: string[]) =>
    smw("kv", "bench", "--testbed", bed.file, "--seconds", "1", "--k", "0", "--json", ...args);

  it("puts, gets, compares-and-sets, scans and deletes, with the exit statuses people script against", async () => {
    expect(await kv("put", "colour", "blue")).toMatchObject({
      code: 0,
      stdout: "ok (previous: absent)\n",
    });
    expect(await kv("get", "colour")).toMatchObject({ code: 0, stdout: "blue\n" });
    const json = await kv("get", "colour", "--json");
    expect(JSON.parse(json.stdout)).toMatchObject({ op: "get", value: "blue" });
    expect(await kv("cas", "colour", "red", "green")).toMatchObject({
      code: 1,
      stdout: "not swapped: the value is blue\n",
    });
    expect(await kv("cas", "colour", "blue", "green")).toMatchObject({ code: 0, stdout: "ok\n" });
    expect(await kv("cas", "shape", "round", "--expect-absent")).toMatchObject({ code: 0 });
    expect((await kv("scan", "a", "z")).stdout).toBe("colour\tgreen\nshape\tround\n");
    // FROM alone: to the last key; --limit with it is a limit, not the upper bound.
    expect(await kv("scan", "d")).toMatchObject({ code: 0, stdout: "shape\tround\n" });
    expect(await kv("scan", "a", "--limit", "1")).toMatchObject({
      code: 0,
      stdout: "colour\tgreen\n",
    });
    expect(await kv("del", "shape")).toMatchObject({ code: 0, stdout: "ok (previous: round)\n" });
    expect(await kv("get", "shape")).toMatchObject({ code: 0, stdout: "(absent)\n" });
  }, 30_000);

  it("says when a scan's answer was cut by its size bound, and --after reads the rest", async () => {
    // Values too large for a command line, written by a client of the test's own.
    const writer = connectClient(bed.testbed, { clientId: "client2", k: 0 });
    const big = (c: string) => c.repeat(900 * 1024);
    try {
      for (const c of ["p", "q", "r"])
        await writer.call({ op: "put", key: `big-${c}`, value: big(c) });
    } finally {
      await writer.close();
    }
    // Two entries of 900 KiB fit the 2 MiB bound, three do not.
    const first = await kv("scan", "big-", "big.", "--json");
    expect(JSON.parse(first.stdout)).toMatchObject({
      op: "scan",
      entries: [
        ["big-p", big("p")],
        ["big-q", big("q")],
      ],
      more: true,
    });
    const said = await kv("scan", "big-", "big.");
    expect(said.stdout.trimEnd().split("\n").at(-1)).toBe(
      `(more: the answer's size bound ended it; the rest: scan from "big-q" with --after)`,
    );
    const rest = await kv("scan", "big-q", "big.", "--after", "--json");
    const restResult = JSON.parse(rest.stdout);
    expect(restResult).toMatchObject({ op: "scan", entries: [["big-r", big("r")]] });
    expect(restResult.more).toBeUndefined();
    const tooLong = await kv("scan", "k".repeat(1024), "--after");
    expect(tooLong.code).toBe(2);
    expect(tooLong.stderr).toMatch(/--after: FROM is 1024 bytes, the longest a key may be/);
  }, 60_000);

  it("refuses a write its key's partition cannot hold, the same at every replica, exit 1", async () => {
    // Keys a client chose to share one partition, filled to a few bytes under the bound by a
    // client of the test's own (values too large for a command line).
    const home = partitionOf("full-0");
    const keys: string[] = [];
    for (let i = 0; keys.length < 33; i++)
      if (partitionOf(`full-${i}`) === home) keys.push(`full-${i}`);
    const writer = connectClient(bed.testbed, { clientId: "client2", k: 0 });
    const entryBytes = (key: string, valueBytes: number) => 8 + key.length + valueBytes;
    let partitionBytes = 4;
    try {
      for (const key of keys.slice(0, 31)) {
        await writer.call({ op: "put", key, value: "f".repeat(MAX_VALUE_BYTES) }, 30_000);
        partitionBytes += entryBytes(key, MAX_VALUE_BYTES);
      }
      const last = keys[31] as string;
      const room = MAX_PARTITION_BYTES - partitionBytes - entryBytes(last, 0);
      const fill = room - 10; // leaves 10 bytes
      await writer.call({ op: "put", key: last, value: "f".repeat(fill) }, 30_000);
    } finally {
      await writer.close();
    }
    const over = keys[32] as string;
    // An entry of 8 + key + 3 bytes is over 10 bytes: refused, nothing written.
    expect(await kv("put", over, "abc")).toMatchObject({
      code: 1,
      stdout: `refused: the key's partition would pass ${MAX_PARTITION_BYTES} bytes; nothing written (the value is absent)\n`,
    });
    expect(await kv("get", over)).toMatchObject({ code: 0, stdout: "(absent)\n" });
    expect(await kv("cas", over, "abc", "--expect-absent")).toMatchObject({ code: 1 });
    expect((await kv("cas", over, "abc", "--expect-absent")).stdout).toMatch(/^refused: /);
    // Making room: a delete, then the same write goes through.
    expect(await kv("del", keys[0] as string)).toMatchObject({ code: 0 });
    expect(await kv("put", over, "abc")).toMatchObject({
      code: 0,
      stdout: "ok (previous: absent)\n",
    });
  }, 120_000);

  it("names what is wrong with bad input, exit 2", async () => {
    const noKey = await smw(
      "kv",
      "get",
      "x",
      "--testbed",
      bed.file,
      "--client",
      "nobody",
      "--k",
      "0",
    );
    expect(noKey.code).toBe(2);
    expect(noKey.stderr).toMatch(
      /no key for client "nobody" in .*; clients with keys there: client1, client2 \(pass --client ID, or --key FILE\)/,
    );
    const oneValue = await kv("cas", "colour", "green");
    expect(oneValue.code).toBe(2);
    expect(oneValue.stderr).toMatch(
      /cas: give KEY EXPECTED NEW, or KEY NEW --expect-absent; got 1 value after the key/,
    );
    const badLimit = await kv("scan", "a", "--limit", "none");
    expect(badLimit.code).toBe(2);
    expect(badLimit.stderr).toMatch(
      /scan: --limit: expected a whole number of at least 1, got "none"/,
    );
    // The testbed's k = 1 with n = 4: too few replicas for it, said as such (not an internal error).
    const tooFew = await smw("kv", "get", "x", "--testbed", bed.file, "--client", "client1");
    expect(tooFew.code).toBe(2);
    expect(tooFew.stderr).toMatch(
      /: n = 4 replicas cannot tolerate k' = 1 Byzantine plus k = 1 recovering: .*\(--k N sets the replicas silent for rejuvenation at once; --k 0: none\)/,
    );
    const badTimeout = await kv("get", "x", "--timeout", "soon");
    expect(badTimeout.code).toBe(2);
    expect(badTimeout.stderr).toMatch(/--timeout: .*soon/);
    const emptyKey = await kv("put", "", "v");
    expect(emptyKey).toMatchObject({ code: 2 });
    expect(emptyKey.stderr).toMatch(/put: key/);
    const serveBoth = await smw("kv", "serve", "--testbed", bed.file);
    expect(serveBoth.code).toBe(2);
    expect(serveBoth.stderr).toMatch(/either --host ID or --single/);
    const benchTooMany = await smw(
      "kv",
      "bench",
      "--testbed",
      bed.file,
      "--clients",
      "5",
      "--seconds",
      "1",
    );
    expect(benchTooMany.code).toBe(2);
    expect(benchTooMany.stderr).toMatch(/5 clients need 5 client keys .* found 2/);
    const unknownId = await smw(
      "kv",
      "bench",
      "--testbed",
      bed.file,
      "--client-ids",
      "client1,nobody",
    );
    expect(unknownId.code).toBe(2);
    expect(unknownId.stderr).toMatch(/--client-ids "client1,nobody": no key for nobody in /);
    const badTimeline = await smw("kv", "bench", "--testbed", bed.file, "--timeline", "0");
    expect(badTimeline.code).toBe(2);
    expect(badTimeline.stderr).toMatch(/--timeline: expected 1 to 60000 ms, got "0"/);
  }, 30_000);

  it("exits 3 when no quorum answers in time, not 1 as a cas that did not swap", async () => {
    const nobody = makeServiceTestbed({ n: 4, kPrime: 1, k: 0, basePort: 27860, clients: 1 });
    try {
      const r = await smw(
        "kv",
        "get",
        "x",
        "--testbed",
        nobody.file,
        "--client",
        "client1",
        "--timeout",
        "1s",
        "--k",
        "0",
      );
      expect(r.code).toBe(3);
      expect(r.stderr).toMatch(/smw kv get: .*within 1000 ms/);
    } finally {
      nobody.remove();
    }
  }, 30_000);

  it("benchmarks with the clients named, not the first in sorted order", async () => {
    const r = await shortBench("--client-ids", "client2");
    expect(r.code).toBe(0);
    const figures = JSON.parse(r.stdout);
    expect(figures.clients).toBe(1);
    expect(figures.completed).toBeGreaterThan(5);
  }, 30_000);

  it("benchmarks a short closed-loop load", async () => {
    const r = await shortBench("--clients", "2", "--timeline", "250");
    expect(r.code).toBe(0);
    const figures = JSON.parse(r.stdout);
    expect(figures.completed).toBeGreaterThan(10);
    expect(figures.failed).toBe(0);
    expect(figures.p99Ms).toBeGreaterThanOrEqual(figures.p50Ms);
    // n = 4, q = 3: a get goes to q replicas and takes q answers, a put goes to all four; so at
    // least six frames each, and no more than every replica asked and answering twice.
    expect(figures.clientFrames).toBeGreaterThanOrEqual(6 * figures.completed);
    expect(figures.clientFrames).toBeLessThanOrEqual(16 * figures.completed);
    // Every operation completed falls in one interval of the timeline.
    expect(figures.timeline.intervalMs).toBe(250);
    expect(figures.timeline.completed.length).toBeGreaterThanOrEqual(4);
    expect(figures.timeline.completed.reduce((a: number, b: number) => a + b, 0)).toBe(
      figures.completed,
    );
  }, 30_000);
});
