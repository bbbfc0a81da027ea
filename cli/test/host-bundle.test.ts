/**
 * `smw host ...` runs from one bundled file (cli/dist/smw-host.bundle.cjs, made by the build) and
 * V8's code cache for it: the bundle must be there, be newer than the code it was made from (or
 * bin/smw.js would fall back to the modules), and hold the host's programs whole; the cache must
 * be taken when it is the bundle's, and left unused, the bundle still running, when it is not.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { CliIo, ExitCode } from "@smw/wiring/cli";
import { afterAll, describe, expect, it } from "vitest";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const bundle = path.join(root, "cli", "dist", "smw-host.bundle.cjs");
const loader = pathToFileURL(path.join(root, "bin", "host-bundle.js")).href;
const scratch = mkdtempSync(path.join(tmpdir(), "smw-host-bundle-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

type RunSmw = (argv: readonly string[], io: CliIo) => Promise<ExitCode>;

async function runBundled(...argv: string[]) {
  const { loadHostBundle } = (await import(loader)) as {
    loadHostBundle: () => { exports: { runSmw: RunSmw } };
  };
  const { runSmw } = loadHostBundle().exports;
  let out = "";
  const code = await runSmw(argv, {
    out: (text) => {
      out += text;
    },
    err: (text) => {
      out += text;
    },
    isTty: false,
  });
  return { code, out };
}

/**
 * In a node process of its own (V8 takes a cache only under the flags it was made with): how the
 * loader found `cacheFile`, and the exit status of `smw kv --help` from the bundle it loaded.
 */
function loadIn(cacheFile: string): { cache: string; code: number } {
  const script = `
    const { loadHostBundle } = await import(${JSON.stringify(loader)});
    const loaded = loadHostBundle(${JSON.stringify(bundle)}, ${JSON.stringify(cacheFile)});
    const code = await loaded.exports.runSmw(["kv", "--help"], { out() {}, err() {}, isTty: false });
    process.stdout.write(JSON.stringify({ cache: loaded.cache, code }));`;
  return JSON.parse(
    execFileSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" }),
  ) as { cache: string; code: number };
}

describe("the host's one-file bundle", () => {
  it("is newer than the code it was made from, and its code cache no older than it", () => {
    const madeMs = statSync(bundle).mtimeMs;
    for (const part of ["wiring", "host-agent", "cli"])
      expect(
        statSync(path.join(root, part, "dist", ".tsbuildinfo")).mtimeMs,
        part,
      ).toBeLessThanOrEqual(madeMs);
    expect(statSync(`${bundle}.code-cache`).mtimeMs).toBeGreaterThanOrEqual(madeMs);
  });

  it("holds the host's programs and the service's, and nothing else of smw", async () => {
    const help = await runBundled("host", "--help");
    expect(help.code).toBe(0);
    expect(help.out).toMatch(/run \[options\]/);
    const missing = await runBundled(
      "host",
      "run",
      "--testbed",
      "/nonexistent/t.yaml",
      "--host",
      "h1",
    );
    expect(missing.code).toBe(2);
    expect(missing.out).toContain("/nonexistent/t.yaml");
    // The replica process (started by its agent over IPC, which host-agent.test.ts runs).
    const replica = await runBundled("host", "replica", "--help");
    expect(replica.code).toBe(0);
    expect(replica.out).toMatch(/the replica process a host agent supervises/);
    const kv = await runBundled("kv", "--help");
    expect(kv.code).toBe(0);
    expect(kv.out).toMatch(/serve \[options\]/);
    expect(kv.out).toMatch(/bench \[options\]/);
    const rig = await runBundled("rig", "up");
    expect(rig.code).toBe(2);
    expect(rig.out).toMatch(/unknown command .rig./);
  });

  it("starts from the build's code cache", () => {
    expect(loadIn(`${bundle}.code-cache`)).toEqual({ cache: "used", code: 0 });
  });

  it("runs without its cache when the cache is missing, another bundle's, corrupted or refused by V8", () => {
    const made = readFileSync(`${bundle}.code-cache`);
    const newline = made.indexOf(10);
    expect(made.subarray(0, newline).toString("latin1")).toMatch(
      /^smw-code-cache-1 [0-9a-f]{64} [0-9a-f]{64}$/,
    );
    const [, , bodyDigest] = made.subarray(0, newline).toString("latin1").split(" ");
    const body = made.subarray(newline + 1);
    const withHeader = (bundleDigest: string, digest: string, data: Buffer) =>
      Buffer.concat([Buffer.from(`smw-code-cache-1 ${bundleDigest} ${digest}\n`), data]);
    const ours = made.subarray(0, newline).toString("latin1").split(" ")[1] as string;

    expect(loadIn(path.join(scratch, "none"))).toEqual({ cache: "absent", code: 0 });
    // There but not readable (a folder here: root reads any file whatever its mode).
    mkdirSync(path.join(scratch, "a-folder"));
    expect(loadIn(path.join(scratch, "a-folder"))).toEqual({ cache: "unreadable", code: 0 });

    // V8 itself would take this one (it checks only the source's length): the header says whose.
    const other = path.join(scratch, "other-bundle");
    writeFileSync(other, withHeader("0".repeat(64), bodyDigest as string, body));
    expect(loadIn(other)).toEqual({ cache: "stale", code: 0 });

    const notACache = path.join(scratch, "not-a-cache");
    writeFileSync(notACache, "hello\n");
    expect(loadIn(notACache)).toEqual({ cache: "stale", code: 0 });

    // Bytes flipped past V8's own header, which is all V8 checks: taken, this crashed node or ran
    // garbled code. The digest of the cache's bytes keeps it out.
    const garbled = Buffer.from(body);
    for (let i = 256; i < garbled.length; i += 97) garbled[i] = (garbled[i] as number) ^ 0xff;
    const corrupt = path.join(scratch, "corrupt");
    writeFileSync(corrupt, withHeader(ours, bodyDigest as string, garbled));
    expect(loadIn(corrupt)).toEqual({ cache: "corrupt", code: 0 });

    // Whole and intact, but not V8's (its own header broken): V8 refuses it.
    const notV8s = Buffer.from(body);
    for (let i = 0; i < 16; i++) notV8s[i] = (notV8s[i] as number) ^ 0xff;
    const refused = path.join(scratch, "refused");
    writeFileSync(
      refused,
      withHeader(ours, createHash("sha256").update(notV8s).digest("hex"), notV8s),
    );
    expect(loadIn(refused)).toEqual({ cache: "rejected", code: 0 });
  });

  it("runs in strict mode, as the modules it is made from do", () => {
    expect(readFileSync(bundle, "utf8").startsWith('"use strict";')).toBe(true);
  });
});
