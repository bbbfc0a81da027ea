#!/usr/bin/env node
// Bundles `smw host ...` (cli/dist/smw-host.js and all it imports but native modules) into one
// file, cli/dist/smw-host.bundle.mjs: a payload host boots the agent and the agent its replica,
// and a start that reads one file instead of a few hundred modules is several times shorter on
// a loaded or slow machine. bin/smw.js uses it while it is newer than the code it was made from.
import { statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "rolldown";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const entry = path.join(root, "cli", "dist", "smw-host.js");
const out = path.join(root, "cli", "dist", "smw-host.bundle.mjs");

await build({
  input: entry,
  platform: "node",
  // Native bindings are loaded from node_modules at run time, as without the bundle.
  external: [/^node:/, /^serialport$/, /^@serialport\//, /^onoff$/, /\.node$/],
  logLevel: "warn",
  output: { file: out, format: "esm", codeSplitting: false },
});
process.stdout.write(
  `bundled smw host: ${path.relative(root, out)} (${Math.round(statSync(out).size / 1024)} KiB)\n`,
);
