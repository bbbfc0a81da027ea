/**
 * `smw lines` on the simulated testbed: what it prints for each command, and bad input named
 * before any line is claimed. (The sysfs path, with the daemon's lock, runs in sysfs-lines.test.ts.)
 */
import { describe, expect, it } from "vitest";
import { smw } from "../../cli/test/run-smw.js";

const at = ["--testbed", "wiring/examples/rig-6.yaml", "--board", "b2"];

describe("smw lines", () => {
  it("lists a board's lines with their physical safe levels", async () => {
    const run = await smw("lines", "list", ...at);
    expect(run).toMatchObject({ code: 0, stderr: "" });
    expect(run.stdout).toMatch(/^board b2 \(guards h2\), simulated lines$/m);
    expect(run.stdout).toMatch(/reset +sim-b2\/0 +active-low +safe active \(low\) +simulated/);
    const json = await smw("lines", "list", ...at, "--json");
    const rows = json.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line));
    expect(rows.map((r) => r.role)).toEqual(["reset", "power", "write-protect", "alarm", "status"]);
    expect(rows[0]).toMatchObject({
      chip: "sim-b2",
      offset: 0,
      safe: "active",
      safePhysical: "low",
    });
  });

  it("sets, holds and releases at the safe level; pulses away from it and back", async () => {
    const set = await smw("lines", "set", "reset", "inactive", "--hold", "50ms", ...at);
    expect(set.code).toBe(0);
    expect(set.stdout).toBe(
      "reset line (sim-b2/0, active-low): set inactive (high), reads back inactive; holding 50ms\nreleased at its safe level (active, low)\n",
    );
    const pulse = await smw("lines", "pulse", "status", "--for", "20ms", ...at);
    expect(pulse.code).toBe(0);
    expect(pulse.stdout).toBe(
      "status line (sim-b2/4): set active (high), reads back active for 20ms, then back to inactive (low)\n",
    );
  });

  it("names bad input: a role the board lacks, a level, a duration, a board", async () => {
    const role = await smw("lines", "get", "storage-mux", ...at);
    expect(role.code).toBe(2);
    expect(role.stderr).toMatch(/board b2 has no storage-mux line \(its lines: reset, power, /);
    const level = await smw("lines", "set", "reset", "up", ...at);
    expect(level.code).toBe(2);
    expect(level.stderr).toMatch(/level "up": expected active, inactive or safe/);
    const hold = await smw("lines", "set", "reset", "safe", "--hold", "soon", ...at);
    expect(hold.code).toBe(2);
    expect(hold.stderr).toMatch(/--hold soon: /);
    const board = await smw(
      "lines",
      "list",
      "--testbed",
      "wiring/examples/rig-6.yaml",
      "--board",
      "b9",
    );
    expect(board.code).toBe(2);
    expect(board.stderr).toMatch(/there is no board "b9"/);
  });
});
