#!/usr/bin/env node
// Set-up shared by the README's two commands: `npm run demo` and `npm test` both start here.
//   node scripts/ensure-tools.mjs demo|test
import { ensureToolsOrExit, RIG_TOOLS, TEST_TOOLS } from "./tools.mjs";

const purpose = process.argv[2];
if (purpose !== "demo" && purpose !== "test") {
  process.stderr.write("usage: node scripts/ensure-tools.mjs demo|test\n");
  process.exit(2);
}
ensureToolsOrExit(
  purpose === "demo" ? "smw demo" : "smw tests",
  purpose === "demo" ? RIG_TOOLS : TEST_TOOLS,
);
