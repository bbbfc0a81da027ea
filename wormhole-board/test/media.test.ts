import { execFileSync, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import fs, {
  chmodSync,
  closeSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { syncBuiltinESMExports } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import {
  digestChunk,
  generateKeyPairFiles,
  type Manifest,
  MediaError,
  merkleRoot,
  readPrivateKey,
  readPublicKey,
  readVerifiedManifest,
  restoreImage,
  sealImage,
  verifyImage,
  writeManifest,
} from "@smw/wormhole-board";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const dir = mkdtempSync(path.join(tmpdir(), "smw-media-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const CHUNK = 64 * 1024;
let keys: ReturnType<typeof generateKeyPairFiles>;
let golden: string;
let manifestPath: string;
let manifest: Manifest;

beforeAll(() => {
  keys = generateKeyPairFiles(path.join(dir, "keys"), "operator");
  golden = path.join(dir, "golden.img");
  // 40 chunks and a partial one: the last chunk is short.
  writeFileSync(golden, randomBytes(40 * CHUNK + 12_345));
  manifest = sealImage({
    goldenPath: golden,
    privateKey: readPrivateKey(keys.privateKeyPath),
    publicKey: readPublicKey(keys.publicKeyPath),
    image: "os",
    chunkSizeBytes: CHUNK,
  });
  manifestPath = path.join(dir, "os.manifest.json");
  writeManifest(manifestPath, manifest);
});

const pub = () => readPublicKey(keys.publicKeyPath);
const sha = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex");

function liveCopy(name: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, readFileSync(golden));
  return file;
}

/**
 * Corrupts `file` at `position` with `bytes`: every byte written differs from the one it
 * replaces (a byte of the random image that already is the one wanted is inverted instead),
 * so a test's count of changed pages never depends on the image's luck.
 */
function poke(file: string, position: number, bytes: Buffer): void {
  const fd = openSync(file, "r+");
  const current = Buffer.alloc(bytes.length);
  readSync(fd, current, 0, bytes.length, position);
  const written = Buffer.from(bytes.map((b, i) => (b === current[i] ? ~b & 0xff : b)));
  writeSync(fd, written, 0, written.length, position);
  closeSync(fd);
}

describe("keys", () => {
  it("writes the private key 0600 and the public key 0644", () => {
    expect(statSync(keys.privateKeyPath).mode & 0o777).toBe(0o600);
    expect(statSync(keys.publicKeyPath).mode & 0o777).toBe(0o644);
    expect(readFileSync(keys.privateKeyPath, "utf8")).toContain("BEGIN PRIVATE KEY");
  });

  it("refuses to overwrite a key pair, and a private key others can read", () => {
    expect(() => generateKeyPairFiles(path.join(dir, "keys"), "operator")).toThrow(
      "refusing to overwrite",
    );
    const other = generateKeyPairFiles(path.join(dir, "keys"), "loose");
    chmodSync(other.privateKeyPath, 0o640);
    expect(() => readPrivateKey(other.privateKeyPath)).toThrow(
      "readable by group or others (mode 0640); run chmod 600",
    );
  });

  it("refuses files that are not Ed25519 keys", () => {
    const junk = path.join(dir, "junk.pub");
    writeFileSync(junk, "not a key\n");
    expect(() => readPublicKey(junk)).toThrow("not an Ed25519 public key");
    expect(() => readPublicKey(path.join(dir, "nope.pub"))).toThrow("no such file");
  });
});

describe("seal", () => {
  it("records size, chunks, the whole-image SHA-256 that sha256sum prints, and a Merkle root", () => {
    expect(manifest.sizeBytes).toBe(40 * CHUNK + 12_345);
    expect(manifest.chunks).toHaveLength(41);
    expect(manifest.chunkAlgorithm).toBe("blake3");
    expect(manifest.sha256).toBe(
      execFileSync("sha256sum", [golden], { encoding: "utf8" }).split(" ")[0],
    );
    const data = readFileSync(golden);
    expect(manifest.chunks[40]).toBe(
      digestChunk("blake3", data.subarray(40 * CHUNK)).toString("hex"),
    );
    expect(manifest.merkleRoot).toBe(
      merkleRoot(
        "blake3",
        manifest.chunks.map((h) => Buffer.from(h, "hex")),
      ).toString("hex"),
    );
  });

  it("uses the BLAKE3 and SHA-256 the rest of the world uses", () => {
    expect(digestChunk("blake3", Buffer.alloc(0)).toString("hex")).toBe(
      "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
    );
    expect(digestChunk("sha256", Buffer.from("abc")).toString("hex")).toBe(
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    );
  });

  it("refuses a chunk size that is not a power of two", () => {
    expect(() =>
      sealImage({
        goldenPath: golden,
        privateKey: readPrivateKey(keys.privateKeyPath),
        publicKey: pub(),
        chunkSizeBytes: 100_000,
      }),
    ).toThrow("not a power of two");
  });
});

describe("manifests are checked before anything is trusted", () => {
  const tampered = (name: string, change: (m: Record<string, unknown>) => void): string => {
    const copy = JSON.parse(readFileSync(manifestPath, "utf8"));
    change(copy);
    const file = path.join(dir, `${name}.json`);
    writeFileSync(file, JSON.stringify(copy));
    return file;
  };

  it("reads back its own manifest, verifying a given content once", () => {
    expect(readVerifiedManifest(manifestPath, pub()).chunks).toEqual(manifest.chunks);
    expect(readVerifiedManifest(manifestPath, pub())).toBe(
      readVerifiedManifest(manifestPath, pub()),
    );
    // New content under the same name is verified afresh.
    const copy = path.join(dir, "cached.json");
    writeFileSync(copy, readFileSync(manifestPath));
    expect(readVerifiedManifest(copy, pub()).image).toBe("os");
    writeFileSync(
      copy,
      readFileSync(manifestPath, "utf8").replace('"image": "os"', '"image": "0s"'),
    );
    expect(() => readVerifiedManifest(copy, pub())).toThrow("signature does not match");
  });

  it.each([
    [
      "image",
      (m: Record<string, unknown>) => {
        m.image = "sm";
      },
      "signature does not match",
    ],
    [
      "createdAt",
      (m: Record<string, unknown>) => {
        m.createdAt = "2020-01-01T00:00:00.000Z";
      },
      "signature does not match",
    ],
    [
      "chunk",
      (m: Record<string, unknown>) => {
        (m.chunks as string[])[3] = "0".repeat(64);
      },
      "signature does not match",
    ],
    [
      "sha256",
      (m: Record<string, unknown>) => {
        m.sha256 = "f".repeat(64);
      },
      "signature does not match",
    ],
    [
      "chunk count",
      (m: Record<string, unknown>) => {
        (m.chunks as string[]).pop();
      },
      "41)",
    ],
    [
      "size",
      (m: Record<string, unknown>) => {
        m.sizeBytes = 1;
      },
      "chunk digests for 1 bytes",
    ],
    [
      "chunk size",
      (m: Record<string, unknown>) => {
        m.chunkSizeBytes = 3000;
      },
      "not a power of two",
    ],
    [
      "algorithm",
      (m: Record<string, unknown>) => {
        m.chunkAlgorithm = "md5";
      },
      "chunkAlgorithm",
    ],
    [
      "extra field",
      (m: Record<string, unknown>) => {
        m.note = "trust me";
      },
      'unknown field "note"',
    ],
    [
      "missing field",
      (m: Record<string, unknown>) => {
        delete m.merkleRoot;
      },
      'missing field "merkleRoot"',
    ],
    [
      "signature",
      (m: Record<string, unknown>) => {
        (m.signature as Record<string, string>).value = `${"A".repeat(86)}==`;
      },
      "signature does not match",
    ],
    [
      "key id",
      (m: Record<string, unknown>) => {
        (m.signature as Record<string, string>).keyId = "0".repeat(32);
      },
      "not by the given public key",
    ],
  ])("an altered %s is refused", (name, change, message) => {
    const file = tampered(name.replace(/ /g, "-"), change);
    expect(() => readVerifiedManifest(file, pub())).toThrow(MediaError);
    expect(() => readVerifiedManifest(file, pub())).toThrow(message);
  });

  it("refuses a manifest signed by another key, and one that is not JSON", () => {
    const other = generateKeyPairFiles(path.join(dir, "keys"), "intruder");
    expect(() => readVerifiedManifest(manifestPath, readPublicKey(other.publicKeyPath))).toThrow(
      "not by the given public key",
    );
    const broken = path.join(dir, "broken.json");
    writeFileSync(broken, readFileSync(manifestPath, "utf8").slice(0, 100));
    expect(() => readVerifiedManifest(broken, pub())).toThrow("not JSON");
  });
});

describe("verify", () => {
  it("finds exactly the chunks that were changed", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(fc.integer({ min: 0, max: manifest.sizeBytes - 1 }), {
          minLength: 0,
          maxLength: 6,
        }),
        async (positions) => {
          const live = liveCopy("prop.img");
          const original = readFileSync(golden);
          for (const p of positions) poke(live, p, Buffer.from([(original[p] as number) ^ 0xff]));
          const result = await verifyImage(live, manifest, { batchesInFlight: 2, batchChunks: 3 });
          expect(result.badChunks).toEqual(
            [...new Set(positions.map((p) => Math.floor(p / CHUNK)))].sort((a, b) => a - b),
          );
          expect(result.clean).toBe(positions.length === 0);
          expect(result.bytesRead).toBe(manifest.sizeBytes);
        },
      ),
      { numRuns: 25 },
    );
  });

  it("refuses a truncated or oversized image, naming the file", async () => {
    const short = liveCopy("short.img");
    writeFileSync(short, readFileSync(golden).subarray(0, 1000));
    await expect(verifyImage(short, manifest, { what: "live image" })).rejects.toThrow(
      `${short}: the live image is 1000 bytes`,
    );
    await expect(verifyImage(short, manifest)).rejects.toThrow("truncated");
    const long = liveCopy("long.img");
    writeFileSync(long, Buffer.concat([readFileSync(golden), Buffer.from("x")]));
    await expect(verifyImage(long, manifest)).rejects.toThrow("oversized");
    await expect(verifyImage(path.join(dir, "none.img"), manifest)).rejects.toThrow("no such file");
  });
});

