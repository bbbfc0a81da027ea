/**
 * The board core's scenarios, one script each in `testdata/board-core/` (`board-script.ts` says
 * how they read). `SMW_REWRITE_SCRIPTS=1 npx vitest run wormhole-board/test/board-core-scripts`
 * writes what the cores print now into the scripts, to be read over before it is committed.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describeScripts } from "../../wiring/test/text-script.js";
import { BoardScript } from "./board-script.js";

describeScripts(
  "board core scripts",
  path.join(path.dirname(fileURLToPath(import.meta.url)), "testdata/board-core"),
  () => new BoardScript(),
);
