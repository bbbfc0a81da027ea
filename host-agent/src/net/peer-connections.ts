/**
 * A replica's connections: it listens for other replicas and for clients,
 * and keeps one outgoing connection to each peer replica. Replicas receive
 * from a peer on the connection that peer dialed and send on the one they
 * dialed themselves, so both directions work the same way and neither side
 * has to decide which of two crossing connections wins. Clients get their
 * replies on the connection they dialed.
 *
 * Who is on the other end is only claimed (by the hello); payloads carry
 * their own signatures. This layer bounds, frames and queues.
 */
import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import { createServer, type Server, type Socket } from "node:net";
import { encodeFrame } from "./frame-codec.js";
import { FramedSocket } from "./framed-socket.js";
import {
  CHALLENGE_BYTES,
  encodeChallenge,
  encodeHello,
  type Hello,
  helloProofBytes,
  MAX_PRE_HELLO_FRAME_BYTES,
  parseHello,
  parseProof,
  quoteForLog,
} from "./hello.js";
import { type LinkLimits, resolveLinkLimits } from "./link-limits.js";
import { type NetCounters, zeroCounters } from "./net-counters.js";
import { OutboundLink } from "./outbound-link.js";
import type { ReconnectDelayMs } from "./reconnect-backoff.js";
import { SendQueue } from "./send-queue.js";

export type { Hello } from "./hello.js";
export type { NetCounters } from "./net-counters.js";

export interface ConnectionsOptions {
  /** Own replica id. */
  self: string;
  /** Port 0 picks a free port; `address()` tells which. */
  listen: { host: string; port: number };
  /** The other replicas, each dialed by us; must not include `self`. */
  peers: Record<string, { host: string; port: number }>;
  /** Default 8 MiB. */
  maxFrameBytes?: number;
  /** Default 50 ms doubling to 2000 ms, with jitter. */
  reconnectDelayMs?: ReconnectDelayMs;
  /** Default 64 MiB; beyond it the oldest queued frames are dropped and counted. Also bounds each client connection. */
  maxQueuedBytesPerPeer?: number;
  /** Default 5000 ms: a connection that has not said hello (and proven it) by then is closed. */
  helloTimeoutMs?: number;
  /**
   * Checks a client's proof of its hello: its signature over `helloProofBytes`. Without it,
   * clients are taken at their word (a node that serves no replies worth keeping).
   */
  verifyClient?: (clientId: string, signed: Buffer, proof: string) => boolean;
  /** Default 4 MiB: replies a client connection has not read; beyond, the oldest are dropped. */
  maxQueuedBytesPerClient?: number;
  /** Default 512 connections accepted at once, and 64 from any one address. */
  maxInbound?: number;
  maxInboundPerAddress?: number;
}

export interface PeerConnectionsEvents {
  message: [from: Hello, payload: Buffer];
  /** Something the other end did wrong; that connection is closed, the node keeps serving. */
  problem: [description: string];
}

interface Inbound {
  framed: FramedSocket;
  remote: string;
  address: string;
  hello: Hello | undefined;
  /** A client's hello waiting for its proof: the challenge it must sign. */
  challenged: { hello: Hello; challenge: Buffer } | undefined;
  helloTimer: NodeJS.Timeout | undefined;
}

export class PeerConnections extends EventEmitter<PeerConnectionsEvents> {
  private readonly limits: LinkLimits;
  private readonly stats: NetCounters = zeroCounters();
  private readonly links = new Map<string, OutboundLink>();
  private readonly inbound = new Set<Inbound>();
  /** Client id → its connections (more than one while a reconnect overlaps a dying one). */
  private readonly clients = new Map<string, Set<Inbound>>();
  /** Until when (performance.now()) each held client's input is left unread (`holdClient`). */
  private readonly clientsHeldUntilMs = new Map<string, number>();
  private readonly server: Server;
  private state: "new" | "starting" | "running" | "closed" = "new";
  private closing: Promise<void> | undefined;

  constructor(private readonly options: ConnectionsOptions) {
    super();
    this.limits = resolveLinkLimits({
      maxFrameBytes: options.maxFrameBytes,
      reconnectDelayMs: options.reconnectDelayMs,
      maxQueuedBytes: options.maxQueuedBytesPerPeer,
      helloTimeoutMs: options.helloTimeoutMs,
    });
    if (options.self.length === 0) throw new RangeError("self (the replica id) is empty");
    if (Object.hasOwn(options.peers, options.self))
      throw new RangeError(`peers must not include this replica (${quoteForLog(options.self)})`);
    const hello = encodeFrame(encodeHello({ role: "replica", id: options.self }));
    for (const [id, { host, port }] of Object.entries(options.peers)) {
      this.links.set(
        id,
        new OutboundLink({
          label: `replica ${id} (${host}:${port})`,
          host,
          port,
          hello,
          maxFrameBytes: this.limits.maxFrameBytes,
          maxQueuedBytes: this.limits.maxQueuedBytes,
          reconnectDelayMs: this.limits.reconnectDelayMs,
          counters: this.stats,
          // The peer sends to us on the connection it dialed; this one is ours to write.
          onFrame: () =>
            `replica ${id} sent a frame on the connection we dialed; replicas send on their own`,
          onProblem: (description) => this.emit("problem", description),
        }),
      );
    }
    this.server = createServer((socket) => this.accept(socket));
  }

