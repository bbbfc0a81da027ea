import { mkdirSync, writeFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import path from "node:path";
import {
  type BoardToHost,
  type ControlMessage,
  encodeControlFrame,
  type HostToBoard,
} from "@smw/wiring";
import {
  BoardDaemon,
  BoardLines,
  BoardStateFiles,
  ControlLink,
  controlSocketPath,
  type HostLinkPort,
  makeTestbed6,
  readLinkKeys,
  readPrivateKey,
  readPublicKey,
  SimulatedLines,
  type Testbed6,
} from "@smw/wormhole-board";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { stateText } from "../src/cli/board-command.js";
import { operatorSend, signedClear } from "./operator-send.js";

/** A host link that nothing is plugged into: the host never boots, the board waits. */
const silentHost = {
  open: async () => {},
  close: async () => {},
  on: () => () => {},
  flush() {},
  send() {},
  waitFor: async () => undefined,
} as unknown as HostLinkPort;

interface OneBoard {
  bed: Testbed6;
  daemon: BoardDaemon;
  link: ControlLink;
  stateDir: string;
  /** Line changes seen since the board started: "reset=active", "alarm=active"... */
  changes: string[];
  logged: string[];
  /** The control frames the board sent: when, and their type. */
  sent: Array<{ atMs: number; type: string }>;
  /** Hands a frame from `peer` to the board, as if it came over the control link. */
  deliver(peer: string, type: ControlMessage["type"], body: Record<string, unknown>): void;
}

let bed: Testbed6 | undefined;
let running: BoardDaemon | undefined;
afterEach(async () => {
  await running?.stop();
  await bed?.close();
  running = undefined;
  bed = undefined;
});

/** A host link the test speaks for: what the board sends is kept, `say` is the host writing. */
function scriptedHost() {
  const sent: BoardToHost[] = [];
  const listeners: Array<(m: HostToBoard) => void> = [];
  const port = {
    ...silentHost,
    on: (listener: (m: HostToBoard) => void) => {
      listeners.push(listener);
      return () => {};
    },
    send: (m: BoardToHost) => sent.push(m),
  } as unknown as HostLinkPort;
  const say = (m: HostToBoard) => {
    for (const listener of listeners) listener(m);
  };
  return { port, sent, say };
}

/**
 * `damage`: done to the board's state folder before the board reads it. Its ports were free when
 * chosen (`freePortBand`), but a test running beside it may take one meanwhile: a port found in
 * use has the board tried again on another band, a few times.
 */
async function startBoard(
  basePort: number | "free",
  damage: (stateDir: string) => void = () => {},
  hostLink: HostLinkPort = silentHost,
  replaced: Readonly<Record<string, string>> = {},
): Promise<OneBoard> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await startBoardAt(attempt === 0 ? basePort : "free", damage, hostLink, replaced);
    } catch (error) {
      if (attempt >= 4 || !/the port is in use/.test((error as Error).message)) throw error;
      await running?.stop();
      await bed?.close();
      running = undefined;
      bed = undefined;
    }
  }
}

