import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { smw as runInProcess } from "../../cli/test/run-smw.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const bin = path.join(root, "bin", "smw.js");
const dir = mkdtempSync(path.join(tmpdir(), "smw-image-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/**
 * `smw ARGS`, in this process: each command is what a user runs, without a Node start per call
 * (the restore killed part-way below runs as its own process, which is what it needs).
 */
const smw = (...args: string[]) => runInProcess(...args);

/** `smw image verify FILE` against the sealed manifest, with `extra` flags. */
const verify = (file: string, ...extra: string[]) =>
  smw("image", "verify", file, "--manifest", manifest, "--pub", pub, ...extra);

const sha = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex");
const golden = path.join(dir, "golden.img");
const manifest = path.join(dir, "golden.manifest.json");
const key = path.join(dir, "keys", "operator.key");
const pub = path.join(dir, "keys", "operator.pub");
const CHUNK = 256 * 1024;

function copyGolden(name: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, readFileSync(golden));
  return file;
}

/** Inverts one byte: a change whatever the (random) byte was, unlike writing a fixed one. */
function flip(file: string, position: number): void {
  const fd = openSync(file, "r+");
  const byte = Buffer.alloc(1);
  readSync(fd, byte, 0, 1, position);
  byte[0] = (byte[0] as number) ^ 0xff;
  writeSync(fd, byte, 0, 1, position);
  closeSync(fd);
}

function poke(file: string, position: number, text: string): void {
  const fd = openSync(file, "r+");
  writeSync(fd, Buffer.from(text), 0, text.length, position);
  closeSync(fd);
}

beforeAll(async () => {
  expect(existsSync(path.join(root, "cli", "dist", "smw.js")), "build first: npm run build").toBe(
    true,
  );
  writeFileSync(golden, randomBytes(64 * CHUNK));
  expect((await smw("keys", "gen", "--out", path.join(dir, "keys"))).code).toBe(0);
  const sealed = await smw(
    "image",
    "seal",
    golden,
    "--key",
    key,
    "-o",
    manifest,
    "--chunk-size",
    "256KiB",
    "--name",
    "os",
  );
  expect(sealed.code).toBe(0);
});

describe("smw image", () => {
  it("seal writes a manifest whose sha256 is what sha256sum prints", async () => {
    const m = JSON.parse(readFileSync(manifest, "utf8"));
    expect(m).toMatchObject({
      image: "os",
      chunkSizeBytes: CHUNK,
      sizeBytes: 64 * CHUNK,
      sha256: sha(golden),
    });
  });

  it("verify: exit 0 clean, 1 corrupted with the chunk indexes in JSON", async () => {
    const live = copyGolden("live.img");
    const clean = await verify(live, "--json");
    expect(clean.code).toBe(0);
    expect(JSON.parse(clean.stdout)).toMatchObject({
      clean: true,
      badChunks: [],
      bytesRead: 64 * CHUNK,
    });
    flip(live, 5 * CHUNK + 9);
    flip(live, 63 * CHUNK);
    const bad = await verify(live, "--json");
    expect(bad.code).toBe(1);
    expect(JSON.parse(bad.stdout)).toMatchObject({
      clean: false,
      badChunks: [5, 63],
      bytesRead: 64 * CHUNK,
    });
    const text = await verify(live);
    expect(text.stdout).toContain("CORRUPTED, 2 of 64 chunks differ");
  });

  it("verify --golden finds a tampered golden medium", async () => {
    const goldenCopy = copyGolden("golden-copy.img");
    expect((await verify(goldenCopy, "--golden")).code).toBe(0);
    poke(goldenCopy, 17, "rootkit");
    const result = await verify(goldenCopy, "--golden");
    expect(result.code).toBe(1);
    expect(result.stdout).toContain("the golden copy itself is bad");
  });

  it("restore repairs what verify found and reports the bytes written", async () => {
    const live = copyGolden("restore.img");
    poke(live, 2 * CHUNK + 4096 * 5, "abc");
    poke(live, 40 * CHUNK, "def");
    const result = await smw(
      "image",
      "restore",
      live,
      "--from",
      golden,
      "--manifest",
      manifest,
      "--pub",
      pub,
      "--json",
    );
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({
      clean: true,
      chunksRestored: 2,
      bytesWritten: 8192,
    });
    expect(sha(live)).toBe(sha(golden));
  });

  it("restore drives a simulated testbed's write-protect line, and refuses a board without one", async () => {
    const testbed = path.join(root, "wiring", "test", "fixtures", "valid-serial.yaml");
    const live = copyGolden("wp.img");
    flip(live, 1);
    const ok = await smw(
      "image",
      "restore",
      live,
      "--from",
      golden,
      "--manifest",
      manifest,
      "--pub",
      pub,
      "--testbed",
      testbed,
      "--board",
      "b1",
    );
    expect(ok.stderr).toContain("has no write-protect line");
    expect(ok.code).toBe(2);
    const rig = path.join(root, "wiring", "examples", "rig-6.yaml");
    const done = await smw(
      "image",
      "restore",
      live,
      "--from",
      golden,
      "--manifest",
      manifest,
      "--pub",
      pub,
      "--testbed",
      rig,
      "--board",
      "b3",
    );
    expect(done.code).toBe(0);
    expect(done.stdout).toContain(
      "restored: 1 of 1 corrupted chunks repaired, 4096 bytes written in 1 pages",
    );
  });

  it.each([
    [
      ["image", "verify", "LIVE", "--manifest", "MANIFEST", "--pub", "WRONGPUB"],
      "not by the given public key",
    ],
    [["image", "verify", "SHORT", "--manifest", "MANIFEST", "--pub", "PUB"], "truncated"],
    [["image", "verify", "NOFILE", "--manifest", "MANIFEST", "--pub", "PUB"], "no such file"],
    [
      ["image", "verify", "LIVE", "--manifest", "NOFILE", "--pub", "PUB"],
      "cannot read the manifest (no such file)",
    ],
    [
      ["image", "seal", "GOLDEN", "--key", "KEY", "-o", "OUT", "--chunk-size", "3000"],
      "not a power of two",
    ],
    [
      ["image", "seal", "GOLDEN", "--key", "KEY", "-o", "OUT", "--chunk-size", "lots"],
      "expected a size",
    ],
    [["image", "seal", "GOLDEN", "--key", "LOOSEKEY", "-o", "OUT"], "readable by group or others"],
    [
      ["image", "restore", "LIVE", "--from", "BADGOLDEN", "--manifest", "MANIFEST", "--pub", "PUB"],
      "golden copy is corrupted, nothing was written",
    ],
    [
      [
        "image",
        "restore",
        "LIVE",
        "--from",
        "GOLDEN",
        "--manifest",
        "MANIFEST",
        "--pub",
        "PUB",
        "--board",
        "b1",
      ],
      "--testbed and --board go together",
    ],
    [["keys", "gen", "--out", "KEYDIR"], "refusing to overwrite"],
  ])("bad input %j exits 2: %s", async (args, message) => {
    const live = copyGolden("bad-input-live.img");
    // Inverted, not overwritten: a fixed byte equals the random golden one once in 256 runs,
    // and then there is nothing to restore.
    flip(live, 100);
    const liveBefore = sha(live);
    const short = path.join(dir, "short.img");
    writeFileSync(short, "tiny");
    const badGolden = copyGolden("bad-golden.img");
    flip(badGolden, 100);
    const wrong = path.join(dir, "wrong");
    if (!existsSync(`${wrong}/intruder.pub`))
      await smw("keys", "gen", "--out", wrong, "--name", "intruder");
    const loose = path.join(dir, "loose.key");
    writeFileSync(loose, readFileSync(key), { mode: 0o644 });
    const names: Record<string, string> = {
      LIVE: live,
      SHORT: short,
      NOFILE: path.join(dir, "missing"),
      MANIFEST: manifest,
      PUB: pub,
      WRONGPUB: `${wrong}/intruder.pub`,
      GOLDEN: golden,
      BADGOLDEN: badGolden,
      KEY: key,
      LOOSEKEY: loose,
      OUT: path.join(dir, "out.json"),
      KEYDIR: path.join(dir, "keys"),
    };
    const result = await smw(...args.map((a) => names[a] ?? a));
    expect(result.stderr).toContain(message);
    expect(result.code).toBe(2);
    expect(sha(live)).toBe(liveBefore);
  });
});

describe("smw keys link", () => {
  it("refuses one shared folder for boards on different machines, and writes a tree to copy with --out", async () => {
    const piLab = path.join(root, "wiring", "examples", "pi-lab.yaml");
    const refused = await smw("keys", "link", "--testbed", piLab);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("both keep their link keys in /etc/smw/keys/link");
    const out = path.join(dir, "link-keys");
    const written = await smw("keys", "link", "--testbed", piLab, "--out", out);
    expect(written.code).toBe(0);
    expect(written.stdout).toContain("30 link key files written");
    const pi1ToPi2 = readFileSync(path.join(out, "pi1", "pi2.key"), "utf8");
    expect(pi1ToPi2).toMatch(/^[0-9a-f]{64}\n$/);
    expect(readFileSync(path.join(out, "pi2", "pi1.key"), "utf8")).toBe(pi1ToPi2);
    expect(readFileSync(path.join(out, "pi1", "pi3.key"), "utf8")).not.toBe(pi1ToPi2);
    expect(statSync(path.join(out, "pi1", "pi2.key")).mode & 0o777).toBe(0o600);
    expect((await smw("keys", "link", "--testbed", piLab, "--out", out)).stderr).toContain(
      "refusing to overwrite",
    );
  });
});

describe("a restore killed at any instant", () => {
  it("leaves a state the next verify reports and the next restore completes", async () => {
    const live = path.join(dir, "killed.img");
    const goldenBytes = readFileSync(golden);
    const damage = () => {
      // Every chunk damaged in every other page: much to write. Each damaged byte is the golden
      // one inverted: a fixed byte is the golden one once in 256, and a probe at such a place saw
      // the chunk "repaired" before the restore had written anything.
      const damaged = Buffer.from(goldenBytes);
      for (let c = 0; c < 64; c++)
        for (let p = 0; p < CHUNK / 4096; p += 2) {
          const at = c * CHUNK + p * 4096 + 11;
          damaged[at] = (goldenBytes[at] as number) ^ 0xff;
        }
      writeFileSync(live, damaged);
    };
    const restoredChunks = () => {
      const bytes = readFileSync(live);
      let restored = 0;
      for (let c = 0; c < 64; c++)
        if (
          bytes.compare(goldenBytes, c * CHUNK, (c + 1) * CHUNK, c * CHUNK, (c + 1) * CHUNK) === 0
        )
          restored++;
      return restored;
    };
    const outcomes: number[] = [];
    // Each kill waits until the restore has repaired chunk `after` (chunks are written in order),
    // so the kills land at set points of the writes however fast or loaded the machine is.
    const lastDamagedOffset = (chunk: number) => chunk * CHUNK + (CHUNK / 4096 - 2) * 4096 + 11;
    for (const after of [0, 1, 3, 8, 20, 40, 62]) {
      damage();
      const child = spawn(
        process.execPath,
        [bin, "image", "restore", live, "--from", golden, "--manifest", manifest, "--pub", pub],
        {
          stdio: "ignore",
        },
      );
      const exited = new Promise((resolve) => child.on("exit", resolve));
      const fd = openSync(live, "r");
      const probe = Buffer.alloc(1);
      const offset = lastDamagedOffset(after);
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline && child.exitCode === null) {
        readSync(fd, probe, 0, 1, offset);
        if (probe[0] === goldenBytes[offset]) break;
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
      closeSync(fd);
      child.kill("SIGKILL");
      await exited;
      const restored = restoredChunks();
      outcomes.push(restored);
      // Chunks are written in order: every chunk up to the one seen repaired is whole.
      expect(restored, `chunks whole after a kill once chunk ${after} was written`).toBeGreaterThan(
        after,
      );
      const verified = await verify(live, "--json");
      expect(verified.code, `after a kill once chunk ${after} was written`).toBe(
        restored === 64 ? 0 : 1,
      );
      if (restored < 64) expect(JSON.parse(verified.stdout).badChunks).toHaveLength(64 - restored);
      const restore = await smw(
        "image",
        "restore",
        live,
        "--from",
        golden,
        "--manifest",
        manifest,
        "--pub",
        pub,
        "--json",
      );
      expect(restore.code, `restore after a kill once chunk ${after} was written`).toBe(0);
      expect(sha(live)).toBe(sha(golden));
    }
    // At least one kill landed in the middle of the writes.
    expect(
      outcomes.some((restored) => restored > 0 && restored < 64),
      `chunks restored at each kill: ${outcomes}`,
    ).toBe(true);
    // Several whole restores and verifies of a 16 MiB image: about 8 s alone, 20 s beside the rig.
  }, 60_000);
});
