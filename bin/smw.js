#!/usr/bin/env node
// Entry point of the `smw` program (built by `npm install`, which runs `npm run build`).
import { statSync } from "node:fs";
import { fileURLToPath } from "node:url";

const argv = process.argv.slice(2);

/**
 * `smw host ...` is what a payload host boots (the agent, then its replica): it runs from the
 * one-file bundle the build makes, while that is newer than the code it was made from.
 */
function hostBundle() {
  const bundle = new URL("../cli/dist/smw-host.bundle.mjs", import.meta.url);
  try {
    const madeMs = statSync(bundle).mtimeMs;
    for (const part of ["wiring", "host-agent", "cli"])
      if (statSync(new URL(`../${part}/dist/.tsbuildinfo`, import.meta.url)).mtimeMs > madeMs)
        return undefined;
    return bundle.href;
  } catch {
    return undefined;
  }
}

const { runSmw } = await import((argv[0] === "host" && hostBundle()) || "../cli/dist/smw.js");

const io = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  isTty: process.stdout.isTTY === true,
  selfPath: fileURLToPath(import.meta.url),
};

process.exitCode = await runSmw(argv, io);
