import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  digestChunk,
  generateKeyPairFiles,
  MediaError,
  MediaWorkers,
  readPrivateKey,
  readPublicKey,
  sealImage,
  verifyImage,
} from "@smw/wormhole-board";
import { afterAll, describe, expect, it } from "vitest";

const dir = mkdtempSync(path.join(tmpdir(), "smw-media-workers-"));
const pool = new MediaWorkers(2);
afterAll(async () => {
  await pool.close();
  rmSync(dir, { recursive: true, force: true });
});

const CHUNK = 4096;
const image = path.join(dir, "image.img");
const content = randomBytes(37 * CHUNK + 100);
writeFileSync(image, content);
const hashJob = (from: number, to: number, file = image) =>
  ({
    kind: "hash",
    file,
    sizeBytes: content.length,
    chunkSizeBytes: CHUNK,
    algorithm: "sha256",
    from,
    to,
  }) as const;
const expected = (i: number) =>
  digestChunk("sha256", content.subarray(i * CHUNK, (i + 1) * CHUNK)).toString("hex");

describe("media workers", () => {
  it("runs every job on the threads it started with: a verify starts no thread", async () => {
    const keys = generateKeyPairFiles(path.join(dir, "keys"), "operator");
    const manifest = sealImage({
      goldenPath: image,
      privateKey: readPrivateKey(keys.privateKeyPath),
      publicKey: readPublicKey(keys.publicKeyPath),
      image: "os",
      chunkSizeBytes: CHUNK,
    });
    const before = pool.threadIds();
    expect(before).toHaveLength(2);
    for (let round = 0; round < 3; round++) {
      const result = await verifyImage(image, manifest, { mediaWorkers: pool, batchChunks: 4 });
      expect(result.clean).toBe(true);
    }
    expect(pool.threadIds()).toEqual(before);
    expect(pool.threadsStarted).toBe(2);
  });

  it("queues more jobs than threads and answers each with its own batch", async () => {
    const jobs = Array.from({ length: 9 }, (_, i) => pool.run<string[]>(hashJob(i * 4, i * 4 + 4)));
    const answers = await Promise.all(jobs);
    answers.forEach((digests, i) => {
      expect(digests).toEqual([0, 1, 2, 3].map((k) => expected(i * 4 + k)));
    });
  });

  it("fails a job on bad input with the file named, and keeps serving", async () => {
    const missing = path.join(dir, "missing.img");
    await expect(pool.run(hashJob(0, 1, missing))).rejects.toThrow(MediaError);
    await expect(pool.run(hashJob(0, 1, missing))).rejects.toThrow(missing);
    expect(await pool.run<string[]>(hashJob(36, 38))).toEqual([expected(36), expected(37)]);
  });

  it("refuses jobs once closed", async () => {
    const closing = new MediaWorkers(1);
    await closing.close();
    await expect(closing.run(hashJob(0, 1))).rejects.toThrow("closed");
  });

  it("fails every job with the reason when its threads cannot start, and does not restart them", async () => {
    const broken = path.join(dir, "broken-worker.mjs");
    writeFileSync(broken, 'throw new Error("cannot load the media code");\n');
    const pool = new MediaWorkers(1, broken);
    await expect(pool.run(hashJob(0, 1))).rejects.toThrow(
      "the media workers cannot start: cannot load the media code",
    );
    await expect(pool.run(hashJob(0, 1))).rejects.toThrow("cannot load the media code");
    expect(pool.threadsStarted).toBe(1);
    await pool.close();
  });

  it("does not keep an idle process alive, and does keep it alive for a job", () => {
    const entry = fileURLToPath(new URL("../dist/index.js", import.meta.url));
    const script = `
      const { MediaWorkers } = await import(${JSON.stringify(entry)});
      const pool = new MediaWorkers(1);
      pool.run(${JSON.stringify(hashJob(0, 2))}).then((d) => console.log("answered", d.length));
    `;
    const child = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
      encoding: "utf8",
      timeout: 20_000,
    });
    expect(child.error).toBeUndefined();
    expect(child.status).toBe(0);
    expect(child.stdout.trim()).toBe("answered 2");
  });

  it("runs its threads ten nice steps below the thread that started them, not at a fixed level", () => {
    const entry = fileURLToPath(new URL("../dist/index.js", import.meta.url));
    // In a process of its own: the nice value of the thread that starts the pool is set first.
    const niceOfWorkers = (creatorNice: number) => {
      const script = `
        const { setPriority, getPriority } = await import("node:os");
        try { setPriority(0, ${creatorNice}); } catch { console.log("not permitted"); process.exit(0); }
        const { MediaWorkers } = await import(${JSON.stringify(entry)});
        const pool = new MediaWorkers(1);
        await pool.run(${JSON.stringify(hashJob(0, 1))});
        console.log(JSON.stringify({ creator: getPriority(0), workers: pool.niceValues() }));
        await pool.close();
      `;
      const child = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
        encoding: "utf8",
        timeout: 20_000,
      });
      expect(child.status, child.stderr).toBe(0);
      const out = child.stdout.trim();
      return out === "not permitted"
        ? undefined
        : (JSON.parse(out) as { creator: number; workers: number[] });
    };
    // A board at normal priority: its workers at nice 10, as before.
    expect(niceOfWorkers(3)).toEqual({ creator: 3, workers: [13] });
    expect(niceOfWorkers(15)).toEqual({ creator: 15, workers: [19] });
    // A board whose event loop was raised (the rig's boards, `smw board run` without real-time):
    // its workers at nice 0, level with other work on the machine rather than behind all of it.
    const raised = niceOfWorkers(-10);
    if (raised === undefined)
      process.stdout.write(
        "raising a thread's priority is not permitted here: the -10 case skipped\n",
      );
    else expect(raised).toEqual({ creator: -10, workers: [0] });
  });
});
