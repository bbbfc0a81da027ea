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
import { renameSync, rmSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "rolldown";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const entry = path.join(root, "cli", "dist", "smw-host.js");
const out = path.join(root, "cli", "dist", "smw-host.bundle.cjs");

if (process.argv[2] === "--code-cache") {
  const { loadHostBundle } = await import("../bin/host-bundle.js");
  const loaded = loadHostBundle(out);
  const { runSmw } = loaded.exports;
  const testbed = path.join(root, "wiring", "examples", "rig-6.yaml");
  // Each must end as it does today, or the cache would quietly hold less of the code (a renamed
  // option ends a command early).
  const warmUps = [
    { argv: ["host", "--help"], code: 0 },
    { argv: ["host", "replica", "--help"], code: 0 },
    // Reads and checks the testbed, then stops at the missing client key: no network (and were
    // there such a key, a 50 ms timeout).
    {
      argv: ["kv", "get", "k", "--testbed", testbed, "--client", "code-cache", "--timeout", "50ms"],
      code: 2,
    },
  ];
  for (const { argv, code } of warmUps) {
    let said = "";
    const io = { out: (text) => (said += text), err: (text) => (said += text), isTty: false };
    const got = await runSmw(argv, io);
    if (got !== code) {
      process.stderr.write(
        `bundle-host: warming the code cache, \`smw ${argv.join(" ")}\` exited ${got}, not ${code}:\n${said}`,
      );
      process.exit(1);
    }
  }
  loaded.writeCache();
  process.exit(0);
}

rmSync(`${out}.code-cache`, { force: true });
// Written aside, then renamed: a host starting meanwhile reads the old bundle or the new one.
const building = `${out}.${process.pid}.tmp`;
await build({
  input: entry,
  platform: "node",
  // Native bindings are loaded from node_modules at run time, as without the bundle.
  external: [/^node:/, /^serialport$/, /^@serialport\//, /^onoff$/, /\.node$/],
  logLevel: "warn",
  // Strict, as the modules it is made from are (ES modules always are; CommonJS only when told).
  output: { file: building, format: "cjs", codeSplitting: false, strict: true },
});
renameSync(building, out);
// With node's default flags, as a host starts it: V8 refuses a cache made under other flags
// (NODE_OPTIONS=--max-old-space-size=... for the build would make every host's start refuse it).
const { NODE_OPTIONS: _flags, ...environment } = process.env;
execFileSync(process.execPath, [fileURLToPath(import.meta.url), "--code-cache"], {
  stdio: "inherit",
  env: environment,
});
const kib = (file) => Math.round(statSync(file).size / 1024);
process.stdout.write(
  `bundled smw host: ${path.relative(root, out)} (${kib(out)} KiB, code cache ${kib(`${out}.code-cache`)} KiB)\n`,
);
