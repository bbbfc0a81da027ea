import { generateKeyPairSync, sign, verify } from "node:crypto";
import { once } from "node:events";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { ClientConnections } from "../src/net/client-connection.js";
import { encodeFrame, FrameDecoder } from "../src/net/frame-codec.js";
import { helloProofBytes } from "../src/net/hello.js";
import {
  type ConnectionsOptions,
  type Hello,
  PeerConnections,
} from "../src/net/peer-connections.js";

const host = "127.0.0.1";
// Short delays so that reconnects and hello timeouts fit in a test.
const fast = { reconnectDelayMs: { initial: 10, max: 100 }, helloTimeoutMs: 300 };

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  await Promise.all(cleanups.splice(0).map((cleanup) => cleanup()));
});

function track<T extends { close(): Promise<void> }>(closable: T): T {
  cleanups.push(() => closable.close());
  return closable;
}

const until = async (condition: () => boolean, what: string, timeoutMs = 3_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Ports free a moment ago: a mesh needs every node's port before any node starts. */
async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  for (let i = 0; i < count; i++) {
    const server = createServer();
    server.listen(0, host);
    await once(server, "listening");
    servers.push(server);
  }
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

function replica(
  self: string,
  ports: Record<string, number>,
  extra: Partial<ConnectionsOptions> = {},
): PeerConnections {
  const peers = Object.fromEntries(
    Object.entries(ports)
      .filter(([id]) => id !== self)
      .map(([id, port]) => [id, { host, port }]),
  );
  return track(
    new PeerConnections({
      self,
      listen: { host, port: ports[self] ?? 0 },
      peers,
      ...fast,
      ...extra,
    }),
  );
}

function inbox(node: PeerConnections) {
  const messages: string[] = [];
  const problems: string[] = [];
  node.on("message", (from: Hello, payload: Buffer) =>
    messages.push(`${from.role} ${from.id}: ${payload.toString("utf8")}`),
  );
  node.on("problem", (description) => problems.push(description));
  return { messages, problems };
}

/** A socket under the test's control; destroyed after the test whatever happens. */
async function rawSocket(port: number): Promise<Socket> {
  const socket = createConnection({ host, port });
  socket.on("error", () => {});
  cleanups.push(() => socket.destroy());
  await once(socket, "connect");
  return socket;
}

const hello = (role: string, id: string, smw = 1) =>
  encodeFrame(Buffer.from(JSON.stringify({ smw, role, id })));

const refused = (port: number) =>
  new Promise<string | undefined>((resolve) => {
    const socket = createConnection({ host, port });
    socket.on("connect", () => {
      socket.destroy();
      resolve(undefined);
    });
    socket.on("error", (error: NodeJS.ErrnoException) => resolve(error.code));
  });

describe("PeerConnections", () => {
  it("three replicas exchange frames in all directions, in order", async () => {
    const [a, b, c] = await freePorts(3);
    const ports = { a: a as number, b: b as number, c: c as number };
    const ids = ["a", "b", "c"] as const;
    const nodes = Object.fromEntries(ids.map((id) => [id, replica(id, ports)])) as Record<
      (typeof ids)[number],
      PeerConnections
    >;
    const boxes = Object.fromEntries(ids.map((id) => [id, inbox(nodes[id])]));
    await Promise.all(ids.map((id) => nodes[id].start()));
    // Sent at once: whatever is not connected yet waits in the queue.
    for (const from of ids)
      for (const to of ids) if (from !== to) nodes[from].sendToReplica(to, Buffer.from(`hi ${to}`));
    for (let i = 0; i < 200; i++) nodes.a.sendToReplica("b", Buffer.from(`seq ${i}`));

    await until(() => ids.every((id) => (boxes[id]?.messages.length ?? 0) >= 2), "every greeting");
    await until(() => (boxes.b?.messages.length ?? 0) === 202, "the sequence");
    expect([...(boxes.a?.messages ?? [])].sort()).toEqual(["replica b: hi a", "replica c: hi a"]);
    expect([...(boxes.c?.messages ?? [])].sort()).toEqual(["replica a: hi c", "replica b: hi c"]);
    const sequence = boxes.b?.messages.filter((m) => m.startsWith("replica a: seq")) ?? [];
    expect(sequence).toEqual(Array.from({ length: 200 }, (_, i) => `replica a: seq ${i}`));
    for (const id of ids) expect(boxes[id]?.problems).toEqual([]);
    expect(nodes.a.counters()).toMatchObject({ framesOut: 202, droppedFrames: 0 });
    expect(nodes.b.counters().framesIn).toBe(202);
    expect(nodes.b.connectedReplicas().sort()).toEqual(["a", "c"]);
  });

  it("reaches a peer that starts after the others, with what was queued for it", async () => {
    const [a, b, c] = await freePorts(3);
    const ports = { a: a as number, b: b as number, c: c as number };
    const nodeA = replica("a", ports);
    const nodeB = replica("b", ports);
    await Promise.all([nodeA.start(), nodeB.start()]);
    nodeA.sendToReplica("c", Buffer.from("early from a"));
    nodeB.sendToReplica("c", Buffer.from("early from b"));
    await until(() => nodeA.counters().reconnects >= 2, "a few redials of c");

    const nodeC = replica("c", ports);
    const box = inbox(nodeC);
    await nodeC.start();
    await until(() => box.messages.length === 2, "the queued frames");
    expect(box.messages.sort()).toEqual(["replica a: early from a", "replica b: early from b"]);
    expect(nodeA.counters().droppedFrames).toBe(0);
  });

  it("reconnects to a replica closed and restarted on the same port", async () => {
    const [a, b] = await freePorts(2);
    const ports = { a: a as number, b: b as number };
    const first = replica("a", ports);
    const nodeB = replica("b", ports);
    const firstBox = inbox(first);
    await Promise.all([first.start(), nodeB.start()]);
    nodeB.sendToReplica("a", Buffer.from("before"));
    await until(() => firstBox.messages.length === 1, "the first frame");

    await first.close();
    await until(() => !nodeB.connectedReplicas().includes("a"), "b to notice");
    nodeB.sendToReplica("a", Buffer.from("while a was down"));
    const second = replica("a", ports);
    const secondBox = inbox(second);
    const bBox = inbox(nodeB);
    await second.start();
    expect(second.address()).toEqual({ host, port: ports.a });
    await until(() => secondBox.messages.length === 1, "the frame queued while a was down");
    expect(secondBox.messages).toEqual(["replica b: while a was down"]);
    second.sendToReplica("b", Buffer.from("back"));
    await until(() => bBox.messages.length === 1, "the restarted replica's frame");
    expect(bBox.messages).toEqual(["replica a: back"]);
  });

  it("redials a restarted peer as soon as it dials in, not after the backoff", async () => {
    const [a, b] = await freePorts(2);
    const ports = { a: a as number, b: b as number };
    // A long backoff: without the immediate redial, b would wait seconds to reach a again.
    const slow = { reconnectDelayMs: { initial: 4_000, max: 8_000 } };
    const first = replica("a", ports, slow);
    const nodeB = replica("b", ports, slow);
    await Promise.all([first.start(), nodeB.start()]);
    await until(() => nodeB.connectedReplicas().includes("a"), "b connected to a");
    await first.close();
    await until(() => !nodeB.connectedReplicas().includes("a"), "b to notice");
    nodeB.sendToReplica("a", Buffer.from("while a was down"));
    // b now waits 4 s (less jitter) before redialing a. a restarts and dials b.
    await sleep(100);
    const second = replica("a", ports, slow);
    const box = inbox(second);
    const startedMs = Date.now();
    await second.start();
    await until(() => box.messages.length === 1, "b's queued frame", 2_500);
    expect(Date.now() - startedMs).toBeLessThan(2_000);
    expect(box.messages).toEqual(["replica b: while a was down"]);
  });

  it("answers a client over the connection the client dialed", async () => {
    const [r1, r2] = await freePorts(2);
    const ports = { r1: r1 as number, r2: r2 as number };
    const replicas = [replica("r1", ports), replica("r2", ports)];
    for (const [index, node] of replicas.entries())
      node.on("message", (from, payload) => {
        if (from.role === "client")
          node.sendToClient(from.id, Buffer.from(`r${index + 1} saw ${payload.toString()}`));
      });
    await Promise.all(replicas.map((r) => r.start()));
    const client = track(
      new ClientConnections({
        clientId: "client-1",
        replicas: { r1: { host, port: ports.r1 }, r2: { host, port: ports.r2 } },
        reconnectDelayMs: fast.reconnectDelayMs,
      }),
    );
    const replies: string[] = [];
    client.on("message", (replicaId, payload) =>
      replies.push(`${replicaId}: ${payload.toString()}`),
    );
    client.start();
    client.broadcast(Buffer.from("request 1"));
    await until(() => replies.length === 2, "both replies");
    expect(replies.sort()).toEqual(["r1: r1 saw request 1", "r2: r2 saw request 1"]);
    client.send("r2", Buffer.from("request 2"));
    await until(() => replies.length === 3, "the reply from r2");
    expect(replies[2]).toBe("r2: r2 saw request 2");
    expect(client.connectedCount()).toBe(2);
    expect(client.counters()).toMatchObject({ framesOut: 3, framesIn: 3 });

    const [first] = replicas as [PeerConnections];
    first.sendToClient("nobody", Buffer.from("lost"));
    expect(first.counters().droppedFrames).toBe(1);
    expect(() => client.send("r9", Buffer.from("x"))).toThrow(/no replica "r9"/);
  });

  it("holds a client's connections, and one it opens meanwhile, then reads what they sent", async () => {
    const HOLD_MS = 500;
    const [port] = await freePorts(1);
    const node = replica("r1", { r1: port as number });
    const seen: Array<{ what: string; atMs: number }> = [];
    let heldAtMs = 0;
    node.on("message", (from, payload) => {
      const what = `${from.id}: ${payload.toString()}`;
      seen.push({ what, atMs: performance.now() });
      if (what === "c1: hold") {
        heldAtMs = performance.now();
        node.holdClient("c1", HOLD_MS);
      }
    });
    await node.start();
    const dialAs = async (clientId: string) => {
      const connections = track(
        new ClientConnections({
          clientId,
          replicas: { r1: { host, port: port as number } },
          reconnectDelayMs: fast.reconnectDelayMs,
        }),
      );
      connections.start();
      await until(() => connections.connectedCount() === 1, `${clientId} connected`);
      return connections;
    };
    const c1 = await dialAs("c1");
    c1.send("r1", Buffer.from("hold"));
    c1.send("r1", Buffer.from("after"));
    await until(() => heldAtMs > 0, "the hold");
    // Another connection of c1's, opened during the hold, is held too; c2 is not.
    const c1Again = await dialAs("c1");
    c1Again.send("r1", Buffer.from("again"));
    const c2 = await dialAs("c2");
    c2.send("r1", Buffer.from("meanwhile"));
    await until(() => seen.length === 4, "every message");
    const at = (what: string) => (seen.find((s) => s.what === what)?.atMs as number) - heldAtMs;
    expect(at("c2: meanwhile")).toBeGreaterThanOrEqual(0);
    expect(at("c1: after")).toBeGreaterThanOrEqual(HOLD_MS);
    expect(at("c1: again")).toBeGreaterThanOrEqual(HOLD_MS);
    if (at("c2: meanwhile") < HOLD_MS) expect(seen[1]?.what).toBe("c2: meanwhile");
    expect(node.counters().inputHolds).toBe(2);
  });

  it("sends nothing larger than a frame may be, says so, and goes on", async () => {
    const [r1, r2] = await freePorts(2);
    const ports = { r1: r1 as number, r2: r2 as number };
    const [first, second] = [
      replica("r1", ports, { maxFrameBytes: 1024 }),
      replica("r2", ports, { maxFrameBytes: 1024 }),
    ];
    const { messages } = inbox(second);
    const { problems } = inbox(first);
    await Promise.all([first.start(), second.start()]);
    // Neither throws: a throw here, inside a connection's handler, ended the process.
    first.sendToReplica("r2", Buffer.alloc(2048, 1));
    first.sendToClient("c1", Buffer.alloc(2048, 1));
    first.sendToReplica("r2", Buffer.from("after"));
    await until(() => messages.length === 1, "the frame after");
    expect(messages).toEqual(["replica r1: after"]);
    expect(first.counters().framesTooLarge).toBe(2);
    expect(problems).toEqual([
      "a message of 2048 bytes for replica r2 is larger than a frame may be (1024 bytes): not sent",
      'a message of 2048 bytes for client "c1" is larger than a frame may be (1024 bytes): not sent',
    ]);
  });

  it("closes misbehaving connections, says why, and keeps serving", async () => {
    const [deadPeer] = await freePorts(1);
    const node = replica("n", { n: 0, b: deadPeer as number });
    const box = inbox(node);
    await node.start();
    const { port } = node.address();
    const oversized = Buffer.alloc(4);
    oversized.writeUInt32BE(20_000_000);
    const sessions: Array<[string, Buffer[], RegExp]> = [
      ["HTTP", [Buffer.from("GET / HTTP/1.1\r\n\r\n")], /frame of 1195725856 bytes exceeds/],
      ["not JSON", [encodeFrame(Buffer.from("garbage"))], /not a hello \(not JSON\)/],
      ["unknown replica", [hello("replica", "r9")], /replica "r9", which is not a peer of n$/],
      [
        "bad client id",
        [hello("client", "no spaces")],
        /client "no spaces", not a valid client id/,
      ],
      ["version", [hello("client", "c1", 2)], /smw 2; this node speaks 1/],
      [
        "oversized after hello",
        [hello("client", "c1"), oversized],
        /^connection from client c1 \(127\.0\.0\.1:\d+\): frame of 20000000 bytes exceeds the 8388608-byte maximum$/,
      ],
      ["silence", [], /no hello within 300 ms/],
    ];
    for (const [name, writes, expected] of sessions) {
      const socket = await rawSocket(port);
      const closed = once(socket, "close");
      for (const bytes of writes) socket.write(bytes);
      await closed;
      expect(box.problems.at(-1), name).toMatch(expected);
    }
    expect(box.problems).toHaveLength(sessions.length);
    expect(node.counters()).toMatchObject({ rejectedConnections: 6, oversizedFrames: 2 });

    // A well-behaved client still gets through.
    const good = await rawSocket(port);
    good.write(Buffer.concat([hello("client", "c2"), encodeFrame(Buffer.from("fine"))]));
    await until(() => box.messages.length === 1, "the good client's frame");
    expect(box.messages).toEqual(["client c2: fine"]);
  });

  it("sends the hello first and refuses frames on a connection it dialed", async () => {
    const connections: Socket[] = [];
    const hellos: string[] = [];
    const fakePeer = createServer((socket) => {
      connections.push(socket);
      const decoder = new FrameDecoder(1024);
      socket.on("data", (chunk: Buffer) => {
        for (const frame of decoder.push(chunk).frames) hellos.push(frame.toString());
        // A replica must not answer on the connection its peer dialed.
        socket.write(encodeFrame(Buffer.from("unexpected")));
      });
      socket.on("error", () => {});
    });
    fakePeer.listen(0, host);
    await once(fakePeer, "listening");
    cleanups.push(() => {
      for (const socket of connections) socket.destroy();
      return new Promise((resolve) => fakePeer.close(resolve));
    });
    const fakePort = (fakePeer.address() as { port: number }).port;
    const node = replica("a", { a: 0, b: fakePort });
    const box = inbox(node);
    await node.start();
    await until(() => connections.length >= 2, "a redial after the refusal");
    expect(hellos[0]).toBe('{"smw":1,"role":"replica","id":"a"}');
    expect(box.problems[0]).toMatch(
      /^connection to replica b \(127\.0\.0\.1:\d+\): replica b sent a frame on the connection we dialed/,
    );
  });

  it("holds back for a peer that does not read, dropping the oldest beyond the bound", async () => {
    const connections: Socket[] = [];
    const fakePeer = createServer((socket) => {
      socket.pause();
      connections.push(socket);
    });
    fakePeer.listen(0, host);
    await once(fakePeer, "listening");
    cleanups.push(() => {
      for (const socket of connections) socket.destroy();
      return new Promise((resolve) => fakePeer.close(resolve));
    });
    const fakePort = (fakePeer.address() as { port: number }).port;
    const node = replica("a", { a: 0, b: fakePort }, { maxQueuedBytesPerPeer: 256 * 1024 });
    await node.start();
    await until(() => node.connectedReplicas().includes("b") && connections.length === 1, "b");

    const count = 400;
    for (let seq = 0; seq < count; seq++) {
      const payload = Buffer.alloc(64 * 1024);
      payload.writeUInt32BE(seq);
      node.sendToReplica("b", payload);
    }
    const dropped = node.counters().droppedFrames;
    // 25 MiB sent into a socket nobody reads: most of it must have been dropped, not buffered.
    expect(dropped).toBeGreaterThan(count / 2);

    const received: number[] = [];
    const decoder = new FrameDecoder(1024 * 1024);
    const [socket] = connections as [Socket];
    socket.on("data", (chunk: Buffer) => {
      for (const frame of decoder.push(chunk).frames)
        if (frame.length > 0 && frame[0] !== 0x7b) received.push(frame.readUInt32BE(0));
    });
    socket.resume();
    await until(() => received.length === count - dropped, "what was not dropped");
    expect(received.at(-1)).toBe(count - 1);
    expect(received).toEqual([...received].sort((x, y) => x - y));
    expect(node.counters().framesOut).toBe(count - dropped);
  });

  it("close() leaves no socket, server or timer behind", async () => {
    const tcpHandles = () =>
      process.getActiveResourcesInfo().filter((r) => r.startsWith("TCP")).length;
    // Handles closed a moment ago leave the list on the loop's next turn.
    const settledTcpHandles = async () => {
      await sleep(20);
      return tcpHandles();
    };
    const baseline = await settledTcpHandles();
    const [deadPeer] = await freePorts(1);
    const node = new PeerConnections({
      self: "a",
      listen: { host, port: 0 },
      peers: { b: { host, port: deadPeer as number } },
      ...fast,
    });
    const problems: string[] = [];
    node.on("problem", (d) => problems.push(d));
    await node.start();
    const { port } = node.address();
    // One connection past its hello, one still waiting for it (a hello timer running).
    const greeted = await rawSocket(port);
    greeted.write(hello("client", "c1"));
    const silent = await rawSocket(port);
    await until(() => node.counters().reconnects >= 1, "redials of the absent peer");
    node.sendToReplica("b", Buffer.from("never delivered"));

    await node.close();
    await Promise.all([
      greeted.closed ? undefined : once(greeted, "close"),
      silent.closed ? undefined : once(silent, "close"),
    ]);
    expect(await refused(port)).toBe("ECONNREFUSED");
    // No redial timer survived: the peer's port, now open, sees no one.
    const arrivals: Socket[] = [];
    const lateServer = createServer((socket) => {
      arrivals.push(socket);
      socket.destroy();
    });
    lateServer.listen(deadPeer, host);
    await once(lateServer, "listening");
    await sleep(300);
    await new Promise((resolve) => lateServer.close(resolve));
    expect(arrivals).toHaveLength(0);
    expect(problems).toEqual([]);
    expect(await settledTcpHandles()).toBe(baseline);
    await node.close();
  });

  it("refuses what is wrong locally, loudly", async () => {
    expect(
      () =>
        new PeerConnections({
          self: "a",
          listen: { host, port: 0 },
          peers: { a: { host, port: 1 } },
        }),
    ).toThrow(/must not include this replica/);
    expect(
      () =>
        new PeerConnections({ self: "a", listen: { host, port: 0 }, peers: {}, maxFrameBytes: -1 }),
    ).toThrow(RangeError);
    expect(() => new ClientConnections({ clientId: "bad id", replicas: {} })).toThrow(RangeError);
    const node = replica("a", { a: 0, b: 1 }, { maxFrameBytes: 16 });
    expect(() => node.sendToReplica("z", Buffer.alloc(1))).toThrow(/no peer replica "z"/);
    // Closing a node that never started is fine, and so is closing twice.
    await node.close();
    await node.close();
    const [taken] = await freePorts(1);
    const holder = replica("h", { h: taken as number });
    await holder.start();
    const clash = replica("x", { x: taken as number });
    await expect(clash.start()).rejects.toThrow(/the port is in use/);
  });
});

describe("a client's hello, proven", () => {
  const keys = generateKeyPairSync("ed25519");
  const proveHello = (signed: Buffer) => sign(null, signed, keys.privateKey).toString("base64");
  const verifyClient = (client: string, signed: Buffer, proof: string) =>
    client === "client-1" && verify(null, signed, keys.publicKey, Buffer.from(proof, "base64"));

  /** A replica that echoes every client message back to that client. */
  async function echoing(extra: Partial<ConnectionsOptions> = {}) {
    const node = replica("r1", { r1: 0 }, { verifyClient, ...extra });
    const box = inbox(node);
    node.on("message", (from, payload) => {
      if (from.role === "client")
        node.sendToClient(from.id, Buffer.from(`to ${from.id}: ${payload}`));
    });
    await node.start();
    return { node, box, port: node.address().port };
  }

  it("replies reach the client that signs the challenge, and no one who only claims its name", async () => {
    const { node, box, port } = await echoing();
    // A connection that claims client-1 but cannot sign for it.
    const impostor = await rawSocket(port);
    const decoder = new FrameDecoder(1 << 20);
    const heard: string[] = [];
    impostor.on("data", (chunk: Buffer) => {
      for (const f of decoder.push(chunk).frames) heard.push(f.toString());
    });
    impostor.write(hello("client", "client-1"));
    await until(() => heard.length === 1, "the challenge");
    expect(JSON.parse(heard[0] as string)).toMatchObject({ smw: 1 });
    // Frames before the proof are not taken as messages, and its replies go nowhere.
    const closed = once(impostor, "close");
    impostor.write(encodeFrame(Buffer.from(JSON.stringify({ smw: 1, proof: "AAAA" }))));
    await closed;
    expect(box.problems.at(-1)).toMatch(/hello of client "client-1" is not proven by its key/);
    expect(box.messages).toEqual([]);
    node.sendToClient("client-1", Buffer.from("secret"));
    expect(heard).toHaveLength(1);

    // The real client proves it; what it queued before the proof follows it, in order.
    const client = track(
      new ClientConnections({
        clientId: "client-1",
        replicas: { r1: { host, port } },
        reconnectDelayMs: fast.reconnectDelayMs,
        proveHello,
      }),
    );
    const replies: string[] = [];
    client.on("message", (_, payload) => replies.push(payload.toString()));
    client.send("r1", Buffer.from("one"));
    client.start();
    client.send("r1", Buffer.from("two"));
    await until(() => replies.length === 2, "both replies");
    expect(replies).toEqual(["to client-1: one", "to client-1: two"]);
  });

  it("a client whose key is not the one on file is refused", async () => {
    const { box, port } = await echoing();
    const other = generateKeyPairSync("ed25519");
    const client = track(
      new ClientConnections({
        clientId: "client-1",
        replicas: { r1: { host, port } },
        reconnectDelayMs: fast.reconnectDelayMs,
        proveHello: (signed) => sign(null, signed, other.privateKey).toString("base64"),
      }),
    );
    client.start();
    client.send("r1", Buffer.from("let me in"));
    await until(() => box.problems.length > 0, "the refusal");
    expect(box.problems[0]).toMatch(/not proven by its key/);
    expect(box.messages).toEqual([]);
  });

  it("the proof is bound to the replica and the challenge: one replayed elsewhere fails", () => {
    const challenge = Buffer.alloc(32, 7);
    const proof = proveHello(helloProofBytes("r1", "client-1", challenge));
    expect(verifyClient("client-1", helloProofBytes("r1", "client-1", challenge), proof)).toBe(
      true,
    );
    expect(verifyClient("client-1", helloProofBytes("r2", "client-1", challenge), proof)).toBe(
      false,
    );
    expect(
      verifyClient("client-1", helloProofBytes("r1", "client-1", Buffer.alloc(32, 8)), proof),
    ).toBe(false);
  });

  it("frames before the hello is proven are small; connections per address are capped", async () => {
    const { node, box, port } = await echoing({ maxInboundPerAddress: 3 });
    // An 8 KiB first frame: refused at its length prefix, not read.
    const big = await rawSocket(port);
    const closed = once(big, "close");
    big.write(encodeFrame(Buffer.alloc(8192, 32)));
    await closed;
    expect(box.problems.at(-1)).toMatch(/frame of 8192 bytes exceeds the 4096-byte maximum/);
    // Three open connections from this address; the fourth is refused at once.
    for (let i = 0; i < 3; i++) await rawSocket(port);
    await until(() => node.counters().rejectedConnections >= 1, "the first refusal counted");
    const before = node.counters().rejectedConnections;
    const fourth = await rawSocket(port);
    await once(fourth, "close");
    expect(node.counters().rejectedConnections).toBe(before + 1);
    expect(box.problems.at(-1)).toMatch(/refused: 3 open from that address/);
  });
});