async function startBoardAt(
  basePort: number | "free",
  damage: (stateDir: string) => void,
  hostLink: HostLinkPort,
  replaced: Readonly<Record<string, string>>,
): Promise<OneBoard> {
  bed = await makeTestbed6("udp", basePort, "", replaced);
  const t = bed.testbed;
  const board = t.boards[0];
  if (board === undefined) throw new Error("no board");
  const sim = new SimulatedLines();
  const changes: string[] = [];
  sim.onChange((event) => changes.push(`${event.role}=${event.level}`));
  const lines = BoardLines.claim(board, sim, { levels: "safe" });
  damage(board.stateDir);
  const state = new BoardStateFiles(board.stateDir);
  const keys = readLinkKeys(t, board.id);
  let handOver: ((line: string, from: undefined) => void) | undefined;
  const sent: OneBoard["sent"] = [];
  const link = new ControlLink(board.id, keys, state.nextEpoch(), {
    name: "in-process",
    oversized: 0,
    send: (_peer: string, line: string) =>
      sent.push({ atMs: Date.now(), type: line.split(" ")[5] ?? "" }),
    open: async (on: (line: string, from: undefined) => void) => {
      handOver = on;
    },
    close: async () => {},
  });
  const logged: string[] = [];
  const daemon = new BoardDaemon({
    testbed: t,
    boardId: board.id,
    link,
    hostLink,
    operatorKey: readPublicKey(t.operatorKeyPath),
    signingKey: readPrivateKey(board.keys.signingPath),
    state,
    alerts: { webhook: async () => {}, exec: () => {} },
    log: pino({ level: "warn" }, { write: (line: string) => logged.push(JSON.parse(line).msg) }),
  });
  running = daemon;
  await daemon.start(lines);
  let seq = 0;
  return {
    bed,
    daemon,
    link,
    stateDir: board.stateDir,
    changes,
    logged,
    sent,
    deliver(peer, type, body) {
      const frame = encodeControlFrame(
        { from: peer, to: board.id, epoch: 1, seq: ++seq, type, body },
        keys.get(peer) as Buffer,
      );
      handOver?.(frame.slice(0, -1), undefined);
    },
  };
}

const settle = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("a board whose state folder cannot be written", () => {
  it("holds its host and raises its alarm on a peer's fail-safe, and says the latch failed", async () => {
    const b = await startBoard("free");
    // A schedule whose first period is still to come: no step of its own runs meanwhile (a host that
    // never boots would take it to fail-safe by itself, racing the peer's FAILSAFE).
    const schedule = Date.now() + 30_000;
    for (let round = 0; round < 5; round++) {
      for (const peer of ["b2", "b3", "b4", "b5", "b6"])
        b.deliver(peer, "HB", { period: 0, schedule, joined: true, sentAtMs: Date.now() });
      await settle(60);
    }
    expect(b.daemon.currentPhase).not.toBe("failsafe");
    // A folder where the latch's temporary file goes: its write throws.
    mkdirSync(path.join(b.stateDir, "failsafe.json.tmp"));
    const before = b.changes.length;
    b.deliver("b2", "FAILSAFE", {
      reason: "b2's step over its budget",
      origin: "b2",
      sentAtMs: Date.now(),
    });
    await settle(100);
    expect(b.daemon.currentPhase).toBe("failsafe");
    const after = b.changes.slice(before);
    expect(after).toContain("reset=active");
    expect(after).toContain("alarm=active");
    expect(b.logged).toContain("FAIL-SAFE");
    expect(b.logged.some((m) => m.startsWith("could not latch the fail-safe state on disk"))).toBe(
      true,
    );
    // The frame was handled whole: not counted as malformed.
    expect(b.link.counters.malformed).toBe(0);
  });
});

describe("a board whose epoch file is damaged", () => {
  it("starts on an epoch from the wall clock and says so in its log", async () => {
    const b = await startBoard("free", (dir) => {
      mkdirSync(dir, { recursive: true });
      writeFileSync(path.join(dir, "epoch"), "4\u00002\n");
    });
    expect(b.link.epoch).toBeGreaterThanOrEqual(Math.floor(Date.now() / 1000) - 60);
    expect(b.logged.some((m) => m.startsWith("the boot epoch file was damaged"))).toBe(true);
  });
});

