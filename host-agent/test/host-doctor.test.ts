/**
 * `smw host doctor`: what stops a payload host from booting its agent is said before its board
 * first releases it, each check with what to do.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
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
  ...parts,
});
const byName = (checks: Array<{ name: string; verdict: string; detail: string }>) =>
  Object.fromEntries(checks.map((c) => [c.name, c]));

describe("smw host doctor", () => {
  it("passes a host whose console is a character device, whose state folder can be made and whose address is free", async () => {
    // The console a PTY would be: any character device the user may read and write.
    mkdirSync(path.join(bed.dir, "pty"), { recursive: true });
    symlinkSync("/dev/null", path.join(bed.dir, "pty", "h1-host"));
    const checks = byName(await hostChecks(bed.testbed, host("h1"), env(), SERIALPORT_MODULE));
    for (const name of ["node", "code", "serial", "console", "state", "keys", "address"])
      expect(checks[name]?.verdict, `${name}: ${checks[name]?.detail}`).toBe("ok");
    expect(checks.console?.detail).toMatch(/h1-host: a character device/);
  });

  it("fails what would stop the boot, and says what to do", async () => {
    const taken = createServer();
    const { port } = host("h2").address;
    await new Promise<void>((resolve) => taken.listen(port, "127.0.0.1", resolve));
    writeFileSync(path.join(bed.dir, "pty", "h2-host"), "a file, not a device");
    try {
      const checks = byName(
        await hostChecks(
          bed.testbed,
          host("h2"),
          env({
            nodeVersion: "v18.19.0",
            loadedFrom: "modules",
            loads: () => ({ ok: false, why: "serialport did not load (x); it is needed for …" }),
          }),
          SERIALPORT_MODULE,
        ),
      );
      expect(checks.node).toMatchObject({ verdict: "fail", detail: /needs Node 20/ });
      expect(checks.code).toMatchObject({ verdict: "warn", detail: /npm run build/ });
      expect(checks.serial).toMatchObject({ verdict: "fail", detail: /serialport did not load/ });
      expect(checks.console).toMatchObject({ verdict: "fail", detail: /not a character device/ });
      expect(checks.address).toMatchObject({
        verdict: "fail",
        detail: new RegExp(`:${port} is in use`),
      });
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
    const missing = byName(await hostChecks(bed.testbed, host("h3"), env(), SERIALPORT_MODULE));
    expect(missing.console).toMatchObject({ verdict: "fail", detail: /h3-host: not found/ });
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

    // Keys the replica reads at start: a board's public key gone.
    rmSync(path.join(bed.dir, "keys", "b4", "board.pub"), { force: true });
    const keys = byName(await hostChecks(bed.testbed, host("h3"), env(), SERIALPORT_MODULE));
    expect(keys.keys).toMatchObject({
      verdict: "fail",
      detail: /board\.pub: cannot read board b4's public key/,
    });
  });

  it("runs from the host bundle with its code cache, exits 1 on a failed check and 2 on a host not in the testbed", () => {
    // As a person runs it: bin/smw.js, which loads `smw host` from the bundle.
    const run = (...argv: string[]) => {
      const child = spawnSync(
        process.execPath,
        [SMW, "host", "doctor", "--testbed", bed.file, ...argv],
        {
          encoding: "utf8",
        },
      );
      return { code: child.status, stdout: child.stdout, stderr: child.stderr };
    };
    const text = run("--host", "h4");
    expect(text.code).toBe(1);
    expect(text.stdout).toMatch(/^OK {4}code {5}the host bundle, with V8's code cache/m);
    expect(text.stdout).toMatch(/^FAIL {2}console .*h4-host: not found/m);
    expect(text.stdout).toMatch(/host h4: \d checks? failed/);
    const json = run("--host", "h4", "--json");
    expect(
      json.stdout
        .trim()
        .split("\n")
        .map((l) => (JSON.parse(l) as { name: string }).name),
    ).toEqual(["node", "code", "serial", "console", "state", "keys", "address"]);
    const unknown = run("--host", "h9");
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/no host "h9"; hosts are h1, h2, h3, h4/);
  });
});
