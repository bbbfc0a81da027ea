#!/usr/bin/env node
// Entry point of the `smw` program (built by `npm install`, which runs `tsc -b`).
import { runSmw } from "../cli/dist/smw.js";

const io = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  isTty: process.stdout.isTTY === true,
};

process.exitCode = await runSmw(process.argv.slice(2), io);
