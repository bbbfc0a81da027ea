import { randomBytes } from "node:crypto";
import { createSocket } from "node:dgram";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { createConnection, type Socket } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { type ControlMessage, encodeControlFrame } from "@smw/wiring";
import {
  ControlLink,
  type ControlTransport,
  ptyPair,
  SerialLinksTransport,
  socatUnavailable,
  TcpTransport,
  UdpTransport,
} from "@smw/wormhole-board";
import { SerialPort } from "serialport";
import { afterAll, describe, expect, it } from "vitest";

const key = randomBytes(32);
const otherKey = randomBytes(32);

function collector() {
  const messages: Array<{ from: string; message: ControlMessage }> = [];
  const authFailures: Array<string | undefined> = [];
  return {
    messages,
    authFailures,
    handlers: {
      message: (from: string, message: ControlMessage) => messages.push({ from, message }),
      authFailure: (from: string | undefined) => authFailures.push(from),
    },
  };
}

const until = async (condition: () => boolean, what: string) => {
  const deadline = Date.now() + 5_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
};

async function hostileFrames(
  send: (line: string) => void,
  received: () => number,
  valid: string,
  epoch = 1,
  /** Whom the hostile frames claim to come from: a peer that may speak on this path. */
  from = "b1",
): Promise<void> {
  const start = received();
  send("garbage that is not a frame\n");
  send(`${"x".repeat(2_500)}\n`);
  send(
    encodeControlFrame(
      {
        from,
        to: "b2",
        epoch,
        seq: 99,
        type: "HB",
        body: { period: 0, schedule: 0, joined: true },
      },
      otherKey,
    ),
  );
  send(
    encodeControlFrame(
      {
        from,
        to: "b9",
        epoch,
        seq: 100,
        type: "HB",
        body: { period: 0, schedule: 0, joined: true },
      },
      key,
    ),
  );
  send(
    encodeControlFrame(
      {
        from: "b7",
        to: "b2",
        epoch,
        seq: 1,
        type: "HB",
        body: { period: 0, schedule: 0, joined: true },
      },
      key,
    ),
  );
  send(
    encodeControlFrame({ from, to: "b2", epoch, seq: 101, type: "HB", body: { period: "x" } }, key),
  );
  send(valid);
  send(valid);
  await until(() => received() - start >= 7, "the hostile frames");
}

describe("the control link over UDP on loopback", () => {
  it("delivers authenticated messages and drops forged, replayed, oversized and malformed frames", async () => {
    const peers = new Map([
      ["b1", { address: "127.0.0.1", port: 0 }],
      ["b2", { address: "127.0.0.1", port: 0 }],
    ]);
    // Pick free ports.
    for (const [id] of peers) {
      const probe = createSocket("udp4");
      await new Promise<void>((resolve) => probe.bind(0, "127.0.0.1", resolve));
      peers.set(id, { address: "127.0.0.1", port: probe.address().port });
      await new Promise<void>((resolve) => probe.close(() => resolve()));
    }
    const t1: ControlTransport = new UdpTransport(
      "127.0.0.1",
      peers.get("b1")?.port as number,
      new Map([["b2", peers.get("b2") as { address: string; port: number }]]),
    );
    const t2: ControlTransport = new UdpTransport(
      "127.0.0.1",
      peers.get("b2")?.port as number,
      new Map([["b1", peers.get("b1") as { address: string; port: number }]]),
    );
    const b1 = new ControlLink("b1", new Map([["b2", key]]), 1, t1);
    const b2 = new ControlLink("b2", new Map([["b1", key]]), 1, t2);
    const got = collector();
    await b1.open(collector().handlers);
    await b2.open(got.handlers);
    try {
      b1.broadcast({ type: "HB", period: -1, schedule: 0, joined: false });
      b1.broadcast({ type: "DONE", period: 0, schedule: 0 });
      await until(() => got.messages.length === 2, "two messages");
      expect(got.messages).toEqual([
        { from: "b1", message: { type: "HB", period: -1, schedule: 0, joined: false } },
        { from: "b1", message: { type: "DONE", period: 0, schedule: 0 } },
      ]);
      const raw = createSocket("udp4");
      const to = peers.get("b2") as { port: number };
      const valid = encodeControlFrame(
        {
          from: "b1",
          to: "b2",
          epoch: 1,
          seq: 50,
          type: "HB",
          body: { period: 3, schedule: 0, joined: true },
        },
        key,
      );
      await hostileFrames(
        (line) => raw.send(line, to.port, "127.0.0.1"),
        () => b2.counters.received + t2.oversized,
        valid,
      );
      raw.close();
      expect(got.messages).toHaveLength(3);
      expect(b2.counters).toMatchObject({
        malformed: 1,
        forged: 1,
        notForUs: 1,
        unknownSender: 1,
        badMessage: 1,
        replayed: 1,
        accepted: 3,
      });
      expect(b2.counters.oversized + t2.oversized).toBe(1);
      expect(got.authFailures).toEqual(["b1"]);
    } finally {
      await b1.close();
      await b2.close();
    }
  });

  it("says when its port is in use", async () => {
    const holder = createSocket("udp4");
    await new Promise<void>((resolve) => holder.bind(0, "127.0.0.1", resolve));
    const port = holder.address().port;
    const link = new ControlLink(
      "b1",
      new Map(),
      1,
      new UdpTransport("127.0.0.1", port, new Map()),
    );
    await expect(link.open(collector().handlers)).rejects.toThrow(
      `cannot listen on udp 127.0.0.1:${port}: the port is in use`,
    );
    holder.close();
  });
});

