/**
 * `smw host doctor`: what stops a payload host from booting its agent is said before its board
 * first releases it, each check with what to do.
 */
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { SERIALPORT_MODULE } from "@smw/wiring/cli";
import { afterAll, describe, expect, it } from "vitest";
import { type HostDoctorEnvironment, hostChecks, listenProbe } from "../src/agent/host-checks.js";
import { makeServiceTestbed } from "../src/service/service-testbed.js";

const SMW = fileURLToPath(new URL("../../bin/smw.js", import.meta.url));
const bed = makeServiceTestbed({ n: 4, kPrime: 1, k: 0, basePort: 27900 });
afterAll(() => bed.remove());
const host = (id: string) =>
  bed.testbed.hosts.find((h) => h.id === id) as (typeof bed.testbed.hosts)[number];
const env = (parts: Partial<HostDoctorEnvironment> = {}): HostDoctorEnvironment => ({
  nodeVersion: "v20.20.2",
  loadedFrom: "host bundle, code cache used",
  loads: () => ({ ok: true }),
  canListen: listenProbe,
  hasTool: () => true,
  isRoot: false,
  ...parts,
});
const byName = (checks: Array<{ name: string; verdict: string; detail: string }>) =>
  Object.fromEntries(checks.map((c) => [c.name, c]));

