/**
 * The key-value service's client over TCP: one connection per replica, one
 * request outstanding, answered once a quorum of replicas agree.
 */
import type { Testbed } from "@smw/wiring";
import type { KvOperation, KvResult } from "../kv/kv-operation.js";
import { ClientConnections } from "../net/client-connection.js";
import { KeyRing, type SignatureScheme, type Signer } from "../replica/key-ring.js";
import { quorumsFor } from "../replica/quorums.js";
import { type ClientAction, KvClientCore } from "./kv-client-core.js";

export interface KvClientOptions {
  id: string;
  replicas: Record<string, { host: string; port: number }>;
  /** Matching replies needed: the quorum q (1 for the unreplicated baseline). */
  replyQuorum: number;
  /** Matching answers an unordered read takes (`Quorums.unorderedRead`; default `replyQuorum`). */
  readQuorum?: number;
  scheme: SignatureScheme;
  signer: Signer;
  boardKeys: Map<string, string>;
  retransmitMs?: number;
  /** How long an unordered read waits for a quorum of matching answers before it is ordered (default 100 ms). */
  readTimeoutMs?: number;
  /**
   * Replies count only under a key lease with this much left (`KvClientConfig.leaseClockBoundMs`:
   * the testbed's `timeliness.clientClockBound`); undefined for the unreplicated baseline.
   */
  leaseClockBoundMs?: number;
  /** How long a board's lease lasts (`rejuvenation.keyLease`): each board's clock is read off its leases. */
  keyLeaseMs?: number;
}

export interface KvAnswer {
  result: KvResult;
  latencyMs: number;
}

/** A call the client was closed under: it may or may not have taken effect. */
export class KvClientClosedError extends Error {
  constructor() {
    super("the client was closed before a quorum answered");
    this.name = "KvClientClosedError";
  }
}

export class KvClient {
  private readonly core: KvClientCore;
  private readonly net: ClientConnections;
  private readonly started = performance.now();
  private closed = false;
  private waiting: { resolve: (a: KvAnswer) => void; reject: (e: Error) => void } | undefined;
  private timer: NodeJS.Timeout | undefined;

  private readonly leaseClockBoundMs: number | undefined;
  private readonly id: string;

  constructor(options: KvClientOptions) {
    this.leaseClockBoundMs = options.leaseClockBoundMs;
    this.id = options.id;
    const ids = Object.keys(options.replicas);
    this.core = new KvClientCore(
      {
        id: options.id,
        replicas: ids,
        replyQuorum: options.replyQuorum,
        ...(options.readQuorum === undefined ? {} : { readQuorum: options.readQuorum }),
        retransmitMs: options.retransmitMs ?? 500,
        // Shorter than a retransmission: answers that have not matched by then come from
        // replicas at different states, and ordering the read costs less than waiting.
        readTimeoutMs: options.readTimeoutMs ?? 100,
        // Request numbers from the wall clock: a restarted client never reuses one.
        firstTs: Date.now() * 1000,
        ...(options.leaseClockBoundMs === undefined
          ? {}
          : { leaseClockBoundMs: options.leaseClockBoundMs }),
        ...(options.keyLeaseMs === undefined ? {} : { keyLeaseMs: options.keyLeaseMs }),
      },
      new KeyRing(options.scheme, options.boardKeys, new Map()),
      options.signer,
    );
    this.net = new ClientConnections({
      clientId: options.id,
      replicas: options.replicas,
      proveHello: (signed) => options.signer.sign(signed),
    });
    this.net.on("message", (replica, payload) =>
      this.apply(this.core.onMessage(replica, payload, this.now())),
    );
    this.net.on("connected", (replica) => this.apply(this.core.onConnected(replica)));
  }

  static forTestbed(
    testbed: Testbed,
    options: Omit<
      KvClientOptions,
      "replicas" | "replyQuorum" | "readQuorum" | "leaseClockBoundMs" | "keyLeaseMs"
    > & { k?: number },
  ): KvClient {
    const replicas: Record<string, { host: string; port: number }> = {};
    for (const h of testbed.hosts) replicas[h.id] = h.address;
    const { quorum, unorderedRead } = quorumsFor(
      testbed.hosts.length,
      testbed.rejuvenation.kPrime,
      options.k ?? testbed.rejuvenation.k,
    );
    return new KvClient({
      ...options,
      replicas,
      replyQuorum: quorum,
      readQuorum: unorderedRead,
      leaseClockBoundMs: testbed.timeliness.clientClockBoundMs,
      keyLeaseMs: testbed.rejuvenation.keyLeaseMs,
    });
  }

