/** The payload network in namespaces: each host reaches its peers only through its own interface. */

import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Rig } from "@smw/test-rig";
import { describe, expect, it } from "vitest";
import { eventually, processesMentioning } from "./rig-helpers.js";

const root = process.getuid?.() === 0;

function netnsList(): string[] {
  return spawnSync("ip", ["netns", "list"], { encoding: "utf8" })
    .stdout.split("\n")
    .map((l) => l.split(" ")[0] ?? "")
    .filter((n) => n !== "");
}

describe.skipIf(!root)("the rig with --netns (as root)", () => {
  it("puts every host in a namespace of its own, serves clients across the bridge, removes everything after", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "smw-netns-"));
    const file = path.join(dir, "rig-6-netns.yaml");
    copyFileSync(path.resolve("wiring/examples/rig-6-netns.yaml"), file);
    const rig = await Rig.up({ testbedFile: file, runsDir: dir, netns: true });
    let ours: string[] = [];
    try {
      await rig.waitHealthy(60_000);
      const namespaces = new Set(
        [...rig.hosts.values()].map((h) => readlinkSync(`/proc/${h.pid}/ns/net`)),
      );
      expect(namespaces.size).toBe(6);
      expect(namespaces.has(readlinkSync("/proc/self/ns/net"))).toBe(false);
      ours = netnsList().filter((n) => /^smw-[0-9a-f]{6}-h\d$/.test(n));
      expect(ours.length).toBeGreaterThanOrEqual(6);
    } finally {
      await rig.down();
    }
    const left = netnsList();
    expect(ours.filter((n) => left.includes(n))).toEqual([]);
    expect(await eventually(() => processesMentioning(dir).length === 0, 5_000)).toBe(true);
    rmSync(dir, { recursive: true, force: true });
  }, 120_000);
});
