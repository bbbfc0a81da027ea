import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  formatPath,
  formatProblem,
  linkKeyFileName,
  loadTestbedFile,
  parseTestbed,
  type Testbed,
} from "@smw/wiring";
import { afterEach, describe, expect, it } from "vitest";

const here = path.dirname(fileURLToPath(import.meta.url));
const examples = path.join(here, "..", "examples");
const fixtures = path.join(here, "fixtures");

function loadOk(file: string): Testbed {
  const result = loadTestbedFile(file);
  if (!result.ok) throw new Error(result.problems.map(formatProblem).join("\n"));
  return result.testbed;
}

describe("the example testbeds", () => {
  it("rig-6.yaml is valid: 6 boards, 6 hosts, k = k' = 1, serial mesh", () => {
    const testbed = loadOk(path.join(examples, "rig-6.yaml"));
    expect(testbed.simulated).toBe(true);
    expect(testbed.boards).toHaveLength(6);
    expect(testbed.hosts).toHaveLength(6);
    expect(testbed.rejuvenation).toMatchObject({ k: 1, kPrime: 1, f: 2 });
    expect(testbed.controlNetwork).toMatchObject({ transport: "serial", topology: "mesh" });
    for (const board of testbed.boards) {
      expect(board.control.kind).toBe("links");
      if (board.control.kind === "links") expect(board.control.links).toHaveLength(5);
    }
    expect(testbed.rejuvenation.groups).toEqual([["h1"], ["h2"], ["h3"], ["h4"], ["h5"], ["h6"]]);
  });

  it("pi-lab.yaml is valid: real chip labels, device paths, a configured group order", () => {
    const testbed = loadOk(path.join(examples, "pi-lab.yaml"));
    expect(testbed.simulated).toBe(false);
    const chips = new Set(testbed.boards.flatMap((b) => b.lines.map((l) => l.chip)));
    expect(chips).toEqual(new Set(["pinctrl-bcm2711", "pinctrl-rp1"]));
    expect(testbed.boards[0]?.hostLink.device).toBe(
      "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_SMWHOST-if00-port0",
    );
    expect(testbed.rejuvenation.groups.map((g) => g[0])).toEqual([
      "srv1",
      "srv4",
      "srv2",
      "srv5",
      "srv3",
      "srv6",
    ]);
    expect(testbed.controlNetwork.transport).toBe("udp");
  });

  it("the small valid fixtures are valid", () => {
    loadOk(path.join(fixtures, "valid-udp.yaml"));
    loadOk(path.join(fixtures, "valid-serial.yaml"));
  });
});

describe("defaults and resolution", () => {
  const testbed = loadOk(path.join(fixtures, "valid-udp.yaml"));

  it("fills each line's levels with the safe choice for its role", () => {
    const lines = testbed.boards[0]?.lines ?? [];
    const byRole = Object.fromEntries(
      lines.map((l) => [l.role, { initial: l.initial, safe: l.safe }]),
    );
    expect(byRole.reset).toEqual({ initial: "inactive", safe: "active" });
    expect(byRole["write-protect"]).toEqual({ initial: "active", safe: "active" });
    expect(byRole.alarm).toEqual({ initial: "inactive", safe: "active" });
  });

  it("resolves relative paths against the file's folder and keeps absolute ones", () => {
    expect(testbed.operatorKeyPath).toBe(path.join(fixtures, "keys", "operator.pub"));
    expect(testbed.boards[0]?.images.os.live).toBe("/dev/sda1");
  });

  it("turns durations into milliseconds and defaults f to k + k'", () => {
    expect(testbed.rejuvenation.budgets).toEqual({
      tShutdownMs: 5_000,
      tCheckcodeMs: 10_000,
      tRestorecodeMs: 30_000,
      tBootMs: 30_000,
      tTransferMs: 60_000,
    });
    expect(testbed.rejuvenation.tPMs).toBe(3_600_000);
    expect(testbed.rejuvenation.f).toBe(2);
    expect(testbed.controlNetwork.deliveryBoundMs).toBe(10);
  });

  it("leases keys for 1 s and bounds clients' clocks to 250 ms, less where T_shutdown is short", () => {
    expect(testbed.rejuvenation.keyLeaseMs).toBe(1_000);
    expect(testbed.timeliness.clientClockBoundMs).toBe(250);
    const text = readFileSync(path.join(fixtures, "valid-udp.yaml"), "utf8").replace(
      /budgets: \{[^}]*\}/,
      "budgets: { tShutdown: 900ms, tCheckcode: 50ms, tRestorecode: 50ms, tBoot: 300ms, tTransfer: 300ms }",
    );
    const short = parseTestbed(text, path.join(fixtures, "short.yaml"));
    if (!short.ok) throw new Error(short.problems.map(formatProblem).join("\n"));
    // Half of T_shutdown, and a quarter of that.
    expect(short.testbed.rejuvenation.keyLeaseMs).toBe(450);
    expect(short.testbed.timeliness.clientClockBoundMs).toBe(112);
  });

  it("fills each host's replica settings from the file's replication defaults, then the built-in ones", () => {
    const rig = loadOk(path.join(examples, "rig-6.yaml"));
    expect(rig.hosts[0]?.replica).toEqual({
      checkpointInterval: 16,
      batchMax: 16,
      batchesInFlight: 2,
      viewChangeTimeoutMs: 1_000,
    });
  });
});

