#!/usr/bin/env node
// Bundles `smw host ...` (cli/dist/smw-host.js and all it imports but native modules) into one
// file, cli/dist/smw-host.bundle.cjs: a payload host boots the agent and the agent its replica,
// and a start that reads one file instead of a few hundred modules is several times shorter on
// a loaded or slow machine. bin/smw.js uses it while it is newer than the code it was made from.
//
// Then V8's code cache for it (bin/host-bundle.js): made in a process of its own, with node's
// default flags as a host runs it, after the bundle has parsed a testbed and the commands'
// options, so that the functions a start calls are in it too, not only the bundle's top level.
// CommonJS, because node 20 keeps no code cache for ES modules.
import { execFileSync } from "node:child_process";
import { rmSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "rolldown";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const entry = path.join(root, "cli", "dist", "smw-host.js");
const out = path.join(root, "cli", "dist", "smw-host.bundle.cjs");

if (process.argv[2] === "--code-cache") {
  const { loadHostBundle } = await import("../bin/host-bundle.js");
  const loaded = loadHostBundle(out);
  const quiet = { out: () => {}, err: () => {}, isTty: false };
  const { runSmw } = loaded.exports;
  const testbed = path.join(root, "wiring", "examples", "rig-6.yaml");
  await runSmw(["host", "--help"], quiet);
  await runSmw(["host", "replica", "--help"], quiet);
  // Reads and checks the testbed, then stops at the missing client key: no network (and were
  // there such a key, a 50 ms timeout).
  await runSmw(
    ["kv", "get", "k", "--testbed", testbed, "--client", "code-cache", "--timeout", "50ms"],
    quiet,
  );
  loaded.writeCache();
  process.exit(0);
}

rmSync(`${out}.code-cache`, { force: true });
await build({
  input: entry,
  platform: "node",
  // Native bindings are loaded from node_modules at run time, as without the bundle.
  external: [/^node:/, /^serialport$/, /^@serialport\//, /^onoff$/, /\.node$/],
  logLevel: "warn",
  output: { file: out, format: "cjs", codeSplitting: false },
});
execFileSync(process.execPath, [fileURLToPath(import.meta.url), "--code-cache"], {
  stdio: "inherit",
});
const kib = (file) => Math.round(statSync(file).size / 1024);
process.stdout.write(
  `bundled smw host: ${path.relative(root, out)} (${kib(out)} KiB, code cache ${kib(`${out}.code-cache`)} KiB)\n`,
);