describe("the control link over TCP on loopback", () => {
  it("delivers messages both ways and reconnects after a peer restarts", async () => {
    const ports = [17701, 17702];
    const peersOf = (self: number) =>
      new Map([
        [self === 0 ? "b2" : "b1", { address: "127.0.0.1", port: ports[1 - self] as number }],
      ]);
    const make = (self: number) =>
      new ControlLink(
        self === 0 ? "b1" : "b2",
        new Map([[self === 0 ? "b2" : "b1", key]]),
        1,
        new TcpTransport("127.0.0.1", ports[self] as number, peersOf(self), 50),
      );
    const b1 = make(0);
    const got1 = collector();
    await b1.open(got1.handlers);
    let b2 = make(1);
    let got2 = collector();
    await b2.open(got2.handlers);
    try {
      await until(() => {
        b1.broadcast({ type: "HB", period: 0, schedule: 0, joined: false });
        return got2.messages.length > 0;
      }, "b1 to reach b2");
      b2.broadcast({ type: "FAILSAFE", reason: "drill", origin: "b2", sentAtMs: 0 });
      await until(() => got1.messages.some((m) => m.message.type === "FAILSAFE"), "b2 to reach b1");
      // b2 restarts (a new epoch): b1 reconnects and b2 hears it again.
      await b2.close();
      b2 = new ControlLink(
        "b2",
        new Map([["b1", key]]),
        2,
        new TcpTransport("127.0.0.1", ports[1] as number, peersOf(1), 50),
      );
      got2 = collector();
      await b2.open(got2.handlers);
      await until(() => {
        b1.broadcast({ type: "HB", period: 1, schedule: 0, joined: false });
        return got2.messages.length > 0;
      }, "b1 to reach the restarted b2");
    } finally {
      await b1.close();
      await b2.close();
    }
  });
});

describe("the TCP transport under connection floods", () => {
  it("holds at most a few connections per peer, frees closed ones, and refuses strangers", async () => {
    const port = 17705;
    const transport = new TcpTransport(
      "127.0.0.1",
      port,
      new Map([
        ["b2", { address: "127.0.0.1", port: 17706 }],
        ["b3", { address: "127.0.0.1", port: 17707 }],
      ]),
      50,
    );
    const lines: string[] = [];
    await transport.open((line) => lines.push(line));
    const sockets: Socket[] = [];
    try {
      // 300 connections held open from a peer's address: never more than the cap are kept.
      for (let i = 0; i < 300; i++) {
        const socket = createConnection({ host: "127.0.0.1", port });
        socket.on("error", () => {});
        sockets.push(socket);
        await once(socket, "connect");
      }
      await until(() => transport.connections <= transport.maxConnections, "the cap to hold");
      expect(transport.maxConnections).toBe(6);
      // The newest still deliver.
      (sockets[299] as Socket).write("hello\n");
      await until(() => lines.includes("hello"), "a line on the newest connection");
      // Closed by their peer: freed, splitters and all.
      for (const socket of sockets) socket.destroy();
      await until(() => transport.connections === 0, "every connection freed");
    } finally {
      for (const socket of sockets) socket.destroy();
      await transport.close();
    }
    // An address no peer has is refused outright.
    const strict = new TcpTransport(
      "127.0.0.1",
      port,
      new Map([["b2", { address: "10.9.8.7", port: 1 }]]),
      50,
    );
    await strict.open(() => {});
    try {
      const stranger = createConnection({ host: "127.0.0.1", port });
      stranger.on("error", () => {});
      await once(stranger, "close");
      expect(strict.refused).toBe(1);
      expect(strict.connections).toBe(0);
    } finally {
      await strict.close();
    }
  });
});

const noSocat = socatUnavailable();
if (noSocat !== undefined) process.stdout.write(`PTY control-link tests skipped: ${noSocat}\n`);

