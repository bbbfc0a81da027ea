/**
 * One TCP connection carrying frames: decodes what arrives (bounded), writes
 * queued frames only while the socket accepts them (backpressure), and
 * closes the connection with a description when the other end misbehaves.
 */
import type { Socket } from "node:net";
import { FrameDecoder } from "./frame-codec.js";
import type { NetCounters } from "./net-counters.js";
import type { SendQueue } from "./send-queue.js";

/**
 * Idle connections are probed so that one whose far end vanished without a
 * FIN (a host held in reset, which is what rejuvenation does) gets closed:
 * receive-only connections would otherwise never notice.
 */
export const KEEPALIVE_INITIAL_DELAY_MS = 10_000;

/**
 * Frames one connection has handled before every other gets its turn. The event loop reads each
 * ready socket in turn, but up to megabytes at a time (libuv reads a socket again and again while
 * it has data), and each frame is handled synchronously: a client or peer sending at network speed
 * had thousands of frames handled (a scan each, for a flood of READs) before any other
 * connection's next one. Beyond this many the socket is paused, and the rest of what it sent is
 * handled after the other connections' frames read meanwhile, this many at a time.
 */
export const MAX_FRAMES_PER_TURN = 32;

export interface FramedSocketOptions {
  /** Names the connection in problem descriptions: "connection from 127.0.0.1:40112". */
  label: string;
  maxFrameBytes: number;
  /** Frames to write; an outgoing link keeps one queue across its successive sockets. */
  queue: SendQueue;
  counters: NetCounters;
  /** Returns what is wrong with the frame, if anything, which closes the connection. */
  onFrame: (payload: Buffer) => string | undefined;
  /** Called at most once, just before the connection is closed for a problem. */
  onProblem: (description: string) => void;
  /** Frames handled before the other connections get a turn (default MAX_FRAMES_PER_TURN). */
  maxFramesPerTurn?: number;
}

export class FramedSocket {
  label: string;
  /** Settles once the socket is fully closed, whoever closed it. */
  readonly closed: Promise<void>;
  private readonly decoder: FrameDecoder;
  private waitingForDrain = false;
  private failed = false;
  /** Queued frames wait while the connection is still proving who it is. */
  private held = false;
  /** Writes are being gathered until the current input has been handled. */
  private corked = false;
  /** Paused after a turn's worth of frames, the rest of what was read waiting for the next. */
  private yielding = false;
  /** While set, nothing more is read or decoded (`holdInput`); cleared when it fires. */
  private inputHold: ReturnType<typeof setTimeout> | undefined;
  /** What was read but not decoded when the input was held, decoded when it is released. */
  private keptInput: Buffer | undefined;
  /** When the current hold ends (performance.now()). */
  private inputHeldUntilMs = 0;