describe("a board's operator port", () => {
  it("keeps at most 4 connections per address and 16 in all, each for 5 s however slowly it sends", async () => {
    const b = await startBoard("free");
    const endpoint = b.bed.testbed.boards[0]?.operatorEndpoint;
    if (endpoint === undefined) throw new Error("no operator endpoint");
    const sockets: Array<{ socket: Socket; from: string }> = [];
    const closed = new Set<Socket>();
    // Ten connections from each of six loopback addresses.
    for (let a = 1; a <= 6; a++)
      for (let i = 0; i < 10; i++) {
        const from = `127.0.0.${a}`;
        const socket = connect({ port: endpoint.port, host: endpoint.host, localAddress: from });
        socket.on("error", () => {});
        socket.on("close", () => closed.add(socket));
        sockets.push({ socket, from });
      }
    const open = () => sockets.filter(({ socket }) => !closed.has(socket));
    const trickle = setInterval(() => {
      for (const { socket } of open()) socket.write("{");
    }, 1_000);
    try {
      await settle(500);
      expect(open().length).toBeLessThanOrEqual(16);
      expect(open().length).toBeGreaterThan(0);
      for (let a = 1; a <= 6; a++)
        expect(open().filter(({ from }) => from === `127.0.0.${a}`).length).toBeLessThanOrEqual(4);
      // A byte a second, never a whole line: cut at the request's deadline all the same.
      await settle(5_500);
      expect(open()).toEqual([]);
    } finally {
      clearInterval(trickle);
      for (const { socket } of sockets) socket.destroy();
    }
  }, 15_000);

  it("names its damaged record of the last request acted on, which refuses every clear", async () => {
    const b = await startBoard("free");
    writeFileSync(path.join(b.stateDir, "operator-request"), "\u0000garbage\n");
    const issuedAtMs = Date.now();
    const request = signedClear("b1", issuedAtMs, path.join(b.bed.dir, "keys", "operator.key"));
    expect(await operatorSend(controlSocketPath(b.stateDir), request)).toEqual({
      ok: false,
      message: `${path.join(b.stateDir, "operator-request")}, which records the last request acted on, is unreadable: every clear is refused until it is repaired (it holds one number, the issuedAtMs of that request) or removed`,
    });
  });
});

describe("a board that holds its host at start-up", () => {
  it("certifies no key, and so leases none, for a BOOTED heard while it holds the host", async () => {
    const host = scriptedHost();
    const b = await startBoard("free", () => {}, host.port);
    // No peer is heard from: the host stays held in reset (joining, its peers not all there).
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(b.changes).toContain("reset=active");
    expect(b.changes).not.toContain("reset=inactive");
    // A BOOTED line from before the hold, still in the serial buffer, is no boot.
    host.say({ type: "BOOTED", publicKey: "A".repeat(43) });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(host.sent.map((m) => m.type)).not.toContain("CERT");
    expect(host.sent.map((m) => m.type)).not.toContain("LEASE");
  });
});

/**
 * A board whose host runs under a lease of 1 s (T_shutdown 2.5 s allows it), so that what comes
 * next comes well before the last one lapses; its fail-safe leaves its host running (the policy
 * `[alarm-line]`). Peers run a schedule whose first period is still to come: the board joins it,
 * releases its host, and certifies and leases its key; no step runs meanwhile.
 */
async function leasedHost(basePort: number | "free") {
  const host = scriptedHost();
  const b = await startBoard(basePort, () => {}, host.port, {
    "  actions: [hold-reset, alarm-line]": "  actions: [alarm-line]",
    "  tP: 11500ms": "  tP: 41s",
    "  tD: 11s": "  tD: 40s",
    "  budgets: { tShutdown: 300ms, tCheckcode: 150ms, tRestorecode: 200ms, tBoot: 250ms, tTransfer: 250ms }":
      "  budgets: { tShutdown: 2500ms, tCheckcode: 150ms, tRestorecode: 200ms, tBoot: 250ms, tTransfer: 250ms }",
  });
  expect(b.bed.testbed.rejuvenation.keyLeaseMs).toBe(1_000);
  const schedule = Date.now() + 60_000;
  let peersSpeak = true;
  const heartbeats = (async () => {
    while (peersSpeak) {
      for (const peer of ["b2", "b3", "b4", "b5", "b6"])
        b.deliver(peer, "HB", { period: 0, schedule, joined: true, sentAtMs: Date.now() });
      await settle(60);
    }
  })();
  const until = async (what: string, done: () => boolean) => {
    const deadline = Date.now() + 10_000;
    while (!done()) {
      if (Date.now() > deadline) throw new Error(`${what}: lines ${b.changes.join(" ")}`);
      await settle(10);
    }
  };
  const leases = () => host.sent.flatMap((m) => (m.type === "LEASE" ? [m.lease.notAfterMs] : []));
  try {
    await until("the host released", () => b.changes.includes("reset=inactive"));
    host.say({ type: "BOOTED", publicKey: Buffer.alloc(32, 7).toString("base64") });
    await until("a lease", () => leases().length > 0);
  } catch (error) {
    peersSpeak = false;
    await heartbeats;
    throw error;
  }
  const peersStop = async () => {
    peersSpeak = false;
    await heartbeats;
  };
  return { b, host, until, leases, peersStop };
}