describe("restore", () => {
  it("rewrites only the 4 KiB pages that differ, and ends identical to the golden copy", async () => {
    const live = liveCopy("restore.img");
    poke(live, 5, Buffer.from("xx")); // chunk 0, page 0
    poke(live, 4096 * 3 + 7, Buffer.from("y")); // chunk 0, page 3
    poke(live, 4096 * 4 - 1, Buffer.from("zz")); // chunk 0, pages 3 and 4 (straddles)
    poke(live, 10 * CHUNK + 100, Buffer.from("w")); // chunk 10, page 0
    poke(live, 40 * CHUNK + 12_000, Buffer.from("v")); // the short last chunk
    const result = await restoreImage({ livePath: live, goldenPath: golden, manifest });
    expect(result.badChunks).toEqual([0, 10, 40]);
    expect(result.chunksRestored).toBe(3);
    expect(result.pagesWritten).toBe(5);
    // Page 2 of the short last chunk (bytes 8192-12287 of its 12345) is whole.
    expect(result.bytesWritten).toBe(5 * 4096);
    expect(result.clean).toBe(true);
    expect(sha(live)).toBe(sha(golden));
    const again = await restoreImage({ livePath: live, goldenPath: golden, manifest });
    expect(again).toMatchObject({ clean: true, badChunks: [], bytesWritten: 0 });
  });

  it("does its writes and syncs off the calling thread: the board's timers never wait for a disk", async () => {
    const live = liveCopy("off-thread.img");
    poke(live, 7 * CHUNK, Buffer.from("evil"));
    // Writing or syncing on this thread now throws; a worker thread has fs functions of its own.
    const { writeSync: realWrite, fdatasyncSync: realSync } = fs;
    const refuse = () => {
      throw new Error("a write or sync on the calling thread");
    };
    fs.writeSync = refuse;
    fs.fdatasyncSync = refuse;
    syncBuiltinESMExports();
    try {
      const result = await restoreImage({ livePath: live, goldenPath: golden, manifest });
      expect(result).toMatchObject({ clean: true, chunksRestored: 1 });
    } finally {
      fs.writeSync = realWrite;
      fs.fdatasyncSync = realSync;
      syncBuiltinESMExports();
    }
    expect(sha(live)).toBe(sha(golden));
  });

  it("lowers write-protect only around the writes and raises it on every path", async () => {
    const live = liveCopy("wp.img");
    poke(live, 3 * CHUNK, Buffer.from("evil"));
    const tamperedSha = sha(live);
    const events: string[] = [];
    const result = await restoreImage({
      livePath: live,
      goldenPath: golden,
      manifest,
      writeProtect: {
        lower: () => events.push(`lower ${sha(live) === tamperedSha ? "unwritten" : "written"}`),
        raise: () =>
          events.push(`raise ${sha(live) === sha(golden) ? "restored" : "not restored"}`),
      },
    });
    expect(result.clean).toBe(true);
    expect(events).toEqual(["lower unwritten", "raise restored"]);

    poke(live, 3 * CHUNK, Buffer.from("evil"));
    const failing: string[] = [];
    await expect(
      restoreImage({
        livePath: live,
        goldenPath: golden,
        manifest,
        writeProtect: { lower: () => failing.push("lower"), raise: () => failing.push("raise") },
        onRestoreProgress: () => {
          throw new Error("injected failure");
        },
      }),
    ).rejects.toThrow("injected failure");
    expect(failing).toEqual(["lower", "raise"]);
  });

  it("checks the golden chunks first: a bad golden copy leaves the live image untouched", async () => {
    const live = liveCopy("victim.img");
    poke(live, 7 * CHUNK + 1, Buffer.from("damage"));
    const before = sha(live);
    const badGolden = path.join(dir, "bad-golden.img");
    writeFileSync(badGolden, readFileSync(golden));
    poke(badGolden, 7 * CHUNK + 500, Buffer.from("rot"));
    const events: string[] = [];
    await expect(
      restoreImage({
        livePath: live,
        goldenPath: badGolden,
        manifest,
        writeProtect: { lower: () => events.push("lower"), raise: () => events.push("raise") },
      }),
    ).rejects.toThrow("chunk 7 of the golden image does not match its manifest");
    expect(sha(live)).toBe(before);
    expect(events).toEqual([]);
    // The same golden copy, checked on its own, is reported corrupted.
    const check = await verifyImage(badGolden, manifest, { what: "golden image" });
    expect(check.badChunks).toEqual([7]);
  });
});

