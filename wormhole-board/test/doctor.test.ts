/**
 * `smw doctor`'s checks on a board of a complete simulated testbed: all pass; then each thing a
 * board can get wrong is named: an old Node, a private key others can read, a missing device,
 * tools absent, no privilege, an unsynchronised clock, a chip the testbed names that is not there.
 */
import { chmodSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { boardChecks, type DoctorEnvironment } from "../src/doctor/board-checks.js";
import { makeTestbed6, socatUnavailable, type Testbed6 } from "../src/index.js";

const noSocat = socatUnavailable();
const healthy: DoctorEnvironment = {
  nodeVersion: "20.19.0",
  hasTool: () => true,
  loads: () => ({ ok: true }),
  mayReadWrite: () => true,
  clockSynchronised: () => true,
  mayRaisePriority: () => true,
};

describe.skipIf(noSocat !== undefined)("smw doctor's board checks", () => {
  let bed: Testbed6;
  beforeAll(async () => {
    bed = await makeTestbed6("udp", "free");
  });
  afterAll(async () => {
    await bed?.close();
  });
  const board = () => bed.testbed.boards[0] as Testbed6["testbed"]["boards"][number];

  it("passes a board whose files, state folder and platform are in order", () => {
    const checks = boardChecks(bed.testbed, board(), healthy);
    expect(checks.filter((c) => c.verdict !== "ok")).toEqual([]);
    expect(checks.map((c) => c.name)).toEqual([
      "node",
      "blake3",
      "serialport",
      "socat",
      "chrt",
      "priority",
      "files",
      "gpio",
      "access",
      "state",
      "clock",
    ]);
  });

  it("names what is wrong, each in its own check", () => {
    const signing = board().keys.signingPath;
    chmodSync(signing, 0o644);
    rmSync(path.join(bed.dir, "pty", "h1-board"));
    try {
      const checks = boardChecks(bed.testbed, board(), {
        nodeVersion: "18.19.1",
        hasTool: (tool) => tool !== "socat",
        loads: () => ({ ok: true }),
        // No device is this user's (not in groups disk, dialout, gpio).
        mayReadWrite: () => false,
        clockSynchronised: () => false,
        mayRaisePriority: () => false,
      });
      const by = (name: string) => checks.filter((c) => c.name === name);
      expect(by("node")[0]).toMatchObject({
        verdict: "fail",
        detail: expect.stringMatching(/Node 18\.19\.1: smw needs Node 20 or newer/),
      });
      expect(by("socat")[0]).toMatchObject({
        verdict: "warn",
        detail: expect.stringMatching(/not found: needed for systemd's watchdog/),
      });
      expect(by("chrt")[0]?.verdict).toBe("ok");
      expect(by("priority")[0]?.verdict).toBe("warn");
      expect(by("clock")[0]).toMatchObject({
        verdict: "warn",
        detail: expect.stringMatching(/not synchronised/),
      });
      // The live images are there but not this user's; the missing host link is the files
      // check's to name.
      expect(by("access").map((c) => `${c.verdict} ${c.detail}`)).toEqual([
        expect.stringMatching(
          /^fail \S+ \(the live os image\) is not readable and writable by \S+: add \S+ to group disk \(sudo usermod -aG disk \S+\)/,
        ),
        expect.stringMatching(/^fail \S+ \(the live sm image\) .* group disk/),
      ]);
      const files = by("files").map((c) => `${c.verdict} ${c.detail}`);
      expect(files).toContainEqual(
        expect.stringMatching(
          new RegExp(
            `^fail boards\\.0\\.keys\\.signing: .*${signing.replaceAll(".", "\\.")}.*(mode|readable)`,
          ),
        ),
      );
      expect(files).toContainEqual(
        expect.stringMatching(
          /^fail boards\.0\.hostLink\.device: host link device .*h1-board does not exist/,
        ),
      );
    } finally {
      chmodSync(signing, 0o600);
    }
  });

  it("checks the kernel watchdog the daemon will feed: there, and writable by its user", () => {
    const device = path.join(bed.dir, "watchdog");
    writeFileSync(device, "");
    const verdict = (env: DoctorEnvironment, watchdogDevice: string) =>
      boardChecks(bed.testbed, board(), env, { watchdogDevice })
        .filter((c) => c.name === "watchdog")
        .map((c) => `${c.verdict} ${c.detail}`);
    expect(verdict(healthy, device)).toEqual([
      expect.stringMatching(/^ok .*watchdog writable: a hung daemon will reboot the board$/),
    ]);
    expect(verdict({ ...healthy, mayReadWrite: (f) => f !== device }, device)).toEqual([
      expect.stringMatching(
        /^fail .*watchdog is not writable by \S+: add the udev rule KERNEL=="watchdog\*"/,
      ),
    ]);
    expect(verdict(healthy, path.join(bed.dir, "no-watchdog"))).toEqual([
      expect.stringMatching(/^fail .*no-watchdog does not exist: enable the Pi's watchdog/),
    ]);
    // Without --watchdog nothing is said of it.
    expect(boardChecks(bed.testbed, board(), healthy).some((c) => c.name === "watchdog")).toBe(
      false,
    );
  });

  it("finds a real board's chips by label, and names a line its chip does not have", () => {
    const real = { ...bed.testbed, simulated: false };
    const missing = boardChecks(real, board(), {
      ...healthy,
      sysfsRoot: path.join(bed.dir, "none"),
    });
    expect(missing.filter((c) => c.name === "gpio")).toEqual([
      {
        name: "gpio",
        verdict: "fail",
        detail: expect.stringMatching(/cannot read .*none .*no sysfs GPIO/),
      },
    ]);
    // A sysfs tree with the board's chip, two lines long: reset (0) and write-protect (1) are
    // found, the alarm (2) is not.
    const root = path.join(bed.dir, "sysfs-gpio");
    mkdirSync(path.join(root, "gpiochip512"), { recursive: true });
    for (const [file, text] of [
      ["label", "sim-b1"],
      ["base", "512"],
      ["ngpio", "2"],
    ])
      writeFileSync(path.join(root, "gpiochip512", file as string), `${text}\n`);
    const gpio = boardChecks(real, board(), { ...healthy, sysfsRoot: root }).filter(
      (c) => c.name === "gpio",
    );
    expect(gpio.map((c) => `${c.verdict} ${c.detail}`)).toEqual([
      "ok reset: sim-b1/0 is gpiochip512, sysfs gpio512",
      "ok write-protect: sim-b1/1 is gpiochip512, sysfs gpio513",
      "fail alarm: gpiochip512 (sim-b1) has 2 lines, no offset 2",
    ]);
  });
});
