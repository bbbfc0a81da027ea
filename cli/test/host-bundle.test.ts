/**
 * `smw host ...` runs from one bundled file (cli/dist/smw-host.bundle.mjs, made by the build):
 * it must be there, be newer than the code it was made from (or bin/smw.js would fall back to the
 * modules), and hold the host's programs whole.
 */
import { statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const bundle = path.join(root, "cli", "dist", "smw-host.bundle.mjs");

async function runBundled(...argv: string[]) {
  const { runSmw } = (await import(pathToFileURL(bundle).href)) as typeof import("../src/smw.js");
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

describe("the host's one-file bundle", () => {
  it("is newer than the code it was made from", () => {
    const madeMs = statSync(bundle).mtimeMs;
    for (const part of ["wiring", "host-agent", "cli"])
      expect(
        statSync(path.join(root, part, "dist", ".tsbuildinfo")).mtimeMs,
        part,
      ).toBeLessThanOrEqual(madeMs);
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
});