describe("a board whose host runs under a lease", () => {
  it("after the operator's clear, holds the host in reset only once the last lease it issued lapsed", async () => {
    const { b, until, leases, peersStop } = await leasedHost("free");
    try {
      // A peer's fail-safe: the alarm, and the host left running.
      const before = b.changes.length;
      b.deliver("b2", "FAILSAFE", { reason: "b2's drill", origin: "b2", sentAtMs: Date.now() });
      await until("fail-safe", () => b.daemon.currentPhase === "failsafe");
      expect(b.changes.slice(before)).toContain("alarm=active");
      expect(b.changes.slice(before)).not.toContain("reset=active");
      const lastLapseMs = Math.max(...leases());

      // The operator clears it while that lease still runs.
      const cleared = b.changes.length;
      const answer = await operatorSend(
        controlSocketPath(b.stateDir),
        signedClear("b1", Date.now(), path.join(b.bed.dir, "keys", "operator.key")),
      );
      expect(answer).toMatchObject({ ok: true });
      const clearedAtMs = Date.now();
      expect(clearedAtMs).toBeLessThan(lastLapseMs);
      await until("the host held after the clear", () =>
        b.changes.slice(cleared).includes("reset=active"),
      );
      const heldAtMs = Date.now();
      // Not one lease went out after the fail-safe's: the one that lapses last is the same.
      expect(Math.max(...leases())).toBe(lastLapseMs);
      expect(heldAtMs).toBeGreaterThanOrEqual(lastLapseMs);
    } finally {
      await peersStop();
    }
  });

  it("stopping (SIGTERM), lets the host run until the last lease on its key lapsed, heartbeating meanwhile", async () => {
    const { b, host, leases, peersStop } = await leasedHost("free");
    try {
      const stopAtMs = Date.now();
      const sentBefore = host.sent.length;
      expect(b.daemon.status().stopping).toBeUndefined();
      const stopped = b.daemon.stop();
      // The status says so while the host runs on: no lease renewed, and when the last lapses.
      const draining = b.daemon.status();
      // On the board's clock, which reads the wall clock to within a millisecond here.
      expect(Math.abs((draining.stopping?.sinceMs as number) - stopAtMs)).toBeLessThan(50);
      expect(draining.keyLease?.renewing).toBe(false);
      expect(stateText(draining)).toBe(
        `running, stopping: host held at ${new Date(draining.keyLease?.lapsesAtMs as number).toISOString()}`,
      );
      await stopped;
      expect(b.daemon.status().stopping).toBeUndefined();
      const stoppedAtMs = Date.now();
      // Not one lease after the stop began; the stop ends only once the last one has lapsed (its
      // caller then drives the lines safe: the reset).
      expect(host.sent.slice(sentBefore).filter((m) => m.type === "LEASE")).toEqual([]);
      const lastLapseMs = Math.max(...leases());
      expect(lastLapseMs).toBeGreaterThan(stopAtMs + 250);
      expect(stoppedAtMs).toBeGreaterThanOrEqual(lastLapseMs);
      expect(b.changes.slice(-1)).toEqual(["reset=inactive"]);
      // Heard by its peers throughout: heartbeats every 100 ms until the end.
      const heartbeats = b.sent.filter((f) => f.type === "HB" && f.atMs >= stopAtMs);
      expect(heartbeats.length).toBeGreaterThanOrEqual(Math.floor((lastLapseMs - stopAtMs) / 200));
      expect(Math.max(...heartbeats.map((f) => f.atMs))).toBeGreaterThanOrEqual(lastLapseMs - 200);
    } finally {
      await peersStop();
    }
  });
});