describe("smw host doctor", () => {
  it("passes a host whose console is a terminal, whose state folder can be made and whose address is free", async () => {
    // A console that is a terminal, as a serial line or a PTY is: /dev/ptmx opens a PTY's end.
    mkdirSync(path.join(bed.dir, "pty"), { recursive: true });
    symlinkSync("/dev/ptmx", path.join(bed.dir, "pty", "h1-host"));
    const checks = byName(await hostChecks(bed.testbed, host("h1"), env(), SERIALPORT_MODULE));
    for (const name of ["node", "code", "serial", "console", "socat", "state", "keys", "address"])
      expect(checks[name]?.verdict, `${name}: ${checks[name]?.detail}`).toBe("ok");
    expect(checks.console?.detail).toMatch(/h1-host: a terminal/);
    expect(checks.keys?.detail).toBe("4 boards' public keys, 1 client public key");
    expect(checks.user).toBeUndefined();
  });

  it("fails what would stop the boot, and says what to do", async () => {
    const taken = createServer();
    const { port } = host("h2").address;
    await new Promise<void>((resolve) => taken.listen(port, "127.0.0.1", resolve));
    // A character device, but no terminal: serialport would fail on it.
    symlinkSync("/dev/null", path.join(bed.dir, "pty", "h2-host"));
    try {
      const checks = byName(
        await hostChecks(
          bed.testbed,
          host("h2"),
          env({
            nodeVersion: "v18.19.0",
            loadedFrom: "modules",
            loads: () => ({ ok: false, why: "serialport did not load (x); it is needed for …" }),
            hasTool: () => false,
            isRoot: true,
          }),
          SERIALPORT_MODULE,
        ),
      );
      expect(checks.node).toMatchObject({ verdict: "fail", detail: /needs Node 20/ });
      expect(checks.code).toMatchObject({ verdict: "warn", detail: /npm run build/ });
      expect(checks.serial).toMatchObject({ verdict: "fail", detail: /serialport did not load/ });
      expect(checks.console).toMatchObject({ verdict: "fail", detail: /h2-host: not a terminal/ });
      expect(checks.socat).toMatchObject({ verdict: "warn", detail: /apt install socat/ });
      expect(checks.user).toMatchObject({ verdict: "warn", detail: /sudo -u smw/ });
      expect(checks.address).toMatchObject({
        verdict: "fail",
        detail: new RegExp(`:${port} is in use`),
      });
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
    // Not there yet: on this simulated testbed, the rig makes it; on hardware, a failure.
    const missing = byName(await hostChecks(bed.testbed, host("h3"), env(), SERIALPORT_MODULE));
    expect(missing.console).toMatchObject({
      verdict: "warn",
      detail: /h3-host: not found .*the rig makes it/,
    });
    const onHardware = { ...bed.testbed, simulated: false };
    const absent = byName(await hostChecks(onHardware, host("h3"), env(), SERIALPORT_MODULE));
    expect(absent.console).toMatchObject({ verdict: "fail", detail: /h3-host: not found/ });
    // A state folder under a file: the file named.
    writeFileSync(path.join(bed.dir, "a-file"), "");
    const underFile = byName(
      await hostChecks(
        onHardware,
        { ...host("h3"), stateDir: path.join(bed.dir, "a-file", "state") },
        env(),
        SERIALPORT_MODULE,
      ),
    );
    expect(underFile.state).toMatchObject({ verdict: "fail", detail: /a-file: not a folder/ });
    const refused = byName(
      await hostChecks(
        bed.testbed,
        host("h3"),
        env({
          loadedFrom:
            "host bundle, code cache refused by V8: made by another node or under other flags (`npm run build` on this machine makes a new one)",
        }),
        SERIALPORT_MODULE,
      ),
    );
    expect(refused.code).toMatchObject({ verdict: "warn", detail: /refused by V8.*npm run build/ });

    // Two boards with one public key: each would certify the other's host.
    copyFileSync(
      path.join(bed.dir, "keys", "b1", "board.pub"),
      path.join(bed.dir, "keys", "b2", "board.pub"),
    );
    const shared = byName(await hostChecks(bed.testbed, host("h3"), env(), SERIALPORT_MODULE));
    expect(shared.keys).toMatchObject({
      verdict: "fail",
      detail: /^b1, b2: one public key for several boards/,
    });

    // Keys the replica reads at start: a board's public key gone, and a client's key not a key.
    // Every problem in one run, the shared key above among them.
    rmSync(path.join(bed.dir, "keys", "b4", "board.pub"), { force: true });
    const clientKey = readdirSync(bed.testbed.clientKeysDir as string).find((n) =>
      n.endsWith(".pub"),
    );
    writeFileSync(
      path.join(bed.testbed.clientKeysDir as string, clientKey as string),
      "not a key\n",
    );
    const keys = byName(await hostChecks(bed.testbed, host("h3"), env(), SERIALPORT_MODULE));
    expect(keys.keys?.verdict).toBe("fail");
    expect(keys.keys?.detail).toMatch(/^3 problems: \(1\) /);
    expect(keys.keys?.detail).toMatch(/b4\/board\.pub: cannot read board b4's public key/);
    expect(keys.keys?.detail).toMatch(new RegExp(`${clientKey}: cannot read a client key`));
    expect(keys.keys?.detail).toMatch(/b1, b2: one public key for several boards/);
  });

  it("runs from the host bundle with its code cache: exit 0 ready, 1 when a check fails, 2 for a host not in the testbed", async () => {
    const fresh = makeServiceTestbed({ n: 4, kPrime: 1, k: 0, basePort: 27920 });
    // As a person runs it: bin/smw.js, which loads `smw host` from the bundle.
    const run = (...argv: string[]) => {
      const child = spawnSync(
        process.execPath,
        [SMW, "host", "doctor", "--testbed", fresh.file, ...argv],
        { encoding: "utf8" },
      );
      return { code: child.status, stdout: child.stdout, stderr: child.stderr };
    };
    try {
      // Its console not made yet (the rig makes it): a warning, not a failure.
      const ready = run("--host", "h4");
      expect(ready.stdout).toMatch(/^OK {4}code {5}the host bundle, with V8's code cache/m);
      expect(ready.stdout).toMatch(/^WARN {2}console .*h4-host: not found/m);
      expect(ready.stdout).toMatch(/^host h4: ready \(\d warnings?\)$/m);
      expect(ready.code).toBe(0);
      const json = run("--host", "h4", "--json");
      expect(
        json.stdout
          .trim()
          .split("\n")
          .map((l) => (JSON.parse(l) as { name: string }).name),
      ).toEqual(
        expect.arrayContaining([
          "node",
          "code",
          "serial",
          "console",
          "socat",
          "state",
          "keys",
          "address",
        ]),
      );
      const taken = createServer();
      await new Promise<void>((resolve) =>
        taken.listen(host("h4").address.port + 20, "127.0.0.1", resolve),
      );
      try {
        const failed = run("--host", "h4");
        expect(failed.stdout).toMatch(/^FAIL {2}address .*:27923 is in use/m);
        expect(failed.stdout).toMatch(/^host h4: 1 check failed$/m);
        expect(failed.code).toBe(1);
      } finally {
        await new Promise((resolve) => taken.close(resolve));
      }
      const unknown = run("--host", "h9");
      expect(unknown.code).toBe(2);
      expect(unknown.stderr).toMatch(/no host "h9"; hosts are h1, h2, h3, h4/);
    } finally {
      fresh.remove();
    }
  });
});
