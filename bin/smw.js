#!/usr/bin/env node
// Entry point of the `smw` program (built by `npm install`, which runs `npm run build`).
import { fork } from "node:child_process";
import { statSync } from "node:fs";
import { fileURLToPath } from "node:url";

const argv = process.argv.slice(2);

/**
 * `smw host ...` is what a payload host boots (the agent, then its replica), `smw kv ...` what
 * serves and uses the service: they run from the one-file bundle the build makes, while that is
 * newer than the code it was made from.
 */
function hostBundleFresh() {
  try {
    const madeMs = statSync(new URL("../cli/dist/smw-host.bundle.cjs", import.meta.url)).mtimeMs;
    for (const part of ["wiring", "host-agent", "cli"])
      if (statSync(new URL(`../${part}/dist/.tsbuildinfo`, import.meta.url)).mtimeMs > madeMs)
        return false;
    return true;
  } catch {
    return false;
  }
}

/**
 * `smw host run --testbed T --host H`: its replica process is started here, before anything
 * else loads, so that the two load side by side; the agent adopts it (`io.earlyReplica`).
 */
function earlyReplica() {
  if (argv[0] !== "host" || argv[1] !== "run" || argv.includes("--help")) return undefined;
  const option = (flag) => {
    const i = argv.indexOf(flag);
    return i > 0 ? argv[i + 1] : undefined;
  };
  const testbed = option("--testbed");
  const host = option("--host");
  if (testbed === undefined || host === undefined) return undefined;
  const child = fork(
    fileURLToPath(import.meta.url),
    ["host", "replica", "--testbed", testbed, "--host", host],
    { stdio: ["ignore", "inherit", "inherit", "ipc"] },
  );
  // Until the agent adopts it: one that failed is not connected, and the agent forks another.
  child.on("error", () => {});
  return child;
}

const early = earlyReplica();

// Imported after the early replica is on its way (so is the bundle's loader).
let loadedFrom;
let runSmw;
if ((argv[0] === "host" || argv[0] === "kv") && hostBundleFresh()) {
  const { describeCache, loadHostBundle } = await import("./host-bundle.js");
  const loaded = loadHostBundle();
  loadedFrom = `host bundle, ${describeCache(loaded.cache)}`;
  runSmw = loaded.exports.runSmw;
} else {
  loadedFrom = "modules";
  runSmw = (await import("../cli/dist/smw.js")).runSmw;
}

// Output piped into a reader that stops early (`smw status | head`, `smw rig demo | head`): what
// is left to print goes nowhere, with no stack trace for it, and the command runs to its end (a
// run still writes its report) and exits with its own status.
const closed = new Set();
for (const stream of [process.stdout, process.stderr])
  stream.on("error", (error) => {
    if (error.code !== "EPIPE") throw error;
    closed.add(stream);
  });
const write = (stream, text) => {
  if (!closed.has(stream)) stream.write(text);
};

const io = {
  out: (text) => write(process.stdout, text),
  err: (text) => write(process.stderr, text),
  isTty: process.stdout.isTTY === true,
  selfPath: fileURLToPath(import.meta.url),
  earlyReplica: early,
  loadedFrom,
};

process.exitCode = await runSmw(argv, io);
