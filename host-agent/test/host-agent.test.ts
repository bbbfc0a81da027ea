import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createPrivateKey, sign } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  certificateSigningBytes,
  encodeHostLine,
  type HostToBoard,
  LineSplitter,
  leaseSigningBytes,
  MAX_HOST_LINE_BYTES,
  parseHostToBoard,
} from "@smw/wiring";
import { SerialPort } from "serialport";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ReplicaServer } from "../src/service/replica-server.js";
import { connectClient, startReplica } from "../src/service/service-runtime.js";
import { makeServiceTestbed, type ServiceTestbed } from "../src/service/service-testbed.js";

const SMW = fileURLToPath(new URL("../../bin/smw.js", import.meta.url));

/** The board's end of the host link, as the test plays the board. */
class FakeBoard {
  readonly received: HostToBoard[] = [];
  private waiters: Array<() => void> = [];
  constructor(readonly port: SerialPort) {
    const splitter = new LineSplitter(MAX_HOST_LINE_BYTES, (line) => {
      const m = parseHostToBoard(line);
      if (m) this.received.push(m);
      for (const w of this.waiters.splice(0)) w();
    });
    port.on("data", (chunk: Buffer) => splitter.push(chunk));
  }
  write(text: string): void {
    this.port.write(text);
  }
  async waitFor<T extends HostToBoard["type"]>(
    type: T,
    timeoutMs = 15_000,
  ): Promise<Extract<HostToBoard, { type: T }>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.received.find((m) => m.type === type);
      if (found) {
        this.received.splice(this.received.indexOf(found), 1);
        return found as Extract<HostToBoard, { type: T }>;
      }
      if (Date.now() > deadline) throw new Error(`no ${type} from the host within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 200);
      });
    }
  }
}

function childrenOf(pid: number): number[] {
  try {
    return execFileSync("pgrep", ["-P", String(pid)], { encoding: "utf8" })
      .trim()
      .split("\n")
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

describe("the host agent", () => {
  let bed: ServiceTestbed;
  let socat: ChildProcess;
  let agent: ChildProcess;
  let board: FakeBoard;
  const servers: ReplicaServer[] = [];

  beforeAll(async () => {
    bed = makeServiceTestbed({ n: 6, kPrime: 1, k: 1, basePort: 27600, checkpointInterval: 8 });
    mkdirSync(path.join(bed.dir, "pty"), { recursive: true });
    const hostEnd = path.join(bed.dir, "pty", "h1-host");
    const boardEnd = path.join(bed.dir, "pty", "h1-board");
    socat = spawn("socat", [`pty,raw,echo=0,link=${hostEnd}`, `pty,raw,echo=0,link=${boardEnd}`], {
      stdio: "ignore",
    });
    for (let i = 0; i < 50 && !(existsSync(hostEnd) && existsSync(boardEnd)); i++)
      await new Promise((r) => setTimeout(r, 50));
    const port = new SerialPort({ path: boardEnd, baudRate: 115200 });
    await new Promise<void>((resolve, reject) => port.on("open", resolve).on("error", reject));
    board = new FakeBoard(port);
    for (const h of bed.testbed.hosts.slice(1)) servers.push(await startReplica(bed.testbed, h.id));
  });

  afterAll(async () => {
    agent?.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 300));
    await Promise.all(servers.map((s) => s.close()));
    await new Promise<void>((resolve) => board?.port.close(() => resolve()));
    socat?.kill();
    bed?.remove();
  });

  it("gets its key certified, recovers the state, acknowledges a shutdown and restarts a crashed replica", async () => {
    // Some history first, so there is a checkpoint to recover.
    const client = connectClient(bed.testbed, { clientId: "client1" });
    for (let i = 0; i < 20; i++) await client.call({ op: "put", key: `k${i}`, value: `${i}` });
    await client.close();
    const stable = servers[0]?.core.stableCheckpoint;
    expect(stable?.seq).toBeGreaterThanOrEqual(8);

    agent = spawn(process.execPath, [SMW, "host", "run", "--testbed", bed.file, "--host", "h1"], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let agentLog = "";
    agent.stderr?.on("data", (d: Buffer) => {
      agentLog += d.toString();
    });
    const booted = await board.waitFor("BOOTED");
    // The replica process is spawned at boot, not when the certificate comes, and "booted" goes
    // once it has loaded its code: the board's T_transfer is the recovery, not a Node start.
    // It starts only once the key is certified.
    for (let i = 0; i < 20 && !/h1 agent: booted/.test(agentLog); i++)
      await new Promise((r) => setTimeout(r, 100));
    expect(agentLog).toMatch(
      /replica process ready[^\n]*\n(.*\n)*.*h1 agent: booted \(replica loaded\)/,
    );
    // Agent and replica from the build's bundle, its compiled code taken from V8's cache
    // (bin/host-bundle.js).
    expect(agentLog).toMatch(
      /h1 agent: started \(loaded in \d+ ms, from the host bundle, code cache used; testbed read in \d+ ms\)/,
    );
    expect(agentLog).toMatch(
      /replica process ready \(loaded in \d+ ms, from the host bundle, code cache used\)/,
    );
    const spare = childrenOf(agent.pid as number);
    expect(spare).toHaveLength(1);
    expect(agentLog).not.toMatch(/replica starting/);
    // Rubbish on the line first: the agent must shrug it off.
    board.write("garbage\nsmwh1 CERT !!!\n");
    const key = createPrivateKey(readFileSync(path.join(bed.dir, "keys", "b1", "board.key")));
    const certify = (publicKey: string, period: number) => {
      const body = {
        host: "h1",
        board: "b1",
        period,
        publicKey,
        issuedAt: new Date().toISOString(),
      };
      const signature = sign(null, certificateSigningBytes(body), key).toString("base64");
      board.write(encodeHostLine({ type: "CERT", certificate: { ...body, signature } }));
    };
    certify(booted.publicKey, 1);
    const recovered = await board.waitFor("RECOVERED", 20_000);
    expect(childrenOf(agent.pid as number)).toEqual(spare);
    expect(agentLog).toMatch(/h1: replica starting, recovering\n/);
    expect(recovered.checkpointSeq).toBeGreaterThanOrEqual(stable?.seq ?? 0);
    // Where the recovery's time went, counted from the start the agent asked for (the
    // certificate just come), as the board counts T_transfer.
    for (let i = 0; i < 20 && !/recovery steps/.test(agentLog); i++)
      await new Promise((r) => setTimeout(r, 100));
    expect(agentLog).toMatch(
      /h1: recovery steps since the start was asked: replica built \+\d+ ms, listening \+\d+ ms, .*recovered at checkpoint \d+ \+\d+ ms\n/,
    );
    await board.waitFor("HB", 5_000);

    // The board's lease on the key it certified reaches the replica (clients hear of it there);
    // one on another key does not.
    const lease = (epoch: number) => {
      const body = { host: "h1", board: "b1", epoch, notAfterMs: Date.now() + 2_000 };
      const signature = sign(null, leaseSigningBytes(body), key).toString("base64");
      board.write(encodeHostLine({ type: "LEASE", lease: { ...body, signature } }));
    };
    lease(7);
    lease(1);
    for (let i = 0; i < 30 && !/h1: key epoch 1 leased by board b1/.test(agentLog); i++)
      await new Promise((r) => setTimeout(r, 100));
    expect(agentLog).toMatch(/h1: key epoch 1 leased by board b1/);
    expect(agentLog).not.toMatch(/key epoch 7 leased/);

    // h2's group begins its rejuvenation: the board revokes its keys. From then on the replica
    // refuses what h2 signs with the key it held, though no newer key has come.
    const before = Math.floor(Date.now() / 1000) + 3600;
    board.write(encodeHostLine({ type: "REVOKE", hosts: ["h2"], before }));
    for (let i = 0; i < 50 && !/rejected revoked-key said to be from h2/.test(agentLog); i++)
      await new Promise((r) => setTimeout(r, 100));
    expect(agentLog).toMatch(/board revoked the keys of h2/);
    expect(agentLog).toMatch(/rejected revoked-key said to be from h2/);
    // h2 goes down for its rejuvenation, as its board's schedule said.
    await servers.shift()?.close();

    board.write(encodeHostLine({ type: "PREPARE_SHUTDOWN", period: 2 }));
    expect((await board.waitFor("SHUTDOWN_ACK")).period).toBe(2);

    board.received.length = 0;
    const [replicaPid] = childrenOf(agent.pid as number);
    expect(replicaPid).toBeDefined();
    process.kill(replicaPid as number, "SIGKILL");
    // A replica that crashed forgot its votes: it comes back under a new key, certified again.
    const rebooted = await board.waitFor("BOOTED", 10_000);
    expect(rebooted.publicKey).not.toBe(booted.publicKey);
    certify(rebooted.publicKey, 2);
    for (let i = 0; i < 60; i++) {
      const now = childrenOf(agent.pid as number);
      if (now.length > 0 && now[0] !== replicaPid) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const restarted = childrenOf(agent.pid as number);
    expect(restarted.length, agentLog).toBe(1);
    expect(restarted[0]).not.toBe(replicaPid);
    expect(agentLog).toMatch(/replica exited \(SIGKILL\); restarting in \d+ ms, under a new key/);
    expect(await board.waitFor("RECOVERED", 20_000)).toBeDefined();
    // The restarted replica started with the revocation the board made before.
    expect(agentLog).toContain(
      `h1: replica starting, recovering; keys revoked: h2 before ${before}`,
    );
  }, 60_000);
});

describe("the host agent under systemd", () => {
  it("says READY, feeds its watchdog while it runs, not while it is stopped, and says STOPPING on SIGTERM", async () => {
    const bed = makeServiceTestbed({ n: 6, kPrime: 1, k: 1, basePort: 27650 });
    const socket = path.join(bed.dir, "notify.sock");
    // systemd's end: a Unix datagram socket, each datagram printed on a line of its own.
    const receiver = spawn("socat", ["-u", `UNIX-RECV:${socket}`, "STDOUT"], {
      stdio: ["ignore", "pipe", "ignore"],
    });
    const heard: Array<{ atMs: number; line: string }> = [];
    receiver.stdout?.on("data", (chunk: Buffer) => {
      for (const line of chunk.toString().split("\n"))
        if (line !== "") heard.push({ atMs: Date.now(), line });
    });
    const until = async (what: string, done: () => boolean, timeoutMs: number) => {
      const deadline = Date.now() + timeoutMs;
      while (!done()) {
        if (Date.now() > deadline)
          throw new Error(`${what} within ${timeoutMs} ms: heard ${JSON.stringify(heard)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    const feeds = () => heard.filter((h) => h.line === "WATCHDOG=1").length;
    let agent: ChildProcess | undefined;
    try {
      await until("systemd's socket", () => existsSync(socket), 5_000);
      // Self-certified: no board, no console link; systemd's part is what is under test.
      agent = spawn(
        process.execPath,
        [SMW, "host", "run", "--testbed", bed.file, "--host", "h1", "--self-certify"],
        {
          stdio: ["ignore", "ignore", "ignore"],
          env: { ...process.env, NOTIFY_SOCKET: socket, WATCHDOG_USEC: "600000" },
        },
      );
      const exited = new Promise<number | null>((resolve) => agent?.once("exit", resolve));
      await until("READY=1", () => heard.some((h) => h.line === "READY=1"), 15_000);
      // Fed at half of WatchdogSec (300 ms).
      await until("three feeds", () => feeds() >= 3, 5_000);
      // A hung agent (stopped, as a hang looks from outside) feeds nothing: systemd kills it.
      process.kill(agent.pid as number, "SIGSTOP");
      await new Promise((r) => setTimeout(r, 200));
      const beforeHang = feeds();
      await new Promise((r) => setTimeout(r, 1_200));
      expect(feeds()).toBe(beforeHang);
      process.kill(agent.pid as number, "SIGCONT");
      await until("feeds again", () => feeds() >= beforeHang + 2, 5_000);
      agent.kill("SIGTERM");
      expect(await exited).toBe(0);
      await until("STOPPING=1", () => heard.some((h) => h.line === "STOPPING=1"), 5_000);
      const replicas = childrenOf(agent.pid as number);
      expect(replicas).toEqual([]);
    } finally {
      if (agent?.exitCode === null) agent.kill("SIGKILL");
      receiver.kill();
      bed.remove();
      rmSync(socket, { force: true });
    }
  }, 45_000);
});

describe("the replica process", () => {
  it("takes the testbed the agent read, not the file (parsed once on the boot path), and says ready", async () => {
    const bed = makeServiceTestbed({ n: 4, kPrime: 1, k: 1, basePort: 27670 });
    try {
      const child = spawn(
        process.execPath,
        [
          SMW,
          "host",
          "replica",
          "--testbed",
          path.join(bed.dir, "no-such-file.yaml"),
          "--host",
          "h1",
        ],
        { stdio: ["ignore", "ignore", "pipe", "ipc"] },
      );
      const ready = new Promise<unknown>((resolve) => child.on("message", resolve));
      // Sent before it has loaded: it waits for it.
      child.send({ type: "testbed", testbed: bed.testbed });
      expect(await ready).toEqual({ type: "ready" });
      const exited = new Promise((resolve) => child.on("exit", resolve));
      child.disconnect();
      expect(await exited).toBe(0);
    } finally {
      bed.remove();
    }
  });
});
