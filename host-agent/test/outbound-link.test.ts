import { once } from "node:events";
import { createServer, Socket } from "node:net";
import { afterEach, expect, it, vi } from "vitest";
import { encodeFrame } from "../src/net/frame-codec.js";
import { zeroCounters } from "../src/net/net-counters.js";
import { OutboundLink } from "../src/net/outbound-link.js";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  await Promise.all(cleanups.splice(0).map((cleanup) => cleanup()));
});

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
