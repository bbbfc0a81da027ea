/**
 * The board's event loop priority: nice -10, and with --realtime SCHED_FIFO for that thread only
 * (reset on fork: what it starts runs at the normal policy). Run in a child process, so the test
 * runner keeps its own priority; needs root and chrt, otherwise says why it cannot run.
 */
import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const dist = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../dist/index.js");
const privileged = process.getuid?.() === 0 && spawnSync("chrt", ["--version"]).status === 0;

function probe(realtime: boolean): { priority: unknown; self: string; child: string } {
  const script = `
    const { spawnSync } = require("node:child_process");
    import(${JSON.stringify(dist)}).then(({ raiseEventLoopPriority }) => {
      const priority = raiseEventLoopPriority({ realtime: ${realtime} });
      const self = spawnSync("chrt", ["-p", String(process.pid)], { encoding: "utf8" }).stdout;
      const child = spawnSync("sh", ["-c", "chrt -p $$"], { encoding: "utf8" }).stdout;
      process.stdout.write(JSON.stringify({ priority, self, child }));
    });`;
  const run = spawnSync(process.execPath, ["-e", script], { encoding: "utf8", timeout: 20_000 });
  return JSON.parse(run.stdout);
}

describe.skipIf(!privileged)("the board's event loop priority (root, chrt)", () => {
  it("is nice -10 at normal policy by default", () => {
    const { priority, self } = probe(false);
    expect(priority).toEqual({ nice: -10 });
    expect(self).toMatch(/SCHED_OTHER/);
  });

  it("with realtime, runs the event loop under SCHED_FIFO 10, and what it starts does not", () => {
    const { priority, self, child } = probe(true);
    expect(priority).toEqual({ nice: -10, realtime: { fifoPriority: 10 } });
    expect(self).toMatch(/SCHED_FIFO\|SCHED_RESET_ON_FORK/);
    expect(self).toMatch(/priority: 10/);
    expect(child).toMatch(/SCHED_OTHER/);
  });
});
