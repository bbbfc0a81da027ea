import { once } from "node:events";
import { createServer, Socket } from "node:net";
import { afterEach, expect, it, vi } from "vitest";
import { encodeFrame } from "../src/net/frame-codec.js";
import { zeroCounters } from "../src/net/net-counters.js";
import { OutboundLink, type OutboundLinkOptions } from "../src/net/outbound-link.js";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  await Promise.all(cleanups.splice(0).map((cleanup) => cleanup()));
});

const HELLO = encodeFrame(Buffer.from("hello"));

/** A started link to `port` on loopback (closed after the test), with `overrides` applied. */
function startLink(port: number, overrides: Partial<OutboundLinkOptions> = {}): OutboundLink {
  const link = new OutboundLink({
    label: "test",
    host: "127.0.0.1",
    port,
    hello: HELLO,
    maxFrameBytes: 1 << 20,
    maxQueuedBytes: 1 << 20,
    reconnectDelayMs: { initial: 10, max: 20 },
    counters: zeroCounters(),
    onFrame: () => undefined,
    onProblem: () => {},
    ...overrides,
  });
  cleanups.push(() => link.close());
  link.start();
  return link;
}

/** A loopback port nothing listens on (yet). */
async function freePort(): Promise<number> {
  const probe = createServer();
  probe.listen(0, "127.0.0.1");
  await once(probe, "listening");
  const port = (probe.address() as { port: number }).port;
  await new Promise((r) => probe.close(r));
  return port;
}

it("frames sent in one turn of the event loop leave in one write", async () => {
  const chunks: Buffer[] = [];
  const server = createServer((socket) => socket.on("data", (d) => chunks.push(d)));
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  cleanups.push(() => new Promise((r) => server.close(r)));
  const port = (server.address() as { port: number }).port;
  const hello = encodeFrame(Buffer.from("hello"));
  const link = new OutboundLink({
    label: "test",
    host: "127.0.0.1",
    port,
    hello,
    maxFrameBytes: 1 << 20,
    maxQueuedBytes: 1 << 20,
    reconnectDelayMs: { initial: 10, max: 100 },
    counters: zeroCounters(),
    onFrame: () => undefined,
    onProblem: () => {},
  });
  cleanups.push(() => link.close());
  link.start();
  const deadline = Date.now() + 3000;
  while (!link.connected || chunks.length === 0) {
    if (Date.now() > deadline) throw new Error("never connected");
    await new Promise((r) => setTimeout(r, 5));
  }
  chunks.length = 0;
  // Count what the socket layer is asked to write: one write call each is one syscall each.
  const proto = Socket.prototype as unknown as Record<"_write" | "_writev", () => void>;
  const writes = vi.spyOn(proto, "_write");
  const writevs = vi.spyOn(proto, "_writev");
  cleanups.push(() => vi.restoreAllMocks());
  const frame = encodeFrame(Buffer.alloc(100, 7));
  for (let i = 0; i < 20; i++) link.send(frame);
  while (Buffer.concat(chunks).length < 20 * frame.length) {
    if (Date.now() > deadline) throw new Error("frames never arrived");
    await new Promise((r) => setTimeout(r, 5));
  }
  expect(writes.mock.calls.length + writevs.mock.calls.length).toBe(1);
});

it("keeps only the newest frames for a far end that is down, and sends again once it is up", async () => {
  // A port that refuses, then a server there: a replica held in reset, then booted again.
  const port = await freePort();
  const counters = zeroCounters();
  const frameOf = (i: number) => encodeFrame(Buffer.alloc(96, i));
  const link = startLink(port, { maxQueuedBytesWhileDown: 3 * 100, counters });
  for (let i = 1; i <= 10; i++) link.send(frameOf(i));
  expect(counters.droppedFrames).toBe(7);
  const chunks: Buffer[] = [];
  const server = createServer((socket) => socket.on("data", (d) => chunks.push(d)));
  server.listen(port, "127.0.0.1");
  await once(server, "listening");
  cleanups.push(() => new Promise((r) => server.close(r)));
  const hello = encodeFrame(Buffer.from("hello"));
  const expected = Buffer.concat([hello, frameOf(8), frameOf(9), frameOf(10)]);
  await vi.waitFor(() => expect(Buffer.concat(chunks).length).toBe(expected.length), {
    timeout: 3_000,
    interval: 5,
  });
  expect(Buffer.concat(chunks)).toEqual(expected);
  // Up: frames go as they are sent, none dropped (the full bound holds only what the socket
  // does not take).
  chunks.length = 0;
  for (let i = 11; i <= 20; i++) link.send(frameOf(i));
  await vi.waitFor(() => expect(Buffer.concat(chunks).length).toBe(10 * frameOf(0).length), {
    timeout: 3_000,
    interval: 5,
  });
  expect(counters.droppedFrames).toBe(7);
});