describe.skipIf(noSocat !== undefined)("the control link over a socat PTY pair", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "smw-pty-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("delivers messages, survives hostile bytes and an endless line", async () => {
    const a = path.join(dir, "b1-to-b2");
    const b = path.join(dir, "b2-to-b1");
    const c = path.join(dir, "attacker");
    const d = path.join(dir, "b2-from-attacker");
    const pair = await ptyPair(a, b);
    const attackPair = await ptyPair(c, d);
    const t1 = new SerialLinksTransport(new Map([["b2", a]]), 115200);
    const t2 = new SerialLinksTransport(
      new Map([
        ["b1", b],
        ["b3", d],
      ]),
      115200,
    );
    const b1 = new ControlLink("b1", new Map([["b2", key]]), 4, t1);
    // The attacker holds b3's end of the link from b3: it may speak as b3 there, nowhere else.
    const b2 = new ControlLink(
      "b2",
      new Map([
        ["b1", key],
        ["b3", key],
      ]),
      4,
      t2,
    );
    const got = collector();
    await b1.open(collector().handlers);
    await b2.open(got.handlers);
    const attacker = new SerialPort({ path: c, baudRate: 115200 });
    try {
      b1.broadcast({ type: "FAILSAFE", reason: "drill", origin: "b1", sentAtMs: 0 });
      await until(() => got.messages.length === 1, "the FAILSAFE message");
      expect(got.messages[0]).toEqual({
        from: "b1",
        message: { type: "FAILSAFE", reason: "drill", origin: "b1", sentAtMs: 0 },
      });
      // A genuine frame of b1's, relayed over b3's link: refused, however good its MAC.
      const relayed = encodeControlFrame(
        {
          from: "b1",
          to: "b2",
          epoch: 4,
          seq: 76,
          type: "HB",
          body: { period: 1, schedule: 0, joined: true },
        },
        key,
      );
      attacker.write(relayed);
      await until(() => b2.counters.wrongLink === 1, "the relayed frame to be refused");
      // A megabyte with no newline, then a valid frame: the frame still gets through.
      attacker.write(Buffer.alloc(1_000_000, 0x41));
      const valid = encodeControlFrame(
        {
          from: "b3",
          to: "b2",
          epoch: 4,
          seq: 77,
          type: "HB",
          body: { period: 1, schedule: 0, joined: true },
        },
        key,
      );
      attacker.write(`\n${valid}`);
      await until(() => got.messages.length === 2, "the frame after the endless line");
      expect(t2.oversized).toBe(1);
      await hostileFrames(
        (line) => attacker.write(line),
        () => b2.counters.received + t2.oversized,
        encodeControlFrame(
          {
            from: "b3",
            to: "b2",
            epoch: 4,
            seq: 78,
            type: "HB",
            body: { period: 2, schedule: 0, joined: true },
          },
          key,
        ),
        4,
        "b3",
      );
      expect(got.messages).toHaveLength(3);
      expect(b2.counters).toMatchObject({
        forged: 1,
        replayed: 1,
        notForUs: 1,
        unknownSender: 1,
        badMessage: 1,
        wrongLink: 1,
      });
    } finally {
      await new Promise<void>((resolve) => attacker.close(() => resolve()));
      await b1.close();
      await b2.close();
      await pair.close();
      await attackPair.close();
    }
  });

  it("reopens a link whose device went away and came back, dropping and counting what it sends meanwhile", async () => {
    const a = path.join(dir, "reopen-b1-to-b2");
    const b = path.join(dir, "reopen-b2-to-b1");
    let pair = await ptyPair(a, b);
    const t1 = new SerialLinksTransport(new Map([["b2", a]]), 115200);
    const t2 = new SerialLinksTransport(new Map([["b1", b]]), 115200);
    const lines: string[] = [];
    await t1.open(() => {});
    await t2.open((line) => lines.push(line));
    try {
      // Half a line reaches b2, then the device goes away under both ends.
      t1.send("b2", "half a fra");
      await new Promise((resolve) => setTimeout(resolve, 200));
      await pair.close();
      await until(() => t1.downPeers.length === 1 && t2.downPeers.length === 1, "both ends down");
      expect(t1.downPeers).toEqual(["b2"]);
      expect(() => t1.send("b2", "lost\n")).not.toThrow();
      expect(t1.dropped).toBe(1);
      pair = await ptyPair(a, b);
      await until(
        () => t1.reopened === 1 && t2.reopened === 1 && t1.downPeers.length === 0,
        "both ends to reopen",
      );
      t1.send("b2", "me\n");
      t1.send("b2", "a whole frame\n");
      await until(() => lines.length === 2, "the lines after the reopen");
      // Without the reset the first would read "half a frame".
      expect(lines).toEqual(["me", "a whole frame"]);
    } finally {
      await t1.close();
      await t2.close();
      await pair.close();
    }
  });
});
