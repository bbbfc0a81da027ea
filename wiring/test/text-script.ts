/**
 * Scenario scripts as text, after etcd raft's `testdata/*.txt` (its datadriven format): blocks of
 * a command line, a line `----`, and the output the command must print, up to a blank line; lines
 * starting with `#` are comments. The board core's and the replica's scripts read this way.
 */
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";

export interface ScriptBlock {
  /** Line number of the command, from 1. */
  line: number;
  command: string;
  expected: string;
}

/** The blocks of a script: command, `----`, expected output up to a blank line. */
export function parseScript(text: string): ScriptBlock[] {
  const lines = text.split("\n");
  const blocks: ScriptBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string;
    if (line.trim() === "" || line.startsWith("#")) continue;
    if (lines[i + 1] !== "----")
      throw new Error(`line ${i + 1}: "${line}" is not followed by a line "----"`);
    const start = i;
    const out: string[] = [];
    i += 2;
    while (i < lines.length && (lines[i] as string).trim() !== "") out.push(lines[i++] as string);
    blocks.push({ line: start + 1, command: line, expected: out.join("\n") });
  }
  return blocks;
}

/** The script with each block's output replaced by `outputs` (in order). */
export function rewriteScript(text: string, outputs: readonly string[]): string {
  const lines = text.split("\n");
  const result: string[] = [];
  let block = 0;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string;
    result.push(line);
    if (line.trim() === "" || line.startsWith("#") || lines[i + 1] !== "----") continue;
    result.push("----");
    const out = outputs[block++] ?? "";
    if (out !== "") result.push(...out.split("\n"));
    i += 2;
    while (i < lines.length && (lines[i] as string).trim() !== "") i++;
    if (i < lines.length) result.push("");
  }
  return result.join("\n");
}

/**
 * One test per script in `dir` (`*.txt`), each run from its first block on a fresh runner.
 * `SMW_REWRITE_SCRIPTS=1` writes what the runners print now into the scripts instead of comparing,
 * to be read over before it is committed.
 */
export function describeScripts(
  title: string,
  dir: string,
  newRunner: () => { run(command: string): string },
): void {
  const rewrite = process.env.SMW_REWRITE_SCRIPTS === "1";
  describe(title, () => {
    const files = readdirSync(dir).filter((f) => f.endsWith(".txt"));
    it("has scripts", () => expect(files.length).toBeGreaterThan(0));
    for (const file of files) {
      it(file, () => {
        const text = readFileSync(path.join(dir, file), "utf8");
        const runner = newRunner();
        const outputs: string[] = [];
        for (const block of parseScript(text)) {
          const output = runner.run(block.command);
          outputs.push(output);
          if (!rewrite)
            expect(output, `${file}:${block.line}: ${block.command}`).toBe(block.expected);
        }
        if (rewrite) writeFileSync(path.join(dir, file), rewriteScript(text, outputs));
      });
    }
  });
}
