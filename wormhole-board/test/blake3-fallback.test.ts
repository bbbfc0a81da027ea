/**
 * Where the native BLAKE3 binding cannot load (no build for the platform, as on 32-bit ARM), the
 * board hashes with the pure-JS implementation and says so once, and its digests are the same:
 * an image sealed on one board verifies on another, whichever implementation each has.
 */
import { spawnSync } from "node:child_process";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { blake3Backend, digestChunk, sealImage, verifyImage } from "../src/index.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.resolve(here, "../dist/index.js");
const hide = path.join(here, "fixtures/hide-native-blake3.mjs");
const dir = mkdtempSync(path.join(tmpdir(), "smw-blake3-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs `body` (an async function body with `board` the dist module) in a node whose native binding is hidden. */
function withoutNative(body: string): { stdout: string; stderr: string; status: number | null } {
  const script = `import(${JSON.stringify(dist)}).then(async (board) => { ${body} });`;
  const run = spawnSync(process.execPath, ["--import", hide, "-e", script], {
    encoding: "utf8",
    timeout: 30_000,
  });
  return { stdout: run.stdout, stderr: run.stderr, status: run.status };
}

describe("BLAKE3 without its native binding", () => {
  it("loads, names the pure-JS backend and why, and warns once on stderr", () => {
    const run = withoutNative(`process.stdout.write(JSON.stringify(board.blake3Backend));`);
    expect(run.status).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({
      kind: "pure-js",
      reason: "Cannot find native binding (hidden by the test)",
    });
    const warnings = run.stderr.split("\n").filter((line) => line.includes("SMW_BLAKE3_PURE_JS"));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/cannot load here .*pure-JS/);
  });

  it("gives the digests the native binding gives, and the published test vector", () => {
    expect(blake3Backend).toEqual({ kind: "native" });
    const chunk = randomBytes(1024 * 1024 + 17);
    const file = path.join(dir, "chunk");
    writeFileSync(file, chunk);
    const run = withoutNative(`
      const fs = await import("node:fs");
      const out = {
        empty: board.digestChunk("blake3", Buffer.alloc(0)).toString("hex"),
        chunk: board.digestChunk("blake3", fs.readFileSync(${JSON.stringify(file)})).toString("hex"),
      };
      process.stdout.write(JSON.stringify(out));`);
    expect(run.status).toBe(0);
    const out = JSON.parse(run.stdout);
    // BLAKE3 of the empty input, from the BLAKE3 specification's test vectors.
    expect(out.empty).toBe("af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262");
    expect(out.chunk).toBe(digestChunk("blake3", chunk).toString("hex"));
  });

  it("seals an image that a board with the native binding verifies clean", async () => {
    const image = path.join(dir, "image");
    writeFileSync(image, randomBytes(3 * 1024 * 1024 + 5));
    const keys = generateKeyPairSync("ed25519");
    const pem = (key: { export(o: object): string | Buffer }) =>
      key.export({ type: key === keys.privateKey ? "pkcs8" : "spki", format: "pem" }).toString();
    const run = withoutNative(`
      const crypto = await import("node:crypto");
      const manifest = board.sealImage({
        goldenPath: ${JSON.stringify(image)},
        privateKey: crypto.createPrivateKey(${JSON.stringify(pem(keys.privateKey))}),
        publicKey: crypto.createPublicKey(${JSON.stringify(pem(keys.publicKey))}),
      });
      process.stdout.write(JSON.stringify(manifest));`);
    expect(run.status).toBe(0);
    const manifest = JSON.parse(run.stdout);
    expect(manifest.chunkAlgorithm).toBe("blake3");
    const native = sealImage({ goldenPath: image, ...keys });
    expect(manifest.chunks).toEqual(native.chunks);
    expect(manifest.merkleRoot).toBe(native.merkleRoot);
    expect(await verifyImage(image, manifest)).toMatchObject({ clean: true, badChunks: [] });
  });
});