interface Expectation {
  path: string;
  message: string;
  line?: number;
}

function expectationOf(file: string): Expectation {
  const text = readFileSync(file, "utf8");
  const field = (name: string) => new RegExp(`^# expect-${name}: (.*)$`, "m").exec(text)?.[1];
  const line = field("line");
  return {
    path: field("path") as string,
    message: field("message") as string,
    ...(line === undefined ? {} : { line: Number(line) }),
  };
}

describe("every validation rule has a failing file", () => {
  const dir = path.join(fixtures, "invalid");
  const files = readdirSync(dir)
    .filter((f) => f.endsWith(".yaml"))
    .sort();

  it("has the files", () => {
    expect(files.length).toBeGreaterThanOrEqual(40);
  });

  for (const name of files) {
    it(name, () => {
      const file = path.join(dir, name);
      const expected = expectationOf(file);
      const result = loadTestbedFile(file, { displayName: name });
      expect(result.ok).toBe(false);
      if (result.ok) return;
      const match = result.problems.find(
        (p) => formatPath(p.path) === expected.path && p.message.includes(expected.message),
      );
      expect(
        match,
        `problems were:\n${result.problems.map(formatProblem).join("\n")}`,
      ).toBeDefined();
      if (expected.line !== undefined) expect(match?.line).toBe(expected.line);
      for (const problem of result.problems) expect(problem.file).toBe(name);
    });
  }
});

describe("reporting", () => {
  it("names what is wrong inside the one branch of a choice the value took (tExhaust)", () => {
    const base = readFileSync(path.join(fixtures, "valid-udp.yaml"), "utf8");
    const problems = (replacement: string) => {
      const result = parseTestbed(base.replace("sequential: 1d", replacement), "t.yaml");
      return result.ok ? [] : result.problems.map((p) => `${formatPath(p.path)}: ${p.message}`);
    };
    expect(problems("sequential: banana")).toEqual([
      'tExhaust.sequential: "banana" is not a duration; write e.g. 150ms, 20s, 5m, 2h, 30d or 1h30m',
    ]);
    expect(problems("sequential: 0ms")).toEqual(["tExhaust.sequential: must be longer than zero"]);
    // No branch taken: the choice as a whole.
    expect(problems("sequentail: 1d")).toEqual([
      "tExhaust: expected exactly one of { sequential: T }, { parallel: T } or { table: { 1: T1, 2: T2, ... } }",
    ]);
  });

  it("reports every schema problem at once, sorted by line", () => {
    const text = readFileSync(path.join(fixtures, "valid-udp.yaml"), "utf8")
      .replace("offset: 27 }", "offset: -1 }")
      .replace("tBoot: 30s", "tBoot: soon")
      .replace("  k: 1\n", "  k: 1\n  kk: 2\n");
    const result = parseTestbed(text, path.join(fixtures, "x.yaml"), { displayName: "x.yaml" });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.problems.map((p) => formatPath(p.path))).toEqual([
      "boards[0].lines[1].offset",
      "rejuvenation.kk",
      "rejuvenation.budgets.tBoot",
    ]);
    const lines = result.problems.map((p) => p.line ?? 0);
    expect([...lines].sort((a, b) => a - b)).toEqual(lines);
    expect(formatProblem(result.problems[0] as never)).toMatch(
      /^x\.yaml:\d+:\d+: boards\[0\]\.lines\[1\]\.offset: /,
    );
  });

  it("names a missing file", () => {
    const result = loadTestbedFile(path.join(fixtures, "no-such.yaml"));
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.problems[0]?.message).toBe("no such file");
  });

  it("survives hostile YAML: alias bombs, deep nesting, binary junk", () => {
    const bomb = `a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n`;
    for (const text of [
      bomb,
      `${"[".repeat(5000)}${"]".repeat(5000)}`,
      "\u0000\u0001\u00ff{:",
      "- 1\n- 2\n",
      "just a string",
    ]) {
      const result = parseTestbed(text, path.join(fixtures, "hostile.yaml"));
      expect(result.ok).toBe(false);
      if (!result.ok) expect(result.problems.length).toBeGreaterThan(0);
    }
  });
});

