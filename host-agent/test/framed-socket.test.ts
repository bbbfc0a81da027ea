/**
 * One connection's turn (`framed-socket.ts` MAX_FRAMES_PER_TURN): a connection that sends
 * thousands of frames at once has them handled a turn's worth at a time, and another
 * connection's frame, sent after them, is handled long before the last of them. Nothing is
 * lost or reordered. A connection whose input is held (`holdInput`) has nothing more handled
 * until the hold ends, and then everything, in order, while the others go on.
 */
import { connect, createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it, vi } from "vitest";
import { encodeFrame } from "../src/net/frame-codec.js";
import { FramedSocket, MAX_FRAMES_PER_TURN } from "../src/net/framed-socket.js";
import { type NetCounters, zeroCounters } from "../src/net/net-counters.js";
import { SendQueue } from "../src/net/send-queue.js";

const FLOOD = 5_000;
const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

/**
 * A server whose connections are FramedSockets recording "connection:frame" as handled;
 * `also` sees each frame with its connection after it is recorded.
 */
async function recordingServer(
  handled: string[],
  counters: NetCounters[],
  also?: (frame: string, framed: FramedSocket) => void,
): Promise<Server> {
  let accepted = 0;
  const server = createServer((socket) => {
    const name = `conn${accepted++}`;
    const c = zeroCounters();
    counters.push(c);
    const framed: FramedSocket = new FramedSocket(socket, {
      label: name,
      maxFrameBytes: 1024,
      queue: new SendQueue(1024 * 1024),
      counters: c,
      onFrame: (payload) => {
        const frame = payload.toString("utf8");
        handled.push(frame);
        also?.(frame, framed);
        return undefined;
      },
      onProblem: () => {},
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(() => server.close());
  return server;
}

async function dial(server: Server): Promise<Socket> {
  const { port } = server.address() as { port: number };
  const socket = connect(port, "127.0.0.1");
  await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
  cleanups.push(() => socket.destroy());
  return socket;
}

async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = performance.now() + 10_000;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A recording server and two connections to it, both accepted. */
async function twoConnections(also?: (frame: string, framed: FramedSocket) => void) {
  const handled: string[] = [];
  const counters: NetCounters[] = [];
  const server = await recordingServer(handled, counters, also);
  const sockets = [await dial(server), await dial(server)] as const;
  await until(() => counters.length === 2, "both connections accepted");
  return { handled, counters, sockets };
}

describe("a connection that sends thousands of frames at once", () => {
  it("has them handled a turn at a time: another connection's frame, sent after, comes long before the last", async () => {
    const { handled, counters, sockets } = await twoConnections();
    const [flooder, other] = sockets;
    const flood = Buffer.concat(
      Array.from({ length: FLOOD }, (_, i) => encodeFrame(Buffer.from(`flood:${i}`))),
    );
    flooder.write(flood);
    // Sent once the whole flood is in the kernel's hands (written to the socket, so readable at
    // the server before this frame is).
    await new Promise<void>((resolve) => flooder.write(Buffer.alloc(0), () => resolve()));
    other.write(encodeFrame(Buffer.from("other:0")));
    await until(() => handled.length === FLOOD + 1, "every frame handled");
    const at = handled.indexOf("other:0");
    // Without turns, the frames read from the flooder in one go (megabytes) all came first.
    expect(at).toBeGreaterThanOrEqual(0);
    expect(at).toBeLessThan(FLOOD / 5);
    // Every flood frame, in order, none lost.
    expect(handled.filter((h) => h.startsWith("flood:"))).toEqual(
      Array.from({ length: FLOOD }, (_, i) => `flood:${i}`),
    );
    const yielded = counters.map((c) => c.turnsYielded);
    expect(yielded.some((y) => y > 0)).toBe(true);
    expect(yielded.some((y) => y === 0)).toBe(true);
  });

  it(`handles at most ${MAX_FRAMES_PER_TURN} of them before the others' frames read meanwhile`, async () => {
    const { handled, sockets } = await twoConnections();
    const [a, b] = sockets;
    const batch = (name: string) =>
      Buffer.concat(
        Array.from({ length: 4 * MAX_FRAMES_PER_TURN }, (_, i) =>
          encodeFrame(Buffer.from(`${name}:${i}`)),
        ),
      );
    // Both floods are readable at the server before it reads either.
    await Promise.all([
      new Promise<void>((resolve) => a.write(batch("a"), () => resolve())),
      new Promise<void>((resolve) => b.write(batch("b"), () => resolve())),
    ]);
    await until(() => handled.length === 8 * MAX_FRAMES_PER_TURN, "every frame handled");
    // Runs of one connection's frames are at most a turn long once both are being read.
    let longest = 0;
    let run = 0;
    for (let i = 0; i < handled.length; i++) {
      run = i > 0 && handled[i]?.[0] === handled[i - 1]?.[0] ? run + 1 : 1;
      // The last connection left alone at the end may go on without anyone to yield to.
      const othersLeft = handled.slice(i + 1).some((h) => h[0] !== handled[i]?.[0]);
      if (othersLeft) longest = Math.max(longest, run);
    }
    expect(longest).toBeLessThanOrEqual(MAX_FRAMES_PER_TURN);
  });
});

describe("a connection whose input is held", () => {
  const HOLD_MS = 600;
  const AFTER_HOLD = 1_000;

  it("has nothing more handled until the hold ends, then all of it in order; the others go on", async () => {
    const heldAt: number[] = [];
    const handledAt = new Map<string, number>();
    const { handled, counters, sockets } = await twoConnections((frame, framed) => {
      handledAt.set(frame, performance.now());
      if (frame === "held:hold") {
        heldAt.push(performance.now());
        framed.holdInput(HOLD_MS);
        // A shorter hold meanwhile does not end it sooner.
        framed.holdInput(HOLD_MS / 10);
      }
    });
    const [held, other] = sockets;
    // The hold, and a thousand frames after it in the same write: read together, decoded after.
    held.write(
      Buffer.concat([
        encodeFrame(Buffer.from("held:hold")),
        ...Array.from({ length: AFTER_HOLD }, (_, i) => encodeFrame(Buffer.from(`held:${i}`))),
      ]),
    );
    await until(() => heldAt.length === 1, "the hold");
    other.write(encodeFrame(Buffer.from("other:0")));
    await until(() => handled.includes("other:0"), "the other connection's frame");
    // Handled while the hold lasts: the other's frame, and of the held connection only the hold.
    const otherAt = handledAt.get("other:0") as number;
    if (otherAt - (heldAt[0] as number) < HOLD_MS)
      expect(handled.filter((h) => h.startsWith("held:"))).toEqual(["held:hold"]);
    await until(() => handled.length === AFTER_HOLD + 2, "every frame handled");
    // Not a moment sooner: a frame read before the hold's end could be dropped by a core that
    // still counts its sender in debt (timers fire early).
    expect((handledAt.get("held:0") as number) - (heldAt[0] as number)).toBeGreaterThanOrEqual(
      HOLD_MS,
    );
    expect(handled.filter((h) => h.startsWith("held:"))).toEqual([
      "held:hold",
      ...Array.from({ length: AFTER_HOLD }, (_, i) => `held:${i}`),
    ]);
    expect(counters.map((c) => c.inputHolds).sort()).toEqual([0, 1]);
  });

  it("ends a hold no sooner than it said, even where timers fire early", async () => {
    // Timers firing 5 ms early, every one (libuv's do by up to a couple of milliseconds).
    const realSetTimeout = globalThis.setTimeout;
    const early = vi
      .spyOn(globalThis, "setTimeout")
      .mockImplementation(((fn: () => void, ms?: number) =>
        realSetTimeout(fn, Math.max(0, (ms ?? 0) - 5))) as typeof setTimeout);
    cleanups.push(() => early.mockRestore());
    let heldAtMs = 0;
    const handledAt = new Map<string, number>();
    const { sockets } = await twoConnections((frame, framed) => {
      handledAt.set(frame, performance.now());
      if (frame === "held:hold") {
        heldAtMs = performance.now();
        framed.holdInput(50);
      }
    });
    const [held] = sockets;
    held.write(
      Buffer.concat([encodeFrame(Buffer.from("held:hold")), encodeFrame(Buffer.from("held:0"))]),
    );
    await until(() => handledAt.has("held:0"), "the frame after the hold");
    early.mockRestore();
    expect((handledAt.get("held:0") as number) - heldAtMs).toBeGreaterThanOrEqual(50);
  });

  it("reads what the far end sends during the hold once it ends", async () => {
    let framedHeld: FramedSocket | undefined;
    const { handled, sockets } = await twoConnections((frame, framed) => {
      if (frame === "held:hold") {
        framedHeld = framed;
        framed.holdInput(HOLD_MS);
      }
    });
    const [held] = sockets;
    held.write(encodeFrame(Buffer.from("held:hold")));
    await until(() => framedHeld?.inputHeld === true, "the hold");
    held.write(encodeFrame(Buffer.from("held:during")));
    await until(() => framedHeld?.inputHeld === false, "the hold's end");
    await until(() => handled.includes("held:during"), "the frame sent during the hold");
    expect(handled).toEqual(["held:hold", "held:during"]);
  });
});
