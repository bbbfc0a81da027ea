import { expect } from "vitest";
import { runSmw } from "../src/smw.js";

/** Runs `smw` in-process and collects what it prints; bad input never shows a stack trace. */
export async function smw(...argv: string[]) {
  let stdout = "";
  let stderr = "";
  const code = await runSmw(argv, {
    out: (text) => {
      stdout += text;
    },
    err: (text) => {
      stderr += text;
    },
    isTty: false,
  });
  expect(stderr).not.toMatch(/\n\s+at /);
  return { code, stdout, stderr };
}