  constructor(
    private readonly socket: Socket,
    private readonly options: FramedSocketOptions,
  ) {
    this.label = options.label;
    this.decoder = new FrameDecoder(options.maxFrameBytes);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, KEEPALIVE_INITIAL_DELAY_MS);
    this.closed = new Promise((resolve) =>
      socket.once("close", () => {
        clearTimeout(this.inputHold);
        this.inputHold = undefined;
        this.keptInput = undefined;
        resolve();
      }),
    );
    socket.on("data", (chunk: Buffer) => this.receive(chunk));
    // A reset or a timeout is followed by "close"; ordinary network weather, not a problem to report.
    socket.on("error", () => {});
    socket.on("drain", () => {
      this.waitingForDrain = false;
      this.pump();
    });
  }

  get open(): boolean {
    return !this.socket.destroyed;
  }

  /** Writes ahead of the queue; only for the hello, before anything is queued on this socket. */
  writeFirst(frame: Buffer): void {
    if (this.socket.destroyed) return;
    this.options.counters.bytesOut += frame.length;
    this.socket.write(frame);
  }

  send(frame: Buffer): void {
    this.options.counters.droppedFrames += this.options.queue.push(frame, performance.now());
    this.flush();
  }

  /** Writes what is queued; frames queued in one turn of the event loop leave in one write. */
  flush(): void {
    if (!this.corked && !this.socket.destroyed) {
      this.corked = true;
      this.socket.cork();
      setImmediate(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    this.pump();
  }

  /**
   * Reads and handles nothing more from this connection for `forMs` (the frames decoded so far in
   * this turn are handled). For a far end whose messages would all be dropped meanwhile: TCP pushes
   * back on it, and nothing is spent on what it sends. A second hold ends with the later of the two.
   */
  holdInput(forMs: number): void {
    if (this.socket.destroyed || !(forMs > 0)) return;
    const untilMs = performance.now() + forMs;
    if (this.inputHold !== undefined) {
      if (untilMs <= this.inputHeldUntilMs) return;
      clearTimeout(this.inputHold);
    } else this.options.counters.inputHolds++;
    this.inputHeldUntilMs = untilMs;
    this.inputHold = setTimeout(() => this.releaseInput(), forMs);
    this.updateFlow();
  }

  get inputHeld(): boolean {
    return this.inputHold !== undefined;
  }

  private releaseInput(): void {
    // Timers fire up to a couple of milliseconds early (libuv's loop time is whole milliseconds):
    // released then, the first frame kept would reach a core that still counts its sender in
    // debt, and be dropped.
    const earlyMs = this.inputHeldUntilMs - performance.now();
    if (earlyMs > 0) {
      this.inputHold = setTimeout(() => this.releaseInput(), Math.ceil(earlyMs));
      return;
    }
    this.inputHold = undefined;
    const kept = this.keptInput;
    this.keptInput = undefined;
    if (kept !== undefined) this.decode(kept);
    this.updateFlow();
  }

  /** Reading goes on only while this connection neither yields its turn nor is held. */
  private updateFlow(): void {
    if (this.socket.destroyed) return;
    if (this.yielding || this.inputHold !== undefined) this.socket.pause();
    else this.socket.resume();
  }

  /** Holds queued frames back until `release` (a handshake must come first). */
  hold(): void {
    this.held = true;
  }

  release(): void {
    this.held = false;
    this.pump();
  }

  setMaxFrameBytes(maxFrameBytes: number): void {
    this.decoder.setMaxFrameBytes(maxFrameBytes);
  }

  /** Moves queued frames into the socket until it asks us to wait. */
  pump(): void {
    const { queue, counters } = this.options;
    while (!this.held && !this.waitingForDrain && !this.socket.destroyed) {
      const frame = queue.shift();
      if (frame === undefined) return;
      counters.framesOut++;
      counters.bytesOut += frame.length;
      if (!this.socket.write(frame)) this.waitingForDrain = true;
    }
  }

  fail(description: string): void {
    if (this.failed || this.socket.destroyed) return;
    this.failed = true;
    this.options.onProblem(`${this.label}: ${description}`);
    this.socket.destroy();
  }

  destroy(): void {
    this.socket.destroy();
  }

  private receive(chunk: Buffer): void {
    if (this.socket.destroyed) return;
    this.options.counters.bytesIn += chunk.length;
    this.decode(chunk);
  }

  /** Handles the frames in `bytes`, up to a turn's worth; the rest after the others' turns. */
  private decode(bytes: Buffer): void {
    if (this.socket.destroyed) return;
    if (this.inputHold !== undefined) {
      // Held: kept whole for the release (a paused socket reads at most what was under way).
      this.keptInput =
        this.keptInput === undefined ? bytes : Buffer.concat([this.keptInput, bytes]);
      return;
    }
    const turn = this.options.maxFramesPerTurn ?? MAX_FRAMES_PER_TURN;
    let handled = 0;
    // Frame by frame: a hello raises the bound for the frames after it in the same chunk.
    const { error, rest } = this.decoder.push(bytes, (frame) => {
      const problem = this.options.onFrame(frame);
      if (problem !== undefined) this.fail(problem);
      handled++;
      // The frame's consumer may have closed everything.
      return !this.socket.destroyed && handled < turn && this.inputHold === undefined;
    });
    if (this.socket.destroyed) return;
    if (error !== undefined) {
      this.options.counters.oversizedFrames++;
      this.fail(error);
      return;
    }
    if (rest !== undefined && this.inputHold !== undefined) {
      this.keptInput = rest;
      return;
    }
    if (rest !== undefined) {
      if (!this.yielding) {
        this.yielding = true;
        this.options.counters.turnsYielded++;
        this.updateFlow();
      }
      // After the poll phase, which reads the other sockets ready meanwhile (not this one: it is
      // paused, and what it read is here).
      setImmediate(() => this.decode(rest));
      return;
    }
    if (this.yielding) {
      this.yielding = false;
      this.updateFlow();
    }
  }
}
