/**
 * A connection we dial and keep: hello first, then queued frames; redialed
 * with backoff whenever it fails or drops. Frames sent while it is down wait
 * in a bounded queue; frames already handed to a socket that then dies are
 * lost, as on any network (protocols above retransmit).
 */
import { createConnection, type Socket } from "node:net";
import { FramedSocket } from "./framed-socket.js";
import type { NetCounters } from "./net-counters.js";
import { ReconnectBackoff, type ReconnectDelayMs } from "./reconnect-backoff.js";
import {
  DEFAULT_MAX_QUEUED_AGE_WHILE_DOWN_MS,
  DEFAULT_MAX_QUEUED_BYTES_WHILE_DOWN,
  SendQueue,
} from "./send-queue.js";

/** A dial to a host that is off (not refusing) would otherwise wait out the kernel's SYN retries, minutes. */
export const CONNECT_TIMEOUT_MS = 5_000;

export interface OutboundLinkOptions {
  /** Names the far end in problem descriptions: "replica r2 (127.0.0.1:5001)". */
  label: string;
  host: string;
  port: number;
  /** The encoded hello frame, written first on every connection. */
  hello: Buffer;
  maxFrameBytes: number;
  maxQueuedBytes: number;
  /** The bound while not connected (default: `DEFAULT_MAX_QUEUED_BYTES_WHILE_DOWN`, at most `maxQueuedBytes`). */
  maxQueuedBytesWhileDown?: number;
  /** Frames queued while down older than this are dropped at reconnection (default: `DEFAULT_MAX_QUEUED_AGE_WHILE_DOWN_MS`). */
  maxQueuedAgeWhileDownMs?: number;
  reconnectDelayMs: ReconnectDelayMs;
  counters: NetCounters;
  /** Returns what is wrong with a frame from the far end, if anything, which closes the connection. */
  onFrame: (payload: Buffer) => string | undefined;
  /**
   * The far end's first frame is a challenge: the frame to answer it with (written before
   * anything queued), or what is wrong with it. Queued frames wait until it is answered.
   */
  answerChallenge?: (payload: Buffer) => { answer: Buffer } | { error: string };
  /**
   * A connection is up and ready for frames (hello written, challenge answered): a far end
   * that restarted remembers nothing of what went on the connection before.
   */
  onConnected?: () => void;
  onProblem: (description: string) => void;
}

export class OutboundLink {
  private readonly queue: SendQueue;
  private readonly backoff: ReconnectBackoff;
  private state: "idle" | "running" | "closed" = "idle";
  private socket: Socket | undefined;
  private framed: FramedSocket | undefined;
  private timer: NodeJS.Timeout | undefined;
  private dials = 0;
  private everConnected = false;
  private readonly whileDownBytes: number;

  constructor(private readonly options: OutboundLinkOptions) {
    this.whileDownBytes = Math.min(
      options.maxQueuedBytes,
      options.maxQueuedBytesWhileDown ?? DEFAULT_MAX_QUEUED_BYTES_WHILE_DOWN,
    );
    this.queue = new SendQueue(this.whileDownBytes);
    this.backoff = new ReconnectBackoff(options.reconnectDelayMs);
  }

  /** Connected and hello written (the far end may still refuse it and close). */
  get connected(): boolean {
    return this.framed?.open === true;
  }

  start(): void {
    if (this.state !== "idle") return;
    this.state = "running";
    this.dial();
  }

  /** Queues an encoded frame; written now if the connection is up and not pushing back. */
  send(frame: Buffer): void {
    if (this.state === "closed") return;
    this.options.counters.droppedFrames += this.queue.push(frame, performance.now());
    this.framed?.flush();
  }

  /**
   * The far end has just shown it is up (it dialed us): if this link is waiting out a backoff
   * to redial it, dial now with a fresh backoff. A replica rebooted by its board is otherwise
   * reached only after its peers' next redial, up to the backoff's maximum later.
   */
  redialNow(): void {
    if (this.state !== "running" || this.socket !== undefined || this.timer === undefined) return;
    clearTimeout(this.timer);
    this.backoff.reset();
    this.dial();
  }

  /** Stops redialing, drops what is queued, and resolves once the socket is closed. */
  async close(): Promise<void> {
    this.state = "closed";
    clearTimeout(this.timer);
    this.timer = undefined;
    this.queue.clear();
    const socket = this.socket;
    if (socket === undefined) return;
    const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
    socket.destroy();
    await closed;
  }

  private dial(): void {
    this.timer = undefined;
    if (this.state !== "running") return;
    const { options } = this;
    if (this.dials++ > 0) options.counters.reconnects++;
    const socket = createConnection({ host: options.host, port: options.port });
    this.socket = socket;
    let connectedAtMs: number | undefined;
    socket.setTimeout(CONNECT_TIMEOUT_MS, () => socket.destroy());
    // Refused or unreachable: "close" follows and we redial; the reconnects counter tells.
    socket.on("error", () => {});
    socket.once("connect", () => {
      socket.setTimeout(0);
      connectedAtMs = Date.now();
      this.queue.setMaxBytes(options.maxQueuedBytes);
      // Frames made long ago for a far end that went down: most likely for a process gone. (At
      // the first connection the far end is only starting: what waited is all for it.)
      if (this.everConnected)
        options.counters.droppedFrames += this.queue.dropQueuedBefore(
          performance.now() -
            (options.maxQueuedAgeWhileDownMs ?? DEFAULT_MAX_QUEUED_AGE_WHILE_DOWN_MS),
        );
      let challenged = options.answerChallenge !== undefined;
      const framed: FramedSocket = new FramedSocket(socket, {
        label: `connection to ${options.label}`,
        maxFrameBytes: options.maxFrameBytes,
        queue: this.queue,
        counters: options.counters,
        onFrame: (payload) => {
          if (!challenged || options.answerChallenge === undefined) return options.onFrame(payload);
          const reply = options.answerChallenge(payload);
          if ("error" in reply) return reply.error;
          challenged = false;
          framed.writeFirst(reply.answer);
          framed.release();
          this.everConnected = true;
          options.onConnected?.();
          return undefined;
        },
        onProblem: options.onProblem,
      });
      this.framed = framed;
      framed.writeFirst(options.hello);
      if (challenged) framed.hold();
      else {
        framed.pump();
        this.everConnected = true;
        options.onConnected?.();
      }
    });
    socket.once("close", () => {
      this.socket = undefined;
      this.framed = undefined;
      options.counters.droppedFrames += this.queue.setMaxBytes(this.whileDownBytes);
      // Only a connection that lasted restarts the backoff: a far end that accepts and
      // at once closes (it refuses our hello) must not be redialed every `initial` ms.
      const stable =
        connectedAtMs !== undefined && Date.now() - connectedAtMs >= options.reconnectDelayMs.max;
      if (stable) this.backoff.reset();
      if (this.state === "running") this.timer = setTimeout(() => this.dial(), this.backoff.next());
    });
  }
}
