/**
 * The gpiod backend against fake libgpiod tools (v2 and v1) and a fake pinctrl on PATH that keep
 * the lines' levels and record every call: chips found by label, levels set without holding the
 * line and read back without turning it into an input (v1: with pinctrl, never v1's gpioget),
 * active-low mapped by the tools, a stuck line and a released line caught by read-back, unknown
 * versions, foreign chips under v1 and missing tools refused with the reason, what smw doctor is
 * told; and `smw lines` on a board with gpio: gpiod.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Line } from "@smw/wiring";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { BoardLines, GpiodLines, LineReadBackError } from "../src/index.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const dir = mkdtempSync(path.join(tmpdir(), "smw-gpiod-"));
const bin = path.join(dir, "bin");
const statePath = path.join(dir, "state.json");
const logPath = path.join(dir, "calls.jsonl");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

mkdirSync(bin);
for (const tool of ["gpioset", "gpioget", "gpiodetect", "pinctrl"]) {
  const file = path.join(bin, tool);
  writeFileSync(
    file,
    `#!/bin/sh\nexec "${process.execPath}" "${path.join(here, "fake-gpiod", "fake-gpiod.mjs")}" ${tool} "$@"\n`,
  );
  chmodSync(file, 0o755);
}
process.env.FAKE_GPIOD_STATE = statePath;
process.env.FAKE_GPIOD_LOG = logPath;

function reset(overrides: Record<string, unknown> = {}) {
  writeFileSync(
    statePath,
    JSON.stringify({
      version: "2.1.3",
      chips: [
        { name: "gpiochip0", label: "pinctrl-bcm2711", lines: 58 },
        { name: "gpiochip1", label: "raspberrypi-exp-gpio", lines: 8 },
      ],
      values: {},
      ...overrides,
    }),
  );
  writeFileSync(logPath, "");
}
const physical = (offset: number) =>
  JSON.parse(readFileSync(statePath, "utf8")).values[`gpiochip0:${offset}`];
const calls = () =>
  readFileSync(logPath, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as string[]);
const tools = {
  gpioset: path.join(bin, "gpioset"),
  gpioget: path.join(bin, "gpioget"),
  gpiodetect: path.join(bin, "gpiodetect"),
  pinctrl: path.join(bin, "pinctrl"),
};
const reset17: Line = {
  role: "reset",
  chip: "pinctrl-bcm2711",
  offset: 17,
  activeLow: true,
  initial: "inactive",
  safe: "active",
};
const board = { id: "pi1", lines: [reset17] } as Parameters<typeof BoardLines.claim>[0];

describe("the gpiod backend (fake libgpiod v2 tools)", () => {
  beforeEach(() => reset());

  it("claims at the starting level, sets and reads back through the tools, releases at the safe level", () => {
    const lines = BoardLines.claim(board, new GpiodLines(tools), { levels: "safe" });
    // reset is active-low and safe active: physically low.
    expect(physical(17)).toBe(0);
    lines.set("reset", "inactive");
    expect(physical(17)).toBe(1);
    expect(lines.get("reset")).toBe("inactive");
    lines.releaseAll();
    expect(physical(17)).toBe(0);
    const made = calls();
    expect(made[0]).toEqual(["gpioset", "--version"]);
    expect(made[1]).toEqual(["gpiodetect"]);
    expect(made).toContainEqual([
      "gpioset",
      "--chip",
      "gpiochip0",
      "--consumer",
      "smw-reset",
      "--active-low",
      "--toggle",
      "0",
      "17=0",
    ]);
    expect(made).toContainEqual([
      "gpioget",
      "--chip",
      "gpiochip0",
      "--as-is",
      "--numeric",
      "--active-low",
      "17",
    ]);
  });

  it("catches a line that does not follow by reading it back", () => {
    reset({ stuck: ["gpiochip0:17"] });
    const lines = BoardLines.claim(board, new GpiodLines(tools), { levels: "safe" });
    expect(() => lines.set("reset", "inactive")).toThrow(LineReadBackError);
    lines.releaseAll();
  });

  it("refuses tools of no known version, an unknown chip, an offset past the chip's end, and missing tools, each with the reason", () => {
    reset({ version: "0.9" });
    expect(() => new GpiodLines(tools).claim(reset17, "safe")).toThrow(
      /gpioset \(libgpiod\) v0\.9: expected libgpiod v1 or v2/,
    );
    reset();
    expect(() => new GpiodLines(tools).claim({ ...reset17, chip: "pinctrl-rp1" }, "safe")).toThrow(
      /no GPIO chip labelled pinctrl-rp1 \(gpiodetect lists: gpiochip0 \[pinctrl-bcm2711\], gpiochip1 \[raspberrypi-exp-gpio\]\)/,
    );
    expect(() =>
      new GpiodLines(tools).claim({ ...reset17, chip: "raspberrypi-exp-gpio", offset: 9 }, "safe"),
    ).toThrow(/gpiochip1 \[raspberrypi-exp-gpio\] has 8 lines, no offset 9/);
    expect(() =>
      new GpiodLines({ gpioset: path.join(dir, "nowhere", "gpioset") }).claim(reset17, "safe"),
    ).toThrow(/is not installed \(apt install gpiod\)/);
  });

  it("serves smw lines on a board whose testbed says gpio: gpiod (v2 tools)", () => {
    const testbed = path.join(dir, "pi-lab.yaml");
    const text = readFileSync(path.join(root, "wiring/examples/pi-lab.yaml"), "utf8");
    writeFileSync(testbed, text.replace("  - id: pi1\n", "  - id: pi1\n    gpio: gpiod\n"));
    const env = { ...process.env, PATH: `${bin}:${process.env.PATH}` };
    const run = (...args: string[]) =>
      spawnSync(
        process.execPath,
        [path.join(root, "bin/smw.js"), "lines", ...args, "--testbed", testbed, "--board", "pi1"],
        {
          encoding: "utf8",
          env,
        },
      );
    const list = run("list");
    expect(list.status).toBe(0);
    expect(list.stdout).toMatch(/GPIO character device \(libgpiod tools\)/);
    expect(list.stdout).toMatch(
      /reset +pinctrl-bcm2711\/17 +active-low +safe active \(low\) +gpiochip0 line 17/,
    );
    const set = run("set", "write-protect", "inactive", "--hold", "10ms");
    expect(set.stderr).toBe("");
    expect(set.stdout).toMatch(
      /write-protect line \(pinctrl-bcm2711\/22\): set inactive \(low\), reads back inactive/,
    );
    expect(set.status).toBe(0);
    // Released at its safe level (active, high).
    expect(physical(22)).toBe(1);
  });

  it("serves smw wiring probe on such a board: every line driven through the tools, asked about, left safe", () => {
    const testbed = path.join(dir, "pi-lab-probe.yaml");
    const text = readFileSync(path.join(root, "wiring/examples/pi-lab.yaml"), "utf8");
    writeFileSync(testbed, text.replace("  - id: pi1\n", "  - id: pi1\n    gpio: gpiod\n"));
    const run = spawnSync(
      process.execPath,
      [
        path.join(root, "bin/smw.js"),
        "wiring",
        "probe",
        "--testbed",
        testbed,
        "--board",
        "pi1",
        "--by",
        "bench",
      ],
      {
        input: "y\n".repeat(12),
        encoding: "utf8",
        env: { ...process.env, PATH: `${bin}:${process.env.PATH}` },
        timeout: 30_000,
      },
    );
    expect(run.stderr).toBe("");
    expect(run.status).toBe(0);
    expect(run.stdout).toContain(
      "reset line (pinctrl-bcm2711/17, active-low) active (low): srv1 is held in reset",
    );
    const record = JSON.parse(readFileSync(path.join(dir, "commissioning-pi1.json"), "utf8"));
    expect(record).toMatchObject({ board: "pi1", by: "bench", complete: true });
    expect(
      record.lines.map((l: { role: string; verdict: string }) => `${l.role} ${l.verdict}`),
    ).toEqual([
      "reset pass",
      "power pass",
      "write-protect pass",
      "storage-mux pass",
      "alarm pass",
      "status pass",
    ]);
    // Each line was driven both ways through gpioset and read back with gpioget --as-is.
    const made = calls();
    for (const offset of [17, 27, 22, 23, 24, 25]) {
      const sets = made.filter(
        (c) => c[0] === "gpioset" && c.some((a) => a.startsWith(`${offset}=`)),
      );
      expect(new Set(sets.map((c) => c.at(-1))).size, `line ${offset}`).toBe(2);
      expect(
        made.some((c) => c[0] === "gpioget" && c.includes("--as-is") && c.includes(String(offset))),
      ).toBe(true);
    }
    // And left at its safe level: reset held (active-low: 0), write-protect on (1).
    expect(physical(17)).toBe(0);
    expect(physical(22)).toBe(1);
  });
});

describe("the gpiod backend with libgpiod v1's tools (Bookworm), read back with pinctrl", () => {
  beforeEach(() => reset({ version: "1.6.3" }));

  it("sets with v1's gpioset and reads back with pinctrl, never with v1's gpioget", () => {
    const lines = BoardLines.claim(board, new GpiodLines(tools), { levels: "safe" });
    expect(physical(17)).toBe(0);
    lines.set("reset", "inactive");
    expect(physical(17)).toBe(1);
    expect(lines.get("reset")).toBe("inactive");
    lines.set("reset", "active");
    expect(lines.get("reset")).toBe("active");
    lines.releaseAll();
    expect(physical(17)).toBe(0);
    const made = calls();
    expect(made).toContainEqual(["gpioset", "--active-low", "--mode=exit", "gpiochip0", "17=0"]);
    expect(made).toContainEqual(["pinctrl", "get", "17"]);
    // v1's gpioget requests the line as an input: it would release a reset line.
    expect(made.some((c) => c[0] === "gpioget")).toBe(false);
  });

  it("catches a line that does not follow, and a driver that lets a released line go", () => {
    reset({ version: "1.6.3", stuck: ["gpiochip0:17"] });
    const stuck = BoardLines.claim(board, new GpiodLines(tools), { levels: "safe" });
    expect(() => stuck.set("reset", "inactive")).toThrow(LineReadBackError);
    stuck.releaseAll();
    reset({ version: "1.6.3", revertOnExit: true });
    const lines = BoardLines.claim(board, new GpiodLines(tools), { levels: "safe" });
    expect(() => lines.set("reset", "inactive")).toThrow(
      /no longer an output \(pinctrl: 17: ip .*\): this GPIO driver does not keep a line's level once gpioset exits; use gpio: sysfs/,
    );
  });

  it("tells smw doctor which tools it will use, or what is missing", () => {
    expect(new GpiodLines(tools).checkTools(["pinctrl-bcm2711"])).toEqual({
      ok: true,
      detail: "libgpiod v1 tools: gpioset --mode=exit, read back with pinctrl",
    });
    expect(new GpiodLines(tools).checkTools(["pinctrl-bcm2711", "mcp23017"])).toMatchObject({
      ok: false,
      detail: expect.stringMatching(/pinctrl, which does not number mcp23017/),
    });
    const noPinctrl = new GpiodLines({ ...tools, pinctrl: path.join(dir, "nowhere", "pinctrl") });
    expect(noPinctrl.checkTools(["pinctrl-rp1"])).toMatchObject({
      ok: false,
      detail: expect.stringMatching(/pinctrl is not installed/),
    });
    reset({ version: "2.1.3" });
    expect(new GpiodLines(tools).checkTools(["mcp23017"])).toEqual({
      ok: true,
      detail: "libgpiod v2 tools: gpioset --toggle 0, gpioget --as-is",
    });
  });

  it("refuses a chip pinctrl does not number, and says how to get pinctrl", () => {
    expect(() =>
      new GpiodLines(tools).claim({ ...reset17, chip: "raspberrypi-exp-gpio", offset: 3 }, "safe"),
    ).toThrow(
      /with libgpiod v1's tools .* read back with the Raspberry Pi's pinctrl, which numbers only the Pi's own GPIO chips .* not gpiochip1 \[raspberrypi-exp-gpio\]/,
    );
    const noPinctrl = new GpiodLines({ ...tools, pinctrl: path.join(dir, "nowhere", "pinctrl") });
    const lines = BoardLines.claim(board, noPinctrl, { levels: "safe" });
    expect(() => lines.set("reset", "inactive")).toThrow(
      /pinctrl is not installed \(Raspberry Pi OS: apt install raspi-utils\)/,
    );
    lines.releaseAll();
  });
});
