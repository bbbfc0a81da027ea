#!/usr/bin/env node
// Before the tests: socat makes the real PTY pairs the serial-link tests use.
import { ensureTool } from "./tools.mjs";

try {
  ensureTool("socat", "socat");
} catch (error) {
  process.stderr.write(`smw tests: ${error.message}\n`);
  process.exit(1);
}
