/**
 * `smw deploy systemd` and `smw deploy config-txt` for a Pi testbed: units that systemd accepts
 * without a warning (where systemd-analyze is present) and that run the daemon as the watchdog
 * and the lines need; config.txt lines that drive each line to its physical safe level.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { smw } from "../../cli/test/run-smw.js";

const testbed = "wiring/examples/pi-lab.yaml";
const dir = mkdtempSync(path.join(tmpdir(), "smw-deploy-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const analyze = spawnSync("systemd-analyze", ["--version"]).status === 0;

describe("smw deploy systemd", () => {
  it("writes the board daemon's and the host agent's units", async () => {
    const run = await smw(
      "deploy",
      "systemd",
      "--testbed",
      testbed,
      "--board",
      "pi2",
      "--out",
      dir,
      "--smw",
      "/opt/smw/bin/smw.js",
      "--watchdog",
      "/dev/watchdog",
      "--watchdog-sec",
      "8",
    );
    expect(run).toMatchObject({ code: 0, stderr: "" });
    expect(run.stdout).toContain(`wrote ${path.join(dir, "smw-board-pi2.service")}`);
    const board = readFileSync(path.join(dir, "smw-board-pi2.service"), "utf8");
    expect(board).toContain(
      "ExecStart=/usr/bin/node /opt/smw/bin/smw.js board run --testbed /etc/smw/testbed.yaml --board pi2 --watchdog /dev/watchdog\n",
    );
    for (const directive of [
      "Type=notify",
      "NotifyAccess=all",
      "WatchdogSec=8s",
      "Restart=always",
      "StateDirectory=smw/pi2",
      "SupplementaryGroups=gpio dialout disk",
      "AmbientCapabilities=CAP_SYS_NICE",
      "LimitRTPRIO=10",
      "SuccessExitStatus=143",
      "TimeoutStopSec=10s",
      "RuntimeDirectoryPreserve=yes",
    ])
      expect(board).toContain(`${directive}\n`);
    const host = readFileSync(path.join(dir, "smw-host-srv2.service"), "utf8");
    expect(host).toContain(
      "ExecStart=/usr/bin/node /opt/smw/bin/smw.js host run --testbed /etc/smw/testbed.yaml --host srv2\n",
    );
    for (const directive of [
      "Type=notify",
      "NotifyAccess=all",
      "WatchdogSec=8s",
      "Restart=on-failure",
      "KillMode=mixed",
      "StateDirectory=smw/state",
      "SupplementaryGroups=dialout",
    ])
      expect(host).toContain(`${directive}\n`);
  });

  it("gives a stop the time to let the last key lease lapse before the reset", async () => {
    // A lease of 8 s: systemd would kill a daemon still waiting for it after 10 s.
    const longLease = path.join(dir, "long-lease.yaml");
    const text = readFileSync(testbed, "utf8");
    expect(text).toContain("  tD: 50m\n");
    writeFileSync(longLease, text.replace("  tD: 50m\n", "  tD: 50m\n  keyLease: 8s\n"));
    const out = path.join(dir, "long-lease");
    const run = await smw(
      "deploy",
      "systemd",
      "--testbed",
      longLease,
      "--board",
      "pi2",
      "--out",
      out,
      "--smw",
      "/opt/smw/bin/smw.js",
    );
    expect(run).toMatchObject({ code: 0, stderr: "" });
    expect(readFileSync(path.join(out, "smw-board-pi2.service"), "utf8")).toContain(
      "TimeoutStopSec=13s\n",
    );
  });

  it.skipIf(!analyze)("writes units systemd-analyze verify accepts without a warning", () => {
    const check = spawnSync(
      "systemd-analyze",
      ["verify", path.join(dir, "smw-board-pi2.service"), path.join(dir, "smw-host-srv2.service")],
      { encoding: "utf8" },
    );
    expect(check.stderr).toBe("");
    expect(check.status).toBe(0);
  });

  it("refuses a testbed value that would write a directive of its own into a unit", async () => {
    const hostile = path.join(dir, "hostile.yaml");
    const text = readFileSync(testbed, "utf8").replace(
      "  - id: pi2\n",
      '  - id: pi2\n    stateDir: "/srv/x\\nExecStartPre=+/bin/touch /tmp/owned"\n',
    );
    writeFileSync(hostile, text);
    const run = await smw(
      "deploy",
      "systemd",
      "--testbed",
      hostile,
      "--board",
      "pi2",
      "--out",
      path.join(dir, "hostile"),
    );
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(
      /board pi2's stateDir "\/srv\/x\\nExecStartPre=.*": a unit file needs an absolute path without spaces/,
    );
  });

  it("refuses what systemd could not run, naming the option", async () => {
    const relative = await smw(
      "deploy",
      "systemd",
      "--testbed",
      testbed,
      "--board",
      "pi2",
      "--smw",
      "bin/smw.js",
    );
    expect(relative.code).toBe(2);
    expect(relative.stderr).toMatch(/--smw bin\/smw\.js: systemd needs an absolute path/);
    const short = await smw(
      "deploy",
      "systemd",
      "--testbed",
      testbed,
      "--board",
      "pi2",
      "--watchdog-sec",
      "1",
    );
    expect(short.code).toBe(2);
    expect(short.stderr).toMatch(/--watchdog-sec 1: expected whole seconds from 2 to 3600/);
    const unknown = await smw("deploy", "systemd", "--testbed", testbed, "--board", "pi9");
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/there is no board "pi9" \(boards: pi1, /);
  });
});

describe("smw deploy config-txt", () => {
  it("drives each line to its physical safe level, and says which need a pull resistor", async () => {
    const run = await smw("deploy", "config-txt", "--testbed", testbed, "--board", "pi1");
    expect(run).toMatchObject({ code: 0, stderr: "" });
    // pi-lab pi1: reset GPIO 17 active-low, safe active: low; write-protect GPIO 22, safe active: high.
    expect(run.stdout).toMatch(/^gpio=17=op,dl +# reset \(active-low\), safe active$/m);
    expect(run.stdout).toMatch(/^gpio=22=op,dh +# write-protect, safe active$/m);
    // GPIO 17 is pulled low by the SoC from power-on, as reset needs; GPIO 22 is pulled low, and
    // write-protect must be high: a resistor.
    expect(run.stdout).toMatch(/# {3}reset: none needed: GPIO 17 is pulled low by the SoC/);
    expect(run.stdout).toMatch(/# {3}write-protect: an external pull-up resistor \(10 kΩ to 3V3/);
  });
});
