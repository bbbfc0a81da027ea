/**
 * The board core's scenarios, one script each in `testdata/board-core/` (`board-script.ts` says
 * how they read). `SMW_REWRITE_SCRIPTS=1 npx vitest run wormhole-board/test/board-core-scripts`
 * writes what the cores print now into the scripts, to be read over before it is committed.
 */
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { BoardScript, parseScript, rewriteScript } from "./board-script.js";

const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), "testdata/board-core");
const rewrite = process.env.SMW_REWRITE_SCRIPTS === "1";

describe("board core scripts", () => {
  const files = readdirSync(dir).filter((f) => f.endsWith(".txt"));
  it("has scripts", () => expect(files.length).toBeGreaterThan(0));
  for (const file of files) {
    it(file, () => {
      const text = readFileSync(path.join(dir, file), "utf8");
      const script = new BoardScript();
      const outputs: string[] = [];
      for (const block of parseScript(text)) {
        const output = script.run(block.command);
        outputs.push(output);
        if (!rewrite)
          expect(output, `${file}:${block.line}: ${block.command}`).toBe(block.expected);
      }
      if (rewrite) writeFileSync(path.join(dir, file), rewriteScript(text, outputs));
    });
  }
});
