import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { smw } from "./run-smw.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const rig6 = path.join(root, "wiring", "examples", "rig-6.yaml");
const piLab = path.join(root, "wiring", "examples", "pi-lab.yaml");
const invalid = path.join(root, "wiring", "test", "fixtures", "invalid");
const scratch = mkdtempSync(path.join(tmpdir(), "smw-cli-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const paperFlags = [
  "--n",
  "6",
  "--k",
  "1",
  "--k-prime",
  "1",
  "--t-localexec",
  "40s",
  "--t-exhaust",
  "sequential:1d",
];

describe("smw plan", () => {
  it("plans the example testbed: feasible, exit 0", async () => {
    const { code, stdout } = await smw("plan", rig6);
    expect(code).toBe(0);
    expect(stdout).toContain('testbed "rig-6"');
    expect(stdout).toContain("verdict: FEASIBLE");
    expect(stdout).toContain("holds  n >= 3k' + 2k + 1");
  });

  it("prints JSON with the promised fields", async () => {
    const { code, stdout } = await smw(
      "plan",
      ...paperFlags,
      "--t-p",
      "1h",
      "--t-d",
      "10m",
      "--json",
    );
    expect(code).toBe(0);
    const json = JSON.parse(stdout);
    expect(json).toMatchObject({
      feasible: true,
      nMin: 6,
      tLocalexecMs: 40_000,
      tExecMs: 240_000,
      groups: 6,
    });
    expect(json.conditions).toHaveLength(7);
    for (const condition of json.conditions) {
      expect(Object.keys(condition)).toEqual(expect.arrayContaining(["name", "holds", "detail"]));
    }
  });

  it("exits 1 when infeasible and names the failing condition and its fix", async () => {
    const { code, stdout } = await smw("plan", ...paperFlags.map((a) => (a === "6" ? "5" : a)));
    expect(code).toBe(1);
    expect(stdout).toContain("FAILS  n >= 3k' + 2k + 1");
    expect(stdout).toContain("fix: minimum n = 6");
    expect(stdout).toContain("verdict: INFEASIBLE");
  });

  it("takes the five budgets instead of T_localexec", async () => {
    const budgets = [
      "--t-shutdown",
      "1s",
      "--t-checkcode",
      "2s",
      "--t-restorecode",
      "3s",
      "--t-boot",
      "4s",
      "--t-transfer",
      "5s",
    ];
    const { code, stdout } = await smw(
      "plan",
      "--n",
      "7",
      "--k",
      "2",
      "--k-prime",
      "1",
      ...budgets,
      "--t-exhaust",
      "parallel:1h",
      "--json",
    );
    expect(JSON.parse(stdout)).toMatchObject({
      tLocalexecMs: 20_000,
      groups: 4,
      tExecMs: 80_000,
      nMin: 8,
    });
    expect(code).toBe(1);
  });

  it("lets flags override a testbed's figures", async () => {
    const { code, stdout } = await smw("plan", rig6, "--t-transfer", "1m", "--json");
    expect(code).toBe(1);
    const json = JSON.parse(stdout);
    expect(json.tLocalexecMs).toBe(1_500 + 2 * 250 + 2 * 500 + 4_500 + 60_000);
    expect(json.conditions.find((c: { name: string }) => c.name === "T_d >= T_exec").holds).toBe(
      false,
    );
  });

  it.each([
    [["plan", "--n", "6"], "missing --k"],
    [
      ["plan", ...paperFlags.slice(0, 6), "--t-exhaust", "sequential:1d"],
      "missing the step budgets",
    ],
    [["plan", ...paperFlags, "--t-boot", "3s"], "not both"],
    [
      [
        "plan",
        "--n",
        "6",
        "--k",
        "1",
        "--k-prime",
        "1",
        "--t-boot",
        "3s",
        "--t-exhaust",
        "sequential:1d",
      ],
      "missing --t-shutdown, --t-checkcode, --t-restorecode, --t-transfer",
    ],
    [["plan", ...paperFlags, "--t-p", "soon"], '--t-p: "soon" is not a duration'],
    [["plan", ...paperFlags, "--t-d", "10"], "has no unit"],
    [["plan", "--n", "six", "--k", "1", "--k-prime", "1"], '--n "six": expected a whole number'],
    [
      [
        "plan",
        "--n",
        "0",
        "--k",
        "1",
        "--k-prime",
        "1",
        "--t-localexec",
        "1s",
        "--t-exhaust",
        "parallel:1d",
      ],
      "n must be an integer >= 1",
    ],
    [["plan", ...paperFlags.slice(0, 8), "--t-exhaust", "quadratic:1d"], "expected sequential:T"],
    [["plan", "--bogus"], "unknown option '--bogus'"],
    [["plan", path.join(invalid, "13-k-zero.yaml")], "rejuvenation.k: k is at least 1"],
    [["nonsense"], "unknown command"],
  ])("smw %j exits 2: %s", async (argv, message) => {
    const { code, stderr } = await smw(...argv);
    expect(code).toBe(2);
    expect(stderr).toContain(message);
  });
});

describe("smw wiring check", () => {
  it("summarizes a valid testbed, exit 0", async () => {
    const { code, stdout } = await smw("wiring", "check", piLab);
    expect(code).toBe(0);
    expect(stdout).toContain('valid testbed "pi-lab" (physical)');
    expect(stdout).toContain("pi1 guards srv1: reset pinctrl-bcm2711/17 active-low");
    expect(stdout).toContain("files: not checked");
  });

  it("prints every problem with file, line and path, exit 2", async () => {
    const file = path.join(invalid, "29-serial-no-link-back.yaml");
    const { code, stderr } = await smw("wiring", "check", file);
    expect(code).toBe(2);
    expect(stderr).toContain(`${file}:40:39: boards[1].control.links.b3: board "b2" links to "b3"`);
    expect(stderr).toContain("boards[2].control.links: in a mesh every board links to every other");
    expect(stderr).toContain("2 problems found");
  });

  it("prints problems as JSON when asked", async () => {
    const { code, stdout } = await smw(
      "wiring",
      "check",
      path.join(invalid, "06-unknown-key.yaml"),
      "--json",
    );
    expect(code).toBe(2);
    const json = JSON.parse(stdout);
    expect(json.valid).toBe(false);
    expect(json.problems[0]).toMatchObject({ line: 24, path: ["boards", 0, "lines", 1, "saef"] });
  });

  it("checks a board's files with --board and names what is missing", async () => {
    const { code, stderr } = await smw("wiring", "check", piLab, "--board", "pi1");
    expect(code).toBe(2);
    expect(stderr).toContain(
      "boards[0].keys.signing: board signing key /etc/smw/keys/boards/pi1.key does not exist",
    );
  });

  it("names a missing file", async () => {
    const { code, stderr } = await smw("wiring", "check", path.join(scratch, "nope.yaml"));
    expect(code).toBe(2);
    expect(stderr).toContain("nope.yaml: (top level): no such file");
  });
});

describe("smw wiring diagram", () => {
  it("writes an SVG", async () => {
    const out = path.join(scratch, "rig.svg");
    const { code, stdout } = await smw("wiring", "diagram", rig6, "-o", out);
    expect(code).toBe(0);
    expect(stdout).toContain("6 boards and 6 hosts");
    expect(readFileSync(out, "utf8")).toMatch(/^<\?xml[\s\S]*<\/svg>\n$/);
  });

  it("refuses an invalid testbed without writing anything", async () => {
    const out = path.join(scratch, "bad.svg");
    const { code } = await smw(
      "wiring",
      "diagram",
      path.join(invalid, "20-no-reset-line.yaml"),
      "-o",
      out,
    );
    expect(code).toBe(2);
    expect(existsSync(out)).toBe(false);
  });

  it("names an output it cannot write", async () => {
    const { code, stderr } = await smw(
      "wiring",
      "diagram",
      rig6,
      "-o",
      path.join(scratch, "no", "such", "dir.svg"),
    );
    expect(code).toBe(2);
    expect(stderr).toContain("cannot write");
  });
});

describe("the installed program", () => {
  const bin = path.join(root, "bin", "smw.js");

  it("runs as a process with the same exit codes", () => {
    expect(existsSync(path.join(root, "cli", "dist", "smw.js")), "build first: npm run build").toBe(
      true,
    );
    const ok = spawnSync(process.execPath, [bin, "plan", rig6], { encoding: "utf8" });
    expect(ok.status).toBe(0);
    expect(ok.stdout).toContain("FEASIBLE");
    const bad = path.join(scratch, "broken.yaml");
    writeFileSync(bad, "smw: 1\nname: [unclosed\n");
    const broken = spawnSync(process.execPath, [bin, "wiring", "check", bad], { encoding: "utf8" });
    expect(broken.status).toBe(2);
    expect(broken.stderr).toContain("YAML");
    expect(broken.stderr).not.toMatch(/\n\s+at /);
    expect(execFileSync(process.execPath, [bin, "--version"], { encoding: "utf8" }).trim()).toMatch(
      /^\d+\.\d+\.\d+$/,
    );
  });
});