it("a queue's bound can shrink: the oldest frames go", async () => {
  const { SendQueue } = await import("../src/net/send-queue.js");
  const queue = new SendQueue(1000);
  for (let i = 0; i < 5; i++) queue.push(Buffer.alloc(100, i), 0);
  expect(queue.setMaxBytes(250)).toBe(3);
  expect([queue.shift()?.[0], queue.shift()?.[0], queue.shift()]).toEqual([3, 4, undefined]);
  expect(() => queue.setMaxBytes(-1)).toThrow(/whole number of bytes, not -1/);
});

it("after the far end went down, sends again only what was queued lately: older frames were for a process gone", async () => {
  const counters = zeroCounters();
  const frameOf = (i: number) => encodeFrame(Buffer.alloc(64, i));
  const hello = encodeFrame(Buffer.from("hello"));
  const chunks: Buffer[] = [];
  const accepted: Socket[] = [];
  const first = createServer((socket) => {
    accepted.push(socket);
    socket.on("data", (d) => chunks.push(d));
  });
  first.listen(0, "127.0.0.1");
  await once(first, "listening");
  const port = (first.address() as { port: number }).port;
  const link = startLink(port, { maxQueuedAgeWhileDownMs: 150, counters });
  link.send(frameOf(1));
  await vi.waitFor(() => expect(Buffer.concat(chunks)).toEqual(Buffer.concat([hello, frameOf(1)])));
  // The far end dies (its host held in reset): frames queue, the oldest for longer than 150 ms.
  const closed = new Promise((r) => first.close(r));
  for (const socket of accepted) socket.destroy();
  await closed;
  await vi.waitFor(() => expect(link.connected).toBe(false));
  link.send(frameOf(2));
  link.send(frameOf(3));
  await new Promise((r) => setTimeout(r, 300));
  link.send(frameOf(4));
  chunks.length = 0;
  const second = createServer((socket) => socket.on("data", (d) => chunks.push(d)));
  second.listen(port, "127.0.0.1");
  await once(second, "listening");
  cleanups.push(() => new Promise((r) => second.close(r)));
  await vi.waitFor(
    () => expect(Buffer.concat(chunks)).toEqual(Buffer.concat([hello, frameOf(4)])),
    { timeout: 3_000, interval: 5 },
  );
  expect(counters.droppedFrames).toBe(2);
});

it("a queue drops what was queued before a given instant, oldest first", async () => {
  const { SendQueue } = await import("../src/net/send-queue.js");
  const queue = new SendQueue(1000);
  for (let i = 0; i < 5; i++) queue.push(Buffer.alloc(10, i), 100 * i);
  expect(queue.dropQueuedBefore(250)).toBe(3);
  expect(queue.bytes).toBe(20);
  expect(queue.dropQueuedBefore(250)).toBe(0);
  expect([queue.shift()?.[0], queue.shift()?.[0], queue.shift()]).toEqual([3, 4, undefined]);
});

it("at its first connection sends everything queued, however old: the far end was only starting", async () => {
  const port = await freePort();
  const counters = zeroCounters();
  const frameOf = (i: number) => encodeFrame(Buffer.alloc(32, i));
  const hello = HELLO;
  const link = startLink(port, { maxQueuedAgeWhileDownMs: 20, counters });
  link.send(frameOf(1));
  link.send(frameOf(2));
  await new Promise((r) => setTimeout(r, 150));
  const chunks: Buffer[] = [];
  const server = createServer((socket) => socket.on("data", (d) => chunks.push(d)));
  server.listen(port, "127.0.0.1");
  await once(server, "listening");
  cleanups.push(() => new Promise((r) => server.close(r)));
  await vi.waitFor(
    () => expect(Buffer.concat(chunks)).toEqual(Buffer.concat([hello, frameOf(1), frameOf(2)])),
    { timeout: 3_000, interval: 5 },
  );
  expect(counters.droppedFrames).toBe(0);
});
