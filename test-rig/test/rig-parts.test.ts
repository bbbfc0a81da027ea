import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import {
  corruptBytes,
  decodeSmImage,
  encodeSmImage,
  namespaceProblems,
  ProcessRegistry,
  plantByzantineCode,
  ptyPairsOf,
  rigProblems,
  rigRunDir,
} from "@smw/test-rig";
import { loadTestbedFile, type Testbed } from "@smw/wiring";
import { afterEach, describe, expect, it } from "vitest";

const RIG_6 = path.resolve("wiring/examples/rig-6.yaml");

function loadRig6(): Testbed {
  const loaded = loadTestbedFile(RIG_6);
  if (!loaded.ok) throw new Error("rig-6.yaml does not load");
  return loaded.testbed;
}

describe("SM code images", () => {
  it("say which program a host boots, and a tampered one boots the Byzantine replica", () => {
    const honest = encodeSmImage({ kind: "host-agent" }, 8192);
    expect(honest.length).toBe(8192);
    expect(decodeSmImage(honest)).toEqual({ program: { kind: "host-agent" } });
    const dir = mkdtempSync(path.join(tmpdir(), "smw-sm-"));
    try {
      const file = path.join(dir, "sm.img");
      writeFileSync(file, honest);
      plantByzantineCode(file, ["equivocate", "wrong-replies"]);
      const planted = readFileSync(file);
      expect(planted.length).toBe(8192);
      expect(decodeSmImage(planted)).toEqual({
        program: { kind: "byzantine", behaviours: ["equivocate", "wrong-replies"] },
      });
      // A mangled header does not boot at all.
      corruptBytes(file, 2, 4);
      expect(decodeSmImage(readFileSync(file))).toEqual({ error: "unknown image format" });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses what is not an image", () => {
    expect(decodeSmImage(Buffer.alloc(100))).toEqual({ error: "no boot header" });
    expect(decodeSmImage(Buffer.from("smw-sm-image 1\nprogram: rm -rf /\n\n"))).toEqual({
      error: 'unknown program "rm -rf /"',
    });
    expect(decodeSmImage(Buffer.from("smw-sm-image 1\nno colon here\n\n"))).toEqual({
      error: 'malformed header line "no colon here"',
    });
  });
});

describe("the rig's layout", () => {
  it("runs in a folder of its own under the runs folder, and pairs every serial link", () => {
    const testbed = loadRig6();
    expect(rigRunDir(testbed.name, "/tmp/somewhere")).toBe("/tmp/somewhere/rig-6");
    expect(rigRunDir(testbed.name)).toBe(path.resolve(process.env.SMW_RUNS ?? "runs", "rig-6"));
    const pairs = ptyPairsOf(testbed);
    // 6 host links and 15 control links of a 6-board mesh.
    expect(pairs).toHaveLength(21);
    expect(pairs.filter((p) => p.what.startsWith("control link"))).toHaveLength(15);
    const hostLink = pairs.find((p) => p.what === "host link b1-h1");
    expect(hostLink?.a).toMatch(/h1-board$/);
    expect(hostLink?.b).toMatch(/h1-console$/);
  });

  it("names what stops it: a port in use, a testbed that is not simulated", async () => {
    const testbed = loadRig6();
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(7103, "127.0.0.1", () => resolve()));
    try {
      const problems = await rigProblems({ ...testbed, simulated: false });
      expect(problems.join("\n")).toMatch(/not marked "simulated: true"/);
      expect(problems.join("\n")).toMatch(
        /host h3's address 127\.0\.0\.1:7103 is in use .*change the port in .*rig-6\.yaml/,
      );
      expect(problems.join("\n")).not.toMatch(/h1's address/);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe("network namespaces", () => {
  it("say what they need: root, and hosts with addresses of their own", () => {
    const problems = namespaceProblems(loadRig6(), 1000).join("\n");
    expect(problems).toMatch(/--netns: network namespaces need root/);
    expect(problems).toMatch(/host h1's address 127\.0\.0\.1 is on loopback; .*rig-6-netns\.yaml/);
    const netns = loadTestbedFile(path.resolve("wiring/examples/rig-6-netns.yaml"));
    if (!netns.ok) throw new Error("rig-6-netns.yaml does not load");
    expect(namespaceProblems(netns.testbed, 1000)).toEqual([
      "--netns: network namespaces need root (run as root, or leave --netns out: the hosts then share loopback)",
    ]);
  });
});

describe("the process registry", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it("reaps what a killed rig left running, and only processes of that rig", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "smw-reg-"));
    dirs.push(dir);
    const pidFile = path.join(dir, "rig.pids");
    const registry = new ProcessRegistry(pidFile);
    const ours = spawn(process.execPath, ["-e", "setTimeout(() => {}, 30000)", dir], {
      detached: true,
      stdio: "ignore",
    });
    const stranger = spawn("sleep", ["30"], { stdio: "ignore" });
    registry.add(ours, "ours", true);
    // The stranger's pid in the file, as if reused by another program.
    writeFileSync(
      pidFile,
      `${readFileSync(pidFile, "utf8")}${JSON.stringify({ pid: stranger.pid, group: false, tag: "x" })}\nnot json\n`,
    );
    const oursExit = new Promise((resolve) => ours.once("exit", resolve));
    // Until exec, a child's command line is still node's.
    const started = Date.now();
    while (
      !readFileSync(`/proc/${ours.pid}/cmdline`, "utf8").includes(dir) &&
      Date.now() - started < 5_000
    )
      await new Promise((resolve) => setTimeout(resolve, 10));
    expect(ProcessRegistry.reap(pidFile, [dir])).toBe(1);
    await oursExit;
    expect(stranger.exitCode).toBeNull();
    stranger.kill();
    await registry.close();
  });
});
