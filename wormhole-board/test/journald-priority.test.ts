/**
 * Under systemd (JOURNAL_STREAM set) the board daemon's log lines carry journald's "<N>" syslog
 * priority prefix; on a plain pipe they do not.
 */
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { syslogPriority, withSyslogPriority } from "../src/board/journald-priority.js";
import { makeTestbed6, socatUnavailable, type Testbed6 } from "../src/index.js";

const bin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../bin/smw.js");
const noSocat = socatUnavailable();

/**
 * `smw board run` for b1 until it has logged a few lines; its output lines. A daemon that exits
 * first (its port taken, say) fails the test with what it said on stderr.
 */
async function boardOutput(bed: Testbed6, env: NodeJS.ProcessEnv): Promise<string[]> {
  const child = spawn(
    process.execPath,
    [bin, "board", "run", "--testbed", bed.file, "--board", "b1"],
    { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let exited: string | undefined;
  const exit = new Promise<void>((resolve) =>
    child.on("exit", (code, signal) => {
      exited = `exit ${code ?? signal}`;
      resolve();
    }),
  );
  let out = "";
  let err = "";
  child.stdout.on("data", (chunk: Buffer) => {
    out += chunk.toString();
  });
  child.stderr.on("data", (chunk: Buffer) => {
    err += chunk.toString();
  });
  // Until its first lines are out (a loaded machine takes a while to start node), at most 15 s.
  const started = Date.now();
  while (out.split("\n").length < 3 && exited === undefined && Date.now() - started < 15_000)
    await new Promise((resolve) => setTimeout(resolve, 50));
  if (exited !== undefined) throw new Error(`smw board run ended early (${exited}): ${err}${out}`);
  child.kill("SIGTERM");
  await exit;
  return out.split("\n").filter((line) => line !== "");
}

describe("syslog priorities for journald", () => {
  it("maps pino's levels to syslog's", () => {
    expect([60, 50, 40, 30, 20, 10].map(syslogPriority)).toEqual([2, 3, 4, 6, 7, 7]);
    expect(withSyslogPriority('{"level":40,"msg":"x"}\n')).toBe('<4>{"level":40,"msg":"x"}\n');
    expect(withSyslogPriority("no level here\n")).toBe("no level here\n");
  });

  describe.skipIf(noSocat !== undefined)("smw board run", () => {
    let bed: Testbed6;
    beforeAll(async () => {
      bed = await makeTestbed6("udp", "free");
    });
    afterAll(async () => {
      await bed?.close();
    });

    it("prefixes each line with its priority under systemd, and not otherwise", async () => {
      const journal = await boardOutput(bed, { JOURNAL_STREAM: "8:12345" });
      expect(journal.length).toBeGreaterThan(0);
      for (const line of journal) expect(line).toMatch(/^<[2-7]>\{"level":\d+/);
      expect(journal.some((line) => line.startsWith('<6>{"level":30'))).toBe(true);
      const plain = await boardOutput(bed, { JOURNAL_STREAM: "" });
      expect(plain.length).toBeGreaterThan(0);
      for (const line of plain) expect(line).toMatch(/^\{"level":\d+/);
    }, 45_000);
  });
});
