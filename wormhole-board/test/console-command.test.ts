/**
 * `smw console HOST`: the host's console as its board kept it, the latest lines first, then
 * followed live across the log's rotation, escaped as the board wrote it.
 */
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { smw } from "../../cli/test/run-smw.js";
import {
  ConsoleLog,
  consoleLogPath,
  makeTestbed6,
  socatUnavailable,
  type Testbed6,
} from "../src/index.js";

const bin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../bin/smw.js");
const noSocat = socatUnavailable();

describe.skipIf(noSocat !== undefined)("smw console", () => {
  let bed: Testbed6;
  let file: string;
  beforeAll(async () => {
    bed = await makeTestbed6("udp", "free");
    file = consoleLogPath(
      (bed.testbed.boards[1] as Testbed6["testbed"]["boards"][number]).stateDir,
    );
  });
  afterAll(async () => {
    await bed?.close();
  });

  it("says when no console was kept yet, and names an unknown host", async () => {
    const none = await smw("console", "h2", "--testbed", bed.file, "--no-follow");
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(
      /console\.log: no console kept yet for h2 \(board b2 writes it while it runs\)/,
    );
    const unknown = await smw("console", "h9", "--testbed", bed.file);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/no board guards a host "h9" \(hosts: h1, h2, /);
  });

  it("prints the latest lines, then follows across a rotation", async () => {
    // The board's state folder, as its daemon makes it.
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const log = new ConsoleLog(file, { maxBytes: 2048, keep: 2 });
    for (let i = 1; i <= 10; i++) log.write(`boot message ${i}`);
    await log.flush();
    const printed = await smw("console", "h2", "--testbed", bed.file, "--no-follow", "-n", "3");
    expect(printed.code).toBe(0);
    expect(
      printed.stdout
        .split("\n")
        .filter(Boolean)
        .map((l) => l.replace(/^\S+ /, "")),
    ).toEqual(["boot message 8", "boot message 9", "boot message 10"]);

    const child = spawn(
      process.execPath,
      [bin, "console", "h2", "--testbed", bed.file, "-n", "1"],
      {
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString();
    });
    const until = async (pattern: RegExp) => {
      const started = Date.now();
      while (!pattern.test(out) && Date.now() - started < 10_000)
        await new Promise((resolve) => setTimeout(resolve, 50));
      return pattern.test(out);
    };
    try {
      expect(await until(/boot message 10\n/)).toBe(true);
      log.write("kernel: \u001b[2J panic");
      await log.flush();
      expect(await until(/kernel: \\x1b\[2J panic\n/)).toBe(true);
      // Enough to rotate the 2 KiB log; the follower goes on with the new file.
      for (let i = 1; i <= 40; i++) log.write(`after rotation ${i} ${"x".repeat(40)}`);
      await log.flush();
      expect(log.counters.rotations).toBeGreaterThan(0);
      expect(await until(/after rotation 40 x+\n/)).toBe(true);
      expect(out).not.toContain("\u001b");
    } finally {
      child.kill("SIGINT");
      await new Promise((resolve) => child.on("exit", resolve));
    }
  });
});
