/**
 * serialport and onoff carry native bindings (serialport's prebuilt, onoff's epoll compiled at
 * install). Where one cannot load (built for another Node, no build tools at install), smw still
 * starts: only what needs it fails, saying what and how to repair it, and `smw doctor` names it.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";

const here = path.dirname(fileURLToPath(import.meta.url));
const SMW = path.resolve(here, "../../bin/smw.js");
const hide = path.join(here, "fixtures/hide-native-modules.cjs");
const dir = mkdtempSync(path.join(tmpdir(), "smw-native-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function smwWithout(...argv: string[]) {
  return spawnSync(process.execPath, ["--require", hide, SMW, ...argv], {
    encoding: "utf8",
    timeout: 30_000,
  });
}

/** The Pi lab example, its first board's state folder moved here (doctor creates it). */
function piLab(): string {
  const text = readFileSync(path.resolve(here, "../../wiring/examples/pi-lab.yaml"), "utf8");
  const file = path.join(dir, "pi-lab.yaml");
  writeFileSync(
    file,
    text.replace("  - id: pi1\n", `  - id: pi1\n    stateDir: ${path.join(dir, "pi1-state")}\n`),
  );
  return file;
}

describe("smw without serialport's and onoff's native bindings", () => {
  it("still starts: help, and commands that need neither", () => {
    for (const argv of [["--help"], ["board", "run", "--help"], ["image", "--help"]]) {
      const run = smwWithout(...argv);
      expect(run.status, `${argv.join(" ")}: ${run.stderr}`).toBe(0);
      expect(run.stdout).toMatch(/^Usage: smw/);
    }
  });

  it("smw doctor names each binding that did not load, what it is needed for and how to repair it", () => {
    const run = smwWithout("doctor", "--testbed", piLab(), "--board", "pi1", "--json");
    expect(run.stderr).not.toMatch(/\n\s+at /);
    expect(run.status).toBe(1);
    const checks = run.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { name: string; verdict: string; detail: string });
    expect(checks.find((c) => c.name === "serialport")).toEqual({
      name: "serialport",
      verdict: "fail",
      detail: expect.stringMatching(
        /^serialport did not load \(No native build was found for serialport \(hidden by the test\)\); it is needed for serial lines .*npm rebuild @serialport\/bindings-cpp/,
      ),
    });
    // The board drives its lines through sysfs (the default): onoff is needed too.
    expect(checks.find((c) => c.name === "onoff")).toEqual({
      name: "onoff",
      verdict: "fail",
      detail: expect.stringMatching(
        /^onoff did not load .*needed for GPIO lines through sysfs .*npm rebuild epoll.*or give this board gpio: gpiod/,
      ),
    });
  });

  it("smw doctor finds both loaded where they are", () => {
    const run = spawnSync(
      process.execPath,
      [SMW, "doctor", "--testbed", piLab(), "--board", "pi1", "--json"],
      { encoding: "utf8", timeout: 30_000 },
    );
    const checks = run.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { name: string; verdict: string });
    for (const name of ["serialport", "onoff"])
      expect(checks.find((c) => c.name === name)?.verdict, name).toBe("ok");
  });
});
