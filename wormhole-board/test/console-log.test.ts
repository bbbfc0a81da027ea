/** A host's console log: bounded, rotated, escaped, and never a reason for its writer to fail. */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { ConsoleLog, escapeConsoleText } from "@smw/wormhole-board";
import { afterAll, describe, expect, it } from "vitest";

const ENTRY = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (.*)$/;

/** The text of each entry in a file, its time checked and taken off. */
const entries = (file: string): string[] =>
  readFileSync(file, "utf8")
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => {
      const match = ENTRY.exec(line);
      if (match === null) throw new Error(`${file}: not an entry: ${JSON.stringify(line)}`);
      return match[1] as string;
    });

describe("the console log", () => {
  const root = mkdtempSync(path.join(tmpdir(), "smw-console-log-"));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  let folders = 0;
  const folder = () => {
    const dir = path.join(root, `${folders++}`);
    mkdirSync(dir);
    return dir;
  };

  it("escapes what could move a terminal: control characters, C1, bidirectional marks", async () => {
    const file = path.join(folder(), "console.log");
    const log = new ConsoleLog(file);
    log.write("\u001b[2Jcleared");
    log.write("tab\there, bell\u0007, CSI\u009b31m, \u202eevil, back\\slash, é");
    await log.flush();
    const raw = readFileSync(file, "utf8");
    expect(raw).not.toContain("\u001b");
    expect(raw).not.toContain("\u009b");
    expect(raw).not.toContain("\u202e");
    expect(raw).toMatch(/^[\x20-\x7e\n]*$/);
    expect(entries(file)).toEqual([
      "\\x1b[2Jcleared",
      "tab\\x09here, bell\\x07, CSI\\x9b31m, \\u{202e}evil, back\\\\slash, \\xe9",
    ]);
    expect(log.counters.written).toBe(2);
    expect(escapeConsoleText("plain text: [  OK  ] 100%")).toBe("plain text: [  OK  ] 100%");
  });

  it("rotates past maxBytes, keeps `keep` old files, and no file passes the bound", async () => {
    const dir = folder();
    const file = path.join(dir, "console.log");
    const log = new ConsoleLog(file, { maxBytes: 4096, keep: 2 });
    // 200 entries of about 100 bytes: five files' worth.
    const texts = Array.from({ length: 200 }, (_, i) => `line ${i} ${"x".repeat(64)}`);
    for (const text of texts) log.write(text);
    await log.flush();
    expect(log.counters.written).toBe(200);
    expect(log.counters.rotations).toBeGreaterThanOrEqual(4);
    expect(existsSync(`${file}.1`)).toBe(true);
    expect(existsSync(`${file}.2`)).toBe(true);
    expect(existsSync(`${file}.3`)).toBe(false);
    for (const name of ["console.log", "console.log.1", "console.log.2"])
      expect(statSync(path.join(dir, name)).size).toBeLessThanOrEqual(4096);
    // The newest entries, oldest file first, in order and none missing.
    const kept = [...entries(`${file}.2`), ...entries(`${file}.1`), ...entries(file)];
    expect(kept).toEqual(texts.slice(texts.length - kept.length));
    // Each rotated file was filled to within an entry of the bound.
    expect(statSync(`${file}.1`).size).toBeGreaterThan(4096 - 100);
  });

  it("cuts an entry longer than a whole file to fit", async () => {
    const file = path.join(folder(), "console.log");
    const log = new ConsoleLog(file, { maxBytes: 1024 });
    log.write("y".repeat(5_000));
    log.write("after");
    await log.flush();
    expect(log.counters.truncated).toBe(1);
    expect(statSync(`${file}.1`).size).toBe(1024);
    expect(entries(file)).toEqual(["after"]);
  });

  it("counts, and does not throw, what it cannot write: a folder gone, too much waiting", async () => {
    const dir = folder();
    const file = path.join(dir, "console.log");
    const log = new ConsoleLog(file, { maxPendingBytes: 1024 });
    log.write("before");
    await log.flush();
    rmSync(dir, { recursive: true });
    expect(() => log.write("while the folder is gone")).not.toThrow();
    await log.flush();
    expect(log.counters.failed).toBe(1);
    // The folder comes back: writing goes on.
    mkdirSync(dir);
    log.write("after");
    await log.flush();
    expect(entries(file)).toEqual(["after"]);
    expect(log.counters.written).toBe(2);
    // More than maxPendingBytes at once: the rest is dropped and counted.
    for (let i = 0; i < 100; i++) log.write("z".repeat(100));
    await log.flush();
    expect(log.counters.dropped).toBeGreaterThan(0);
    expect(log.counters.written + log.counters.dropped).toBe(2 + 100);
  });

  it("refuses bounds it cannot keep, naming the file", () => {
    expect(() => new ConsoleLog("/var/lib/smw/h1/console.log", { maxBytes: 100 })).toThrow(
      /console\.log: maxBytes must be .* at least 1024 \(got 100\)/,
    );
    expect(() => new ConsoleLog("/var/lib/smw/h1/console.log", { keep: -1 })).toThrow(
      /keep must be/,
    );
  });
});
