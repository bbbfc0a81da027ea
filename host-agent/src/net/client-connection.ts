/**
 * A client's connections to the replicas: one dialed and kept per replica,
 * hello `{role: "client"}` first, redialed with backoff; replies come back
 * on the same connection. Requests sent while a replica is unreachable wait
 * in a bounded queue, like a replica's messages to its peers.
 */
import { EventEmitter } from "node:events";
import { encodeFrame } from "./frame-codec.js";
import {
  CLIENT_ID_PATTERN,
  encodeHello,
  encodeProof,
  helloProofBytes,
  parseChallenge,
  quoteForLog,
} from "./hello.js";
import { encodeBoundedFrame, type LinkLimits, resolveLinkLimits } from "./link-limits.js";
import { type NetCounters, zeroCounters } from "./net-counters.js";
import { OutboundLink } from "./outbound-link.js";
import type { ReconnectDelayMs } from "./reconnect-backoff.js";

export interface ClientConnectionsOptions {
  /** Matches ^[A-Za-z0-9_.-]{1,64}$. */
  clientId: string;
  /** Replica id → where it listens. */
  replicas: Record<string, { host: string; port: number }>;
  /** Default 8 MiB. */
  maxFrameBytes?: number;
  /** Default 50 ms doubling to 2000 ms, with jitter. */
  reconnectDelayMs?: ReconnectDelayMs;
  /** Default 64 MiB; beyond it the oldest queued frames are dropped and counted. */
  maxQueuedBytesPerReplica?: number;
  /**
   * Signs with the client's key, to prove the hello to replicas that challenge it (a replica
   * routes a client's replies only to a connection that has proven it is that client).
   */
  proveHello?: (signed: Buffer) => string;
}

export interface ClientConnectionsEvents {
  message: [replicaId: string, payload: Buffer];
  /** A connection to this replica came up (again): it may be a new process that knows nothing of us. */
  connected: [replicaId: string];
  /** Something a replica's end did wrong (an oversized frame); that connection is closed and redialed. */
  problem: [description: string];
}

export class ClientConnections extends EventEmitter<ClientConnectionsEvents> {
  private readonly limits: LinkLimits;
  private readonly stats: NetCounters = zeroCounters();
  private readonly links = new Map<string, OutboundLink>();
  private closing: Promise<void> | undefined;

  constructor(options: ClientConnectionsOptions) {
    super();
    if (!CLIENT_ID_PATTERN.test(options.clientId))
      throw new RangeError(
        `client id ${quoteForLog(options.clientId)} must match ${CLIENT_ID_PATTERN.source}`,
      );
    this.limits = resolveLinkLimits({
      maxFrameBytes: options.maxFrameBytes,
      reconnectDelayMs: options.reconnectDelayMs,
      maxQueuedBytes: options.maxQueuedBytesPerReplica,
    });
    const hello = encodeFrame(encodeHello({ role: "client", id: options.clientId }));
    for (const [replicaId, { host, port }] of Object.entries(options.replicas)) {
      this.links.set(
        replicaId,
        new OutboundLink({
          label: `replica ${replicaId} (${host}:${port})`,
          host,
          port,
          hello,
          maxFrameBytes: this.limits.maxFrameBytes,
          maxQueuedBytes: this.limits.maxQueuedBytes,
          reconnectDelayMs: this.limits.reconnectDelayMs,
          counters: this.stats,
          onFrame: (payload) => {
            this.stats.framesIn++;
            this.emit("message", replicaId, payload);
            return undefined;
          },
          onProblem: (description) => this.emit("problem", description),
          onConnected: () => this.emit("connected", replicaId),
          ...(options.proveHello === undefined
            ? {}
            : {
                answerChallenge: (payload: Buffer) => {
                  const challenge = parseChallenge(payload);
                  if (!Buffer.isBuffer(challenge)) return challenge;
                  const signed = helloProofBytes(replicaId, options.clientId, challenge);
                  const proof = (options.proveHello as (b: Buffer) => string)(signed);
                  return { answer: encodeFrame(encodeProof(proof)) };
                },
              }),
        }),
      );
    }
  }

  /** Dials every replica; returns at once, connections come up in the background. */
  start(): void {
    if (this.closing !== undefined) throw new Error("start() after close()");
    for (const link of this.links.values()) link.start();
  }

  send(replicaId: string, payload: Buffer): void {
    const link = this.links.get(replicaId);
    if (link === undefined) throw new RangeError(`there is no replica ${quoteForLog(replicaId)}`);
    link.send(encodeBoundedFrame(payload, this.limits.maxFrameBytes));
  }

  broadcast(payload: Buffer): void {
    const frame = encodeBoundedFrame(payload, this.limits.maxFrameBytes);
    for (const link of this.links.values()) link.send(frame);
  }

  /** Replicas whose connection is up (and hello written). */
  connectedCount(): number {
    let count = 0;
    for (const link of this.links.values()) if (link.connected) count++;
    return count;
  }

  counters(): NetCounters {
    return { ...this.stats };
  }

  /** Destroys every socket and stops redialing; resolves once all are closed. */
  close(): Promise<void> {
    this.closing ??= Promise.all([...this.links.values()].map((link) => link.close())).then(
      () => undefined,
    );
    return this.closing;
  }
}