function losetupAvailable(): string | undefined {
  if (process.getuid?.() !== 0) return "not root";
  const probe = spawnSync("losetup", ["--version"], { encoding: "utf8" });
  return probe.status === 0 ? undefined : "losetup not found";
}
const noLoop = losetupAvailable();
if (noLoop !== undefined) process.stdout.write(`block device tests skipped: ${noLoop}\n`);

describe.skipIf(noLoop !== undefined)("on a block device (a loop device)", () => {
  let device = "";
  afterAll(() => {
    if (device !== "") spawnSync("losetup", ["-d", device]);
  });

  it("seals, verifies and restores a block device like a file", async () => {
    const backing = path.join(dir, "loop-backing.img");
    writeFileSync(backing, readFileSync(golden).subarray(0, 32 * CHUNK));
    device = execFileSync("losetup", ["-f", "--show", backing], { encoding: "utf8" }).trim();
    const sealed = sealImage({
      goldenPath: device,
      privateKey: readPrivateKey(keys.privateKeyPath),
      publicKey: pub(),
      chunkSizeBytes: CHUNK,
    });
    expect(sealed.sizeBytes).toBe(32 * CHUNK);
    const goldenCopy = path.join(dir, "loop-golden.img");
    writeFileSync(goldenCopy, readFileSync(backing));
    poke(device, 9 * CHUNK + 3, Buffer.from("loop"));
    const check = await verifyImage(device, sealed);
    expect(check.badChunks).toEqual([9]);
    const result = await restoreImage({
      livePath: device,
      goldenPath: goldenCopy,
      manifest: sealed,
    });
    expect(result).toMatchObject({ clean: true, chunksRestored: 1, bytesWritten: 4096 });
  });
});
