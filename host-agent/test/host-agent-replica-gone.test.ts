/**
 * A replica process that has just died still looks connected until the end of its channel is
 * read, and what the agent sends it then fails (EPIPE). The agent goes on: the exit restarts the
 * replica. A lease renewed in that moment once took the agent down with an unheard "error".
 */

import type { ChildProcess } from "node:child_process";
import { EventEmitter } from "node:events";
import { afterAll, describe, expect, it } from "vitest";
import { HostAgent } from "../src/agent/host-agent.js";
import { certifyWithBoardKey, leaseWithBoardKey } from "../src/service/service-keys.js";
import { makeServiceTestbed } from "../src/service/service-testbed.js";

/** A replica process that says ready, and whose channel breaks once it has been told to start. */
class DyingReplica extends EventEmitter {
  connected = true;
  exitCode: number | null = null;
  readonly sent: string[] = [];
  private broken = false;

  send(message: { type: string }, callback?: (error: Error | null) => void): boolean {
    this.sent.push(message.type);
    if (message.type === "testbed") setImmediate(() => this.emit("message", { type: "ready" }));
    const broken = this.broken;
    if (message.type === "start") this.broken = true;
    // As node's ChildProcess does: a failed write goes to the callback if one was given, else
    // it is emitted as "error".
    setImmediate(() => {
      if (!broken) return callback?.(null);
      const error = Object.assign(new Error("write EPIPE"), { code: "EPIPE" });
      if (callback !== undefined) callback(error);
      else this.emit("error", error);
    });
    return true;
  }

  kill(): boolean {
    return true;
  }
}

describe("the host agent, its replica gone but not yet seen to exit", () => {
  const bed = makeServiceTestbed({ n: 6, kPrime: 1, k: 1, basePort: 28380 });
  afterAll(() => bed.remove());

  /** An agent of `hostId` certifying its keys itself (no board), and what it logged. */
  const selfCertifiedAgent = (
    hostId: string,
    spawnReplica: () => ChildProcess,
    leaseEveryMs?: number,
  ) => {
    const log: string[] = [];
    let epoch = Math.floor(Date.now() / 1000);
    const agent = new HostAgent({
      testbed: bed.testbed,
      hostId,
      log: (line) => log.push(line),
      selfCertify: (publicKey) =>
        certifyWithBoardKey(bed.testbed, hostId, { publicKey, sign: () => "" }, epoch++),
      ...(leaseEveryMs === undefined
        ? {}
        : { selfLease: { lease: leaseWithBoardKey(bed.testbed, hostId), everyMs: leaseEveryMs } }),
      spawnReplica,
    });
    return { agent, log };
  };

  it("keeps passing leases on, and keeps running, while the sends fail", async () => {
    const replica = new DyingReplica();
    const { agent } = selfCertifiedAgent("h1", () => replica as unknown as ChildProcess, 10);
    await agent.start();
    try {
      await new Promise((resolve) => setTimeout(resolve, 300));
      // Told to start, then every lease renewed since, each send failing.
      expect(replica.sent.slice(0, 3)).toEqual(["testbed", "start", "lease"]);
      expect(replica.sent.filter((type) => type === "lease").length).toBeGreaterThan(5);
      expect(agent.healthy).toBe(true);
    } finally {
      await agent.stop();
    }
  });

  it("restarts a replica process that could not be spawned (an error, and no exit)", async () => {
    const spawned: string[] = [];
    const { agent, log } = selfCertifiedAgent("h2", () => {
      if (spawned.push("spawn") > 1) return new DyingReplica() as unknown as ChildProcess;
      // As node's fork does when the program cannot be run: no pid, an "error", no "exit".
      const failed = Object.assign(new EventEmitter(), { connected: false, pid: undefined });
      setImmediate(() =>
        failed.emit("error", Object.assign(new Error("spawn ENOENT"), { code: "ENOENT" })),
      );
      return failed as unknown as ChildProcess;
    });
    await agent.start();
    try {
      const deadline = Date.now() + 5_000;
      while (spawned.length < 2 && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 20));
      expect(spawned.length, log.join("\n")).toBe(2);
      expect(log).toContain("replica process: spawn ENOENT");
      expect(log.some((l) => /^replica did not start; restarting in \d+ ms/.test(l))).toBe(true);
    } finally {
      await agent.stop();
    }
  });
});
