// Benchmark of the board's media operations (npm run bench -- media [--size-mib N]).
// On a random image: verify throughput against openssl dgst -sha256 and
// sha256sum; a restore of 1% of the chunks, damaged at a few bytes each,
// against cp of the whole image and rsync --inplace --no-whole-file from the
// golden copy; peak memory at two image sizes. Figures are ratios against the
// references measured in the same run, on the same (page-cached) files.
import { execFileSync, spawnSync } from "node:child_process";
import { createHash, randomBytes, randomInt } from "node:crypto";
import { closeSync, copyFileSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { blake3 as blake3Native } from "@napi-rs/blake-hash";
import { blake3 as blake3Js } from "@noble/hashes/blake3.js";
import { ensureToolsOrExit } from "../../scripts/tools.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const bin = path.join(here, "..", "..", "bin", "smw.js");
const sizeFlag = process.argv.indexOf("--size-mib");
const sizeMiB = sizeFlag > 0 ? Number(process.argv[sizeFlag + 1]) : 1024;
const CHUNK = 1024 * 1024;
const RUNS = 3;

const why = "it is the reference this benchmark measures against";
ensureToolsOrExit("media bench", [
  { command: "openssl", debianPackage: "openssl", why },
  { command: "sha256sum", debianPackage: "coreutils", why },
  { command: "rsync", debianPackage: "rsync", why },
]);

const dir = mkdtempSync(path.join(tmpdir(), "smw-bench-media-"));
const cleanup = () => rmSync(dir, { recursive: true, force: true });
process.on("exit", cleanup);
process.on("SIGINT", () => process.exit(130));

const timeMs = (fn) => {
  const started = performance.now();
  fn();
  return performance.now() - started;
};
const best = (fn) => Math.min(...Array.from({ length: RUNS }, fn));
const run = (command, args) => {
  const result = spawnSync(command, args, { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
  if (result.status !== 0) throw new Error(`${command} ${args.join(" ")} failed: ${result.stderr}`);
  return result.stdout;
};
const warm = (...files) => spawnSync("cat", files, { stdio: ["ignore", "ignore", "inherit"] });
const child = (...args) =>
  JSON.parse(run(process.execPath, [path.join(here, "media-child.mjs"), ...args]).trim());

function makeImage(file, mib) {
  const fd = openSync(file, "w");
  for (let i = 0; i < mib; i++) writeSync(fd, randomBytes(CHUNK));
  closeSync(fd);
}

function damage(file, chunks, totalChunks) {
  const picked = new Set();
  while (picked.size < chunks) picked.add(randomInt(totalChunks));
  const fd = openSync(file, "r+");
  for (const c of picked)
    for (let k = 0; k < 3; k++)
      writeSync(fd, randomBytes(4), 0, 4, c * CHUNK + randomInt(CHUNK - 4));
  closeSync(fd);
  return picked.size;
}

const golden = path.join(dir, "golden.img");
const live = path.join(dir, "live.img");
const manifest = path.join(dir, "golden.manifest.json");
process.stderr.write(`making a ${sizeMiB} MiB random image in ${dir} ...\n`);
makeImage(golden, sizeMiB);
run(process.execPath, [bin, "keys", "gen", "--out", path.join(dir, "keys")]);
const pub = path.join(dir, "keys", "operator.pub");
run(process.execPath, [
  bin,
  "image",
  "seal",
  golden,
  "--key",
  path.join(dir, "keys", "operator.key"),
  "-o",
  manifest,
]);
copyFileSync(golden, live);
// Warm the page cache for everyone alike.
warm(golden, live);

const bytes = sizeMiB * CHUNK;
const mbps = (ms) => (bytes / 1e6 / (ms / 1000)).toFixed(0);

// Verify.
const opensslMs = best(() => timeMs(() => run("openssl", ["dgst", "-sha256", live])));
const sha256sumMs = best(() => timeMs(() => run("sha256sum", [live])));
const verifyRuns = Array.from({ length: RUNS }, () => child("verify", live, manifest, pub));
const verifyMs = Math.min(...verifyRuns.map((r) => r.wallMs));
const verifyCliMs = best(() =>
  timeMs(() =>
    run(process.execPath, [bin, "image", "verify", live, "--manifest", manifest, "--pub", pub]),
  ),
);

// Restore: 1% of chunks, a few bytes each; the same damage for every tool.
const totalChunks = sizeMiB;
const damaged = path.join(dir, "damaged.img");
copyFileSync(golden, damaged);
const damagedChunks = damage(damaged, Math.max(1, Math.round(totalChunks / 100)), totalChunks);
// Each restore starts from the damaged copy, flushed to disk and cached, so
// that no tool pays for writing back the copy it was handed.
const fresh = () => {
  copyFileSync(damaged, live);
  spawnSync("sync", [live]);
  warm(live);
};
const restoreRuns = Array.from({ length: RUNS }, () => {
  fresh();
  return child("restore", live, manifest, pub, golden);
});
const restore = restoreRuns.reduce((a, b) => (a.wallMs <= b.wallMs ? a : b));
if (!restore.clean) throw new Error("the restore did not end clean");

const rsyncWith = (extra) => {
  const runs = Array.from({ length: RUNS }, () => {
    fresh();
    let stats = "";
    const ms = timeMs(() => {
      stats = run("rsync", ["--inplace", "--no-whole-file", "--stats", ...extra, golden, live]);
    });
    const literal = Number(/Literal data: ([\d,]+) bytes/.exec(stats)?.[1].replaceAll(",", ""));
    return { ms, literal };
  });
  return runs.reduce((a, b) => (a.ms <= b.ms ? a : b));
};
const rsync = rsyncWith([]);
const rsyncFsync = rsyncWith(["--fsync"]);
const cpMs = best(() => {
  fresh();
  return timeMs(() => run("cp", [golden, live]));
});
execFileSync("cmp", [golden, live]);

// Peak memory at two sizes: it must not grow with the image.
const smallMiB = Math.max(16, Math.floor(sizeMiB / 4));
const small = path.join(dir, "small.img");
const smallManifest = path.join(dir, "small.manifest.json");
makeImage(small, smallMiB);
run(process.execPath, [
  bin,
  "image",
  "seal",
  small,
  "--key",
  path.join(dir, "keys", "operator.key"),
  "-o",
  smallManifest,
]);
const smallVerify = child("verify", small, smallManifest, pub);

// One core hashing 1 MiB chunks for a second each way: the pure-JS BLAKE3 a board falls back to
// where the native binding cannot load, against the native one and node's SHA-256.
const hashRate = (digest) => {
  const chunk = randomBytes(CHUNK);
  digest(chunk);
  const started = performance.now();
  let chunks = 0;
  while (performance.now() - started < 1000) {
    digest(chunk);
    chunks++;
  }
  return (chunks * CHUNK) / 1e6 / ((performance.now() - started) / 1000);
};
const nativeMBps = hashRate(blake3Native);
const jsMBps = hashRate(blake3Js);
const sha256MBps = hashRate((chunk) => createHash("sha256").update(chunk).digest());
const bigRssMiB = Math.max(...verifyRuns.map((r) => r.maxRssKiB), restore.maxRssKiB) / 1024;

const lines = [
  `smw media benchmark: ${sizeMiB} MiB random image, ${CHUNK / 1024} KiB chunks (blake3), ${availableParallelism()} cores, page cache warm, best of ${RUNS}`,
  "",
  "verify (hash the whole image)",
  `  smw verify (library)     ${verifyMs.toFixed(0).padStart(6)} ms  ${mbps(verifyMs).padStart(5)} MB/s  ${(opensslMs / verifyMs).toFixed(2)}x openssl, ${(sha256sumMs / verifyMs).toFixed(2)}x sha256sum   (target >= 1.5x openssl)`,
  `  smw image verify (CLI)   ${verifyCliMs.toFixed(0).padStart(6)} ms  ${mbps(verifyCliMs).padStart(5)} MB/s  ${(opensslMs / verifyCliMs).toFixed(2)}x openssl (includes starting node)`,
  `  openssl dgst -sha256     ${opensslMs.toFixed(0).padStart(6)} ms  ${mbps(opensslMs).padStart(5)} MB/s`,
  `  sha256sum                ${sha256sumMs.toFixed(0).padStart(6)} ms  ${mbps(sha256sumMs).padStart(5)} MB/s`,
  "",
  `restore (${damagedChunks} of ${totalChunks} chunks damaged, 3 x 4 bytes each)`,
  `  smw restore (with fsync) ${restore.wallMs.toFixed(0).padStart(6)} ms  wrote ${restore.bytesWritten} bytes (${restore.pagesWritten} pages)  time ${(restore.wallMs / rsync.ms).toFixed(2)}x rsync (target <= 0.5x), written ${(restore.bytesWritten / rsync.literal).toFixed(3)}x rsync (target <= 1x)`,
  `  rsync --inplace --no-whole-file ${rsync.ms.toFixed(0).padStart(6)} ms  wrote ${rsync.literal} bytes (its literal data); no fsync`,
  `  rsync ... --fsync        ${rsyncFsync.ms.toFixed(0).padStart(6)} ms  (durable like smw: smw's time is ${(restore.wallMs / rsyncFsync.ms).toFixed(2)}x this)`,
  `  cp (whole image)         ${cpMs.toFixed(0).padStart(6)} ms  wrote ${bytes} bytes`,
  "",
  "one core, 1 MiB chunks (where the native BLAKE3 binding cannot load, the board falls back to pure JS)",
  `  BLAKE3 native            ${nativeMBps.toFixed(0).padStart(6)} MB/s`,
  `  BLAKE3 pure JS           ${jsMBps.toFixed(0).padStart(6)} MB/s  ${(nativeMBps / jsMBps).toFixed(0)}x slower than native, ${(sha256MBps / jsMBps).toFixed(1)}x slower than SHA-256 (seal with --algorithm sha256 there)`,
  `  SHA-256 (node crypto)    ${sha256MBps.toFixed(0).padStart(6)} MB/s`,
  "",
  "peak memory (resident, worker threads included)",
  `  ${sizeMiB} MiB image: ${bigRssMiB.toFixed(0)} MiB; ${smallMiB} MiB image: ${(smallVerify.maxRssKiB / 1024).toFixed(0)} MiB   (target < 200 MiB whatever the size)`,
];
process.stdout.write(`${lines.join("\n")}\n`);