  /** Listens, then dials every peer; rejects if the address cannot be bound. */
  async start(): Promise<void> {
    if (this.state !== "new") throw new Error("start() can be called only once, before close()");
    this.state = "starting";
    const { host, port } = this.options.listen;
    const server = this.server;
    await new Promise<void>((resolve, reject) => {
      const done = (error?: NodeJS.ErrnoException) => {
        server.off("error", done);
        server.off("close", closedMeanwhile);
        if (error === undefined) resolve();
        else
          reject(
            new Error(
              `cannot listen on ${host}:${port}: ${error.code === "EADDRINUSE" ? "the port is in use" : error.message}`,
            ),
          );
      };
      // close() during listen: Node then never reports "listening".
      const closedMeanwhile = () => done();
      server.once("error", done);
      server.once("close", closedMeanwhile);
      server.listen(port, host, () => done());
    });
    server.on("error", (error) => this.emit("problem", `listening socket: ${error.message}`));
    if (this.state !== "starting") return;
    this.state = "running";
    for (const link of this.links.values()) link.start();
  }

  /** Destroys every socket and the server and stops every timer; resolves once all are closed. */
  close(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  /** The bound address (with the real port when `listen.port` was 0). */
  address(): { host: string; port: number } {
    const address = this.server.address();
    if (address === null || typeof address === "string") throw new Error("not listening");
    return { host: address.address, port: address.port };
  }

  /** Queued while the peer is unreachable; written as fast as the peer reads. */
  sendToReplica(id: string, payload: Buffer): void {
    const link = this.links.get(id);
    if (link === undefined) throw new RangeError(`there is no peer replica ${quoteForLog(id)}`);
    const frame = this.frameOrRefuse(payload, `replica ${id}`);
    if (frame !== undefined) link.send(frame);
  }

  /** Over every connection the client has open to us; dropped (and counted) if it has none. */
  sendToClient(clientId: string, payload: Buffer): void {
    const frame = this.frameOrRefuse(payload, `client ${quoteForLog(clientId)}`);
    if (frame === undefined) return;
    const connections = this.clients.get(clientId);
    if (connections === undefined || this.state === "closed") {
      this.stats.droppedFrames++;
      return;
    }
    for (const connection of connections) connection.framed.send(frame);
  }

  /**
   * Leaves the client's connections unread for `forMs`, and any it opens meanwhile: what it sends
   * until then would be dropped unread anyway (a client in debt, `client-allowance.ts`).
   */
  holdClient(clientId: string, forMs: number): void {
    if (!(forMs > 0)) return;
    const untilMs = performance.now() + forMs;
    if (untilMs > (this.clientsHeldUntilMs.get(clientId) ?? 0))
      this.clientsHeldUntilMs.set(clientId, untilMs);
    for (const connection of this.clients.get(clientId) ?? []) connection.framed.holdInput(forMs);
  }

  /**
   * The payload framed, or undefined (counted, and said) if it is larger than a frame may be:
   * the far end would close the connection on it. What the protocol makes of a client's data (a
   * scan's answer, a batch of large writes) can be; sending it must not end the process, which
   * throwing here did, from inside a connection's handler.
   */
  private frameOrRefuse(payload: Buffer, to: string): Buffer | undefined {
    if (payload.length <= this.limits.maxFrameBytes) return encodeFrame(payload);
    this.stats.framesTooLarge++;
    this.emit(
      "problem",
      `a message of ${payload.length} bytes for ${to} is larger than a frame may be (${this.limits.maxFrameBytes} bytes): not sent`,
    );
    return undefined;
  }

  /** Peers our outgoing connection is currently up to. */
  connectedReplicas(): string[] {
    return [...this.links].filter(([, link]) => link.connected).map(([id]) => id);
  }

  counters(): NetCounters {
    return { ...this.stats };
  }

  private accept(socket: Socket): void {
    if (this.state === "closed") {
      socket.destroy();
      return;
    }
    const remote = `${socket.remoteAddress}:${socket.remotePort}`;
    const address = socket.remoteAddress ?? "?";
    let fromAddress = 0;
    for (const e of this.inbound) if (e.address === address) fromAddress++;
    const { maxInbound = 512, maxInboundPerAddress = 64 } = this.options;
    if (this.inbound.size >= maxInbound || fromAddress >= maxInboundPerAddress) {
      this.stats.rejectedConnections++;
      this.emit(
        "problem",
        `connection from ${remote} refused: ${fromAddress >= maxInboundPerAddress ? `${fromAddress} open from that address` : `${this.inbound.size} open`}`,
      );
      socket.destroy();
      return;
    }
    const framed = new FramedSocket(socket, {
      label: `connection from ${remote}`,
      // Until the hello is proven, nothing longer than a hello or a proof is read.
      maxFrameBytes: Math.min(MAX_PRE_HELLO_FRAME_BYTES, this.limits.maxFrameBytes),
      queue: new SendQueue(this.options.maxQueuedBytesPerClient ?? 4 * 1024 * 1024),
      counters: this.stats,
      onFrame: (payload) => {
        if (entry.challenged !== undefined) return this.checkProof(entry, payload);
        if (entry.hello === undefined) return this.admit(entry, payload);
        this.stats.framesIn++;
        this.emit("message", entry.hello, payload);
        return undefined;
      },
      onProblem: (description) => {
        if (entry.hello === undefined) this.stats.rejectedConnections++;
        this.emit("problem", description);
      },
    });
    const helloTimeoutMs = this.limits.helloTimeoutMs;
    const entry: Inbound = {
      framed,
      remote,
      address,
      hello: undefined,
      challenged: undefined,
      helloTimer: setTimeout(
        () => framed.fail(`no hello within ${helloTimeoutMs} ms`),
        helloTimeoutMs,
      ),
    };
    this.inbound.add(entry);
    socket.once("close", () => {
      clearTimeout(entry.helloTimer);
      this.inbound.delete(entry);
      if (entry.hello?.role !== "client") return;
      const connections = this.clients.get(entry.hello.id);
      connections?.delete(entry);
      if (connections?.size === 0) this.clients.delete(entry.hello.id);
    });
  }

  /** Takes the first frame as the hello; returns what is wrong with it, if anything. */
  private admit(entry: Inbound, payload: Buffer): string | undefined {
    const hello = parseHello(payload);
    if ("error" in hello) return hello.error;
    if (hello.role === "replica" && !this.links.has(hello.id))
      return `the hello names replica ${quoteForLog(hello.id)}, which is not a peer of ${this.options.self}`;
    if (hello.role === "client" && this.options.verifyClient !== undefined) {
      // A claim until proven: challenge it; its replies go nowhere before the proof.
      const challenge = randomBytes(CHALLENGE_BYTES);
      entry.challenged = { hello, challenge };
      entry.framed.writeFirst(encodeFrame(encodeChallenge(challenge)));
      return undefined;
    }
    return this.establish(entry, hello);
  }

  /** The client's signature over the challenge: it is who its hello said. */
  private checkProof(entry: Inbound, payload: Buffer): string | undefined {
    const { hello, challenge } = entry.challenged as { hello: Hello; challenge: Buffer };
    const proof = parseProof(payload);
    if (typeof proof !== "string") return proof.error;
    const signed = helloProofBytes(this.options.self, hello.id, challenge);
    if (!this.options.verifyClient?.(hello.id, signed, proof))
      return `the hello of client ${quoteForLog(hello.id)} is not proven by its key`;
    entry.challenged = undefined;
    return this.establish(entry, hello);
  }

  private establish(entry: Inbound, hello: Hello): undefined {
    entry.framed.setMaxFrameBytes(this.limits.maxFrameBytes);
    clearTimeout(entry.helloTimer);
    entry.helloTimer = undefined;
    // Frozen: every message from this connection shares it with listeners.
    entry.hello = Object.freeze(hello);
    entry.framed.label = `connection from ${hello.role} ${hello.id} (${entry.remote})`;
    if (hello.role === "client") {
      const connections = this.clients.get(hello.id) ?? new Set<Inbound>();
      connections.add(entry);
      this.clients.set(hello.id, connections);
      const heldUntilMs = this.clientsHeldUntilMs.get(hello.id);
      if (heldUntilMs !== undefined) {
        const forMs = heldUntilMs - performance.now();
        if (forMs > 0) entry.framed.holdInput(forMs);
        else this.clientsHeldUntilMs.delete(hello.id);
      }
    } else {
      // A peer that dials us is up: our link to it need not wait out its backoff.
      this.links.get(hello.id)?.redialNow();
    }
    return undefined;
  }

  private async shutDown(): Promise<void> {
    this.state = "closed";
    const closing: Promise<void>[] = [...this.links.values()].map((link) => link.close());
    for (const entry of this.inbound) {
      clearTimeout(entry.helloTimer);
      entry.framed.destroy();
      closing.push(entry.framed.closed);
    }
    // The callback runs (with an error we do not need) even if the server never listened.
    closing.push(new Promise((resolve) => this.server.close(() => resolve())));
    await Promise.all(closing);
    this.clients.clear();
    this.clientsHeldUntilMs.clear();
  }
}