describe("file checks on a board", () => {
  let dir = "";
  afterEach(() => {
    if (dir !== "") rmSync(dir, { recursive: true, force: true });
  });

  function makeTestbedWithFiles(keyMode: number): string {
    dir = mkdtempSync(path.join(tmpdir(), "smw-files-"));
    const text = readFileSync(path.join(fixtures, "valid-serial.yaml"), "utf8");
    writeFileSync(path.join(dir, "testbed.yaml"), text);
    const touch = (rel: string, mode = 0o644) => {
      mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
      writeFileSync(path.join(dir, rel), "x");
      chmodSync(path.join(dir, rel), mode);
    };
    touch("run/keys/operator.pub");
    touch("run/keys/b1.key", keyMode);
    touch(`run/keys/b1/${linkKeyFileName("b2")}`, keyMode);
    touch(`run/keys/b1/${linkKeyFileName("b3")}`, keyMode);
    for (const f of [
      "run/h1/os.img",
      "run/h1/sm.img",
      "run/golden/os.img",
      "run/golden/os.json",
      "run/golden/sm.img",
      "run/golden/sm.json",
      "run/pty/h1-board",
      "run/pty/b1-b2",
      "run/pty/b1-b3",
    ]) {
      touch(f);
    }
    return path.join(dir, "testbed.yaml");
  }

  it("passes when the board's keys are present and private", () => {
    const file = makeTestbedWithFiles(0o600);
    const result = loadTestbedFile(file, { files: { kind: "board", board: "b1" } });
    expect(result.ok ? "ok" : result.problems.map(formatProblem).join("\n")).toBe("ok");
  });

  it("refuses key files readable by group or others, naming the file and the fix", () => {
    const file = makeTestbedWithFiles(0o640);
    const result = loadTestbedFile(file, { files: { kind: "board", board: "b1" } });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    const signing = result.problems.find((p) => formatPath(p.path) === "boards[0].keys.signing");
    expect(signing?.message).toContain("readable by group or others (mode 0640)");
    expect(signing?.message).toContain("chmod 600");
    expect(
      result.problems.filter((p) => formatPath(p.path) === "boards[0].keys.linkDir"),
    ).toHaveLength(2);
  });

  it("names each missing key file", () => {
    const file = makeTestbedWithFiles(0o600);
    rmSync(path.join(dir, "run/keys/b1", linkKeyFileName("b3")));
    const result = loadTestbedFile(file, { files: { kind: "board", board: "b1" } });
    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect(result.problems.map((p) => p.message).join("\n")).toMatch(
        /link key shared with board "b3" .*b3\.key does not exist/,
      );
    }
  });

  it("checks every board with the all scope, and refuses an unknown board", () => {
    const file = makeTestbedWithFiles(0o600);
    const all = loadTestbedFile(file, { files: { kind: "all" } });
    expect(all.ok).toBe(false);
    if (!all.ok)
      expect(all.problems.some((p) => formatPath(p.path) === "boards[1].keys.signing")).toBe(true);
    const unknown = loadTestbedFile(file, { files: { kind: "board", board: "b9" } });
    expect(unknown.ok).toBe(false);
    if (!unknown.ok) expect(unknown.problems[0]?.message).toContain('there is no board "b9"');
  });
});
