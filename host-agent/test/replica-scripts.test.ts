/**
 * The replica's scenarios, one script each in `testdata/replica/` (`replica-script.ts` says how
 * they read). `SMW_REWRITE_SCRIPTS=1 npx vitest run host-agent/test/replica-scripts` writes what
 * the cores print now into the scripts, to be read over before it is committed.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describeScripts } from "../../wiring/test/text-script.js";
import { ReplicaScript } from "./replica-script.js";

describeScripts(
  "replica scripts",
  path.join(path.dirname(fileURLToPath(import.meta.url)), "testdata/replica"),
  () => new ReplicaScript(),
);