  /** What the client's core counted: retransmits, reads widened or ordered, replies rejected by kind. */
  get counters(): ReadonlyMap<string, number> {
    return this.core.counters;
  }

  /** Message frames this client has read and written, over every connection, since it was made. */
  get frames(): number {
    const net = this.net.counters();
    return net.framesIn + net.framesOut;
  }

  /**
   * How far behind its boards' clocks this machine's clock was seen to be, at most (read off their
   * leases; 0: none). Each board's leases are judged by its own clock once it is seen ahead.
   */
  get clockBehindMs(): number {
    return this.core.clockBehindMs;
  }

  /** Matching answers this client's unordered reads take. */
  get readQuorum(): number {
    return this.core.readQuorum;
  }

  /** Reads sent unordered that had to be ordered (their answers came from different states). */
  get readsOrdered(): number {
    return this.core.counters.get("reads.ordered") ?? 0;
  }

  private now(): number {
    return performance.now() - this.started;
  }

  start(): void {
    this.net.start();
    this.apply(this.core.start());
    const tick = () => {
      this.apply(this.core.tick(this.now()));
      this.timer = setTimeout(tick, 20);
    };
    this.timer = setTimeout(tick, 20);
  }

  call(op: KvOperation, timeoutMs = 30_000): Promise<KvAnswer> {
    if (this.closed) return Promise.reject(new KvClientClosedError());
    if (this.waiting) return Promise.reject(new Error("one request at a time"));
    const refusedBefore = this.refusals();
    return new Promise<KvAnswer>((resolve, reject) => {
      const deadline = setTimeout(() => {
        this.waiting = undefined;
        this.core.abandon();
        reject(
          new Error(
            `no answer from a quorum of replicas within ${timeoutMs} ms${this.whyRefused(refusedBefore)}`,
          ),
        );
      }, timeoutMs);
      this.waiting = {
        resolve: (a) => {
          clearTimeout(deadline);
          resolve(a);
        },
        reject: (error) => {
          clearTimeout(deadline);
          reject(error);
        },
      };
      this.apply(this.core.submit(op, this.now()));
    });
  }

  /** The replies refused so far, by why (`rejected.*` counters). */
  private refusals(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [name, count] of this.core.counters)
      if (name.startsWith("rejected.")) out.set(name.slice(9), count);
    return out;
  }

  /**
   * What was refused since `before`, for a timeout's message: replies that came but did not count
   * say more than silence. Most of them without a lease points at this machine's clock.
   */
  private whyRefused(before: ReadonlyMap<string, number>): string {
    const since = [...this.refusals()]
      .map(([why, count]) => [why, count - (before.get(why) ?? 0)] as const)
      .filter(([, count]) => count > 0)
      .sort((a, b) => b[1] - a[1]);
    if (since.length === 0) return "";
    const list = since.map(([why, count]) => `${count} ${why}`).join(", ");
    const top = since[0]?.[0];
    const hint =
      top === "no-lease" && this.leaseClockBoundMs !== undefined
        ? `; replies under keys whose lease had less than ${this.leaseClockBoundMs} ms left by this machine's clock were not counted: check that its clock is within the testbed's timeliness.clientClockBound of the boards' (is NTP running?)`
        : top === "other-request"
          ? `; replicas answered this request's number with the result of another request of client ${this.id}: its request numbers were used before, by a client under the same id whose clock ran ahead of this one's (was the clock set back, or does a second client use this id?)`
          : "";
    return ` (replies refused meanwhile: ${list}${hint})`;
  }

  /**
   * Stops the client. A call still waiting fails at once ("closed"), its outcome unknown as on a
   * timeout: whoever stops a load against a service that no longer answers (a drill's fail-safe)
   * does not wait out every call's timeout.
   */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    const w = this.waiting;
    this.waiting = undefined;
    if (w !== undefined) {
      this.core.abandon();
      w.reject(new KvClientClosedError());
    }
    await this.net.close();
  }

  private apply(actions: ClientAction[]): void {
    for (const a of actions) {
      if (a.type === "send") this.net.send(a.to, a.message);
      else if (a.type === "complete") {
        const w = this.waiting;
        this.waiting = undefined;
        w?.resolve({ result: a.result, latencyMs: a.latencyMs });
      }
    }
  }
}
