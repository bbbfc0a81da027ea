/**
 * The client side of the protocol, without I/O: it signs a request, sends it
 * to every replica, and accepts a result once a quorum q of replicas sent the
 * same reply from the same execution, sequence number and batch (q, not k'+1: see
 * `replica/read-only.ts`). A read-only operation goes first as an unordered
 * READ to q_r replicas that have been answering (the read quorum: q, or more where
 * replicas are rejuvenated, `Quorums.unorderedRead`; to the rest as soon as those
 * cannot agree, or are slow; to all at once while that keeps happening), and is
 * ordered like any request when q_r matching answers do not come.
 * Replies are checked against the replicas' current keys, which it learns from board-signed certificates, or
 * carry a MAC under a session with the replica (`client-sessions.ts`: its half
 * signed by the replica, the client's signed by the client); retransmits until
 * answered. One request outstanding at a time.
 */

import { isReadOnly, type KvOperation, type KvResult } from "../kv/kv-operation.js";
import { canonicalJson } from "../replica/canonical.js";
import type { KeyRing, Signer } from "../replica/key-ring.js";
import { CLIENT_MAX_DOUBLINGS, resendWaitMs } from "../replica/large-resends.js";
import {
  type ClientRequest,
  clientSessionSigningBytes,
  encodeClientMessage,
  parseEnvelope,
  readDigest,
  requestDigest,
  requestFreshnessBytes,
} from "../replica/messages.js";
import { type KeyAgreement, Sessions } from "../replica/sessions.js";

export interface KvClientConfig {
  id: string;
  /** The replicas, in the testbed's order. */
  replicas: readonly string[];
  /** Matching replies needed: the quorum q (1 for the unreplicated baseline). */
  replyQuorum: number;
  /**
   * Matching answers an unordered read takes (`Quorums.unorderedRead`, q; default `replyQuorum`):
   * the lies among those counted at one instant are from at most k' replicas, as a host is reset
   * (where the adversary may leave it) only once its key's last lease lapsed.
   */
  readQuorum?: number;
  retransmitMs: number;
  /** How long an unordered read waits for q matching answers before it is ordered (default: retransmitMs). */
  readTimeoutMs?: number;
  /**
   * The shortest wait before an unordered read sent to q_r replicas goes to the rest (default
   * 30 ms); the wait is four times the smoothed latency of recent operations, at least this and
   * at most half the read timeout.
   */
  minWidenMs?: number;
  /** The first request number; a restarted client must not reuse numbers (use a clock). */
  firstTs: number;
  /**
   * Key leases (`KeyLease`): a reply counts only while the replier's board vouches for the key it
   * came under, with this much to spare for the client's clock against the boards'
   * (`timeliness.clientClockBound`). Undefined: no leases (the unreplicated baseline). A key
   * stolen from a host then stops speaking here a lease after its rejuvenation began, whatever
   * the network keeps from this client (SAFETY.md, "Key epochs").
   */
  leaseClockBoundMs?: number;
  /** The clock leases are read against, milliseconds since the epoch (default: `Date.now`). */
  wallClockMs?: () => number;
  /**
   * How long a board's lease lasts (`rejuvenation.keyLease`), to read each board's clock off its
   * leases: one that lapses more than a lease after this client's clock says that board's clock
   * is ahead of this one by at least the difference, and that board's leases are judged by this
   * clock plus it from then on (`clockBehindMs`). Undefined: not read.
   */
  keyLeaseMs?: number;
}

export type ClientAction =
  | { type: "send"; to: string; message: Buffer }
  | {
      type: "complete";
      ts: number;
      op: KvOperation;
      result: KvResult;
      latencyMs: number;
      /** An unordered read: the sequence number of the state its quorum read. */
      readAtSeq?: number;
    }
  | { type: "problem"; from: string; detail: string };

interface Outstanding {
  ts: number;
  op: KvOperation;
  /** The request, once ordered; undefined while an unordered read. */
  request: ClientRequest | undefined;
  /** While an unordered read: its digest, which every answer names. */
  readDigest: string | undefined;
  /** While an unordered read: the READ, encoded once (its digest is of these bytes). */
  readMessage: Buffer | undefined;
  /** Replicas that answered (an unordered read is ordered once q matching can no longer come). */
  answered: Set<string>;
  /** Replicas it went to so far: q_r replicas for an unordered read until widened, else all. */
  askedReplicas: Set<string>;
  /** An unordered read: when it goes to the replicas not asked yet, if not answered by then. */
  widenAtMs: number | undefined;
  /** An unordered read sent to q_r replicas only, its outcome not yet counted in `narrowMissRate`. */
  narrow: boolean;
  sentMs: number;
  retransmitAtMs: number;
  /** Times it was sent again: a large request waits twice as long each time (`large-resends.ts`). */
  retransmits: number;
  /**
   * "seq batch result" (a read: "result") -> the replicas that sent it, the states it held over,
   * and the key epoch each came under (a vote counts only while that key's lease does).
   */
  votes: Map<string, Map<string, Vote>>;
  /** "seq batch result" -> what it stands for. */
  answers: Map<string, { seq: number; result: KvResult }>;
}

/** States `since` to `seq`, over which an answer's result held (one state for an ordered reply). */
interface StateInterval {
  since: number;
  seq: number;
}

interface Vote extends StateInterval {
  /** The key epoch the answer came under. */
  epoch: number;
}

/**
 * The most of these answers (same result, one each from different replicas) whose intervals
 * meet, and the smallest sequence number at which that many do. An answer says its result is
 * the result of every state in its interval, so q answers that meet at s say it of the state
 * after s, and at least q - k' of them are correct (SAFETY.md, "Reads without ordering").
 */
export function mostMeeting(answers: readonly StateInterval[]): { count: number; at: number } {
  let best = { count: 0, at: 0 };
  // Intervals that meet anywhere all hold at the latest start among them.
  for (const { since: point } of answers) {
    let count = 0;
    for (const a of answers) if (a.since <= point && point <= a.seq) count++;
    if (count > best.count || (count === best.count && point < best.at))
      best = { count, at: point };
  }
  return best;
}

/** Above this share of reads sent to q_r replicas needing the rest, reads go to every replica. */
const NARROW_MISS_LIMIT = 0.25;
/** While reads go to every replica, one in this many still goes to q_r replicas. */
const NARROW_PROBE_EVERY = 8;

export class KvClientCore {
  private ts: number;
  /**
   * Per replica, how far its board's clock was seen to be ahead of this client's, at least, by each
   * lease received in the last four leases' time (each was issued before it came, so it lapses at
   * most a lease after the board's clock read then). Its leases are judged by this client's clock
   * plus the most of these: a lease that may still count is always among them, and a board whose
   * clock was set right again is read by it again four leases later.
   */
  private readonly boardAhead = new Map<string, Array<{ aheadMs: number; atMs: number }>>();
  /** The lease clock's last reading, and the core's time then: it never runs backwards. */
  private leaseClockMark: { wallMs: number; nowMs: number } | undefined;
  /** The core's time as last given (`submit`, `tick`, `onMessage`). */
  private coreNowMs = Number.NEGATIVE_INFINITY;
  private outstanding: Outstanding | undefined;
  private readonly keyQueryAtMs = new Map<string, number>();
  private readonly sessionSentAtMs = new Map<string, number>();
  readonly counters = new Map<string, number>();
  /** Session keys with the replicas, for MAC'd replies; the half's epoch is `firstTs`. */
  private readonly sessions: Sessions | undefined;
  private readonly sessionMessage: Buffer | undefined;
  /** Smoothed latency of completed operations (as TCP smooths its round-trip time). */
  private smoothedMs: number | undefined;
  /** Replicas that were asked and had not answered when their operation completed. */
  private readonly missed = new Set<string>();
  /** Where the next read's choice of q_r replicas starts, so that reads spread. */
  private readRotation = 0;
  /**
   * How often a read sent to q_r replicas lately needed the others too (smoothed, 0 to 1). While
   * writes keep the replicas at different states, q answers seldom match: reads then go to every
   * replica (a round trip saved), and one read in `NARROW_PROBE_EVERY` still goes to q_r to notice
   * when that changes.
   */
  private narrowMissRate = 0;
  private readsSinceProbe = 0;

  constructor(
    private readonly config: KvClientConfig,
    private readonly ring: KeyRing,
    signer: Signer,
  ) {
    this.ts = config.firstTs;
    if (ring.agreesKeys) {
      const sessions = new Sessions(
        config.id,
        config.firstTs,
        () => ring.newKeyAgreement() as KeyAgreement,
      );
      this.sessions = sessions;
      const signed = { client: config.id, ts: config.firstTs, dh: sessions.publicKey };
      this.sessionMessage = encodeClientMessage({
        type: "SESSION",
        ...signed,
        sig: signer.sign(clientSessionSigningBytes(signed)),
      });
    }
  }

  get busy(): boolean {
    return this.outstanding !== undefined;
  }

  /** Gives up on the outstanding request (its caller timed out); a late answer is ignored. */
  abandon(): void {
    this.outstanding = undefined;
  }

  /** Asks every replica for the certificates it knows, and offers its session half (do this first). */
  start(): ClientAction[] {
    const message = encodeClientMessage({ type: "KEYS_QUERY" });
    const out: ClientAction[] = this.config.replicas.map((to) => ({ type: "send", to, message }));
    const session = this.sessionMessage;
    if (session !== undefined)
      for (const to of this.config.replicas) out.push({ type: "send", to, message: session });
    return out;
  }

  /**
   * A connection to `replica` came up again: it may be a new process (restarted, rejuvenated)
   * with a new key and no session with us, which holds no request of ours until it has our half.
   * Without this it learnt our half only from a retransmission, and a replica restarted while
   * the others answered held none of our requests: made primary, it proposed nothing until every
   * client had retransmitted (a stall of the retransmission time in a rolling restart).
   */
  onConnected(replica: string): ClientAction[] {
    if (!this.config.replicas.includes(replica)) return [];
    this.count("connections.up");
    const out: ClientAction[] = [
      { type: "send", to: replica, message: encodeClientMessage({ type: "KEYS_QUERY" }) },
    ];
    if (this.sessionMessage !== undefined)
      out.push({ type: "send", to: replica, message: this.sessionMessage });
    return out;
  }

  submit(op: KvOperation, nowMs: number): ClientAction[] {
    this.coreNowMs = Math.max(this.coreNowMs, nowMs);
    if (this.outstanding) throw new Error("one request at a time");
    this.ts++;
    this.outstanding = {
      ts: this.ts,
      op,
      request: undefined,
      readDigest: undefined,
      readMessage: undefined,
      answered: new Set(),
      askedReplicas: new Set(),
      widenAtMs: undefined,
      narrow: false,
      sentMs: nowMs,
      retransmitAtMs: nowMs,
      retransmits: 0,
      votes: new Map(),
      answers: new Map(),
    };
    if (!isReadOnly(op)) return this.order(nowMs);
    const o = this.outstanding;
    o.readMessage = encodeClientMessage({ type: "READ", client: this.config.id, ts: this.ts, op });
    o.readDigest = readDigest(o.readMessage);
    const readTimeoutMs = this.config.readTimeoutMs ?? this.config.retransmitMs;
    o.retransmitAtMs = nowMs + readTimeoutMs;
    o.widenAtMs = nowMs + this.widenAfterMs(readTimeoutMs);
    const probe = ++this.readsSinceProbe >= NARROW_PROBE_EVERY;
    if (this.narrowMissRate > NARROW_MISS_LIMIT && !probe) {
      this.count("reads.to-all");
      return this.ask(this.config.replicas);
    }
    this.readsSinceProbe = 0;
    o.narrow = true;
    return this.ask(this.readTargets());
  }

  /** Matching answers an unordered read takes, and the replicas it asks first. */
  get readQuorum(): number {
    return this.config.readQuorum ?? this.config.replyQuorum;
  }

  /** Counts how a read sent to q_r replicas did: `missed`, it needed the others or ordering. */
  private noteNarrow(o: Outstanding, missed: boolean): void {
    if (!o.narrow) return;
    o.narrow = false;
    this.narrowMissRate = 0.875 * this.narrowMissRate + 0.125 * (missed ? 1 : 0);
  }

  /**
   * q_r replicas for an unordered read, in turn, leaving out those that missed their last
   * operation (a replica being rejuvenated would cost every read it is asked a wait).
   */
  private readTargets(): string[] {
    const { replicas } = this.config;
    const start = this.readRotation++ % replicas.length;
    const ring = [...replicas.slice(start), ...replicas.slice(0, start)];
    const answering = ring.filter((r) => !this.missed.has(r));
    return [...answering, ...ring.filter((r) => this.missed.has(r))].slice(0, this.readQuorum);
  }

  /** Four smoothed latencies, within [minWidenMs, timeoutMs / 2]: a reply that late is not coming soon. */
  private widenAfterMs(timeoutMs: number): number {
    const min = this.config.minWidenMs ?? 30;
    const wait = this.smoothedMs === undefined ? timeoutMs : 4 * this.smoothedMs;
    return Math.max(Math.min(min, timeoutMs / 2), Math.min(timeoutMs / 2, wait));
  }

  /** Sends the outstanding operation's message to `targets` not yet asked. */
  private ask(targets: readonly string[]): ClientAction[] {
    const o = this.outstanding;
    if (o === undefined) return [];
    const message = this.currentMessage();
    if (message === undefined) return [];
    const out: ClientAction[] = [];
    for (const to of targets) {
      if (o.askedReplicas.has(to)) continue;
      o.askedReplicas.add(to);
      out.push({ type: "send", to, message: this.withMac(message, to) });
    }
    return out;
  }

  /**
   * A request's copy for one replica carries a MAC under the session with it: the replica takes
   * the request on it, as its client's and sent since the replica started (SAFETY.md, "Where a
   * request comes from"). The request is not signed: a copy without a MAC (no session with that
   * replica yet) brings back the replica's half, and the copy goes again with one.
   */
  private withMac(message: Buffer, to: string): Buffer {
    const request = this.outstanding?.request;
    if (request === undefined || this.sessions === undefined) return message;
    const mac = this.sessions.macNewest(to, requestFreshnessBytes(request));
    if (mac === undefined) return message;
    return Buffer.concat([
      message.subarray(0, message.length - 1),
      Buffer.from(`,"mac":"${mac}"}`),
    ]);
  }

  private currentMessage(): Buffer | undefined {
    const o = this.outstanding;
    if (o === undefined) return undefined;
    if (o.request !== undefined)
      return encodeClientMessage({ type: "REQUEST", request: o.request });
    return o.readMessage;
  }

  /** An unordered read goes to the replicas not asked yet (once). */
  private widen(): ClientAction[] {
    const o = this.outstanding;
    if (o === undefined || o.widenAtMs === undefined) return [];
    o.widenAtMs = undefined;
    const out = this.ask(this.config.replicas);
    if (out.length > 0) {
      this.count("reads.widened");
      this.noteNarrow(o, true);
    }
    return out;
  }

  /** Sends the outstanding operation as a request to be ordered (a read: under a new number). */
  private order(nowMs: number): ClientAction[] {
    const o = this.outstanding;
    if (o === undefined) return [];
    if (o.readDigest !== undefined) {
      this.count("reads.ordered");
      this.noteNarrow(o, true);
      // Silent through a whole read timeout: missed, like a replica silent on a completed read.
      if (nowMs >= o.retransmitAtMs)
        for (const r of o.askedReplicas) if (!o.answered.has(r)) this.missed.add(r);
      this.ts++;
      o.ts = this.ts;
      o.readDigest = undefined;
      o.readMessage = undefined;
      o.answered.clear();
      o.votes.clear();
      o.answers.clear();
    }
    o.request = { client: this.config.id, ts: o.ts, op: o.op };
    o.askedReplicas.clear();
    o.widenAtMs = undefined;
    o.retransmitAtMs = nowMs + this.config.retransmitMs;
    // Every replica, not the primary alone: each backup then holds the request and times the
    // primary on it, and a request never depends on one replica passing it on.
    return this.ask(this.config.replicas);
  }

  tick(nowMs: number): ClientAction[] {
    this.coreNowMs = Math.max(this.coreNowMs, nowMs);
    const o = this.outstanding;
    if (o === undefined) return [];
    if (o.widenAtMs !== undefined && nowMs >= o.widenAtMs) return this.widen();
    if (nowMs < o.retransmitAtMs) return [];
    if (o.readDigest !== undefined) {
      this.count("reads.timed-out");
      return this.order(nowMs);
    }
    this.count("retransmits");
    const sizeBytes = this.currentMessage()?.length ?? 0;
    const waitMs = resendWaitMs(
      this.config.retransmitMs,
      sizeBytes,
      o.retransmits,
      CLIENT_MAX_DOUBLINGS,
    );
    o.retransmitAtMs = nowMs + waitMs;
    o.retransmits++;
    o.askedReplicas.clear();
    return [...this.start(), ...this.ask(this.config.replicas)];
  }

  onMessage(replica: string, bytes: Buffer, nowMs: number): ClientAction[] {
    this.coreNowMs = Math.max(this.coreNowMs, nowMs);
    const envelope = parseEnvelope(bytes);
    if (envelope === undefined || envelope.from !== replica) {
      this.count("rejected.malformed");
      return [{ type: "problem", from: replica, detail: "a reply that does not parse" }];
    }
    const { body } = envelope;
    if (body.type === "KEYS") {
      // Each certificate carries its board's signature: whoever relays it cannot forge one.
      for (const c of body.certificates) this.ring.install(c);
      return [];
    }
    if (body.type === "LEASE") {
      // Signed by the board, as certificates are: the envelope around it adds nothing.
      const verdict = this.ring.installLease(body.lease);
      if (verdict === "installed") {
        this.count("leases.installed");
        return this.readBoardClock(replica, body.lease.notAfterMs);
      }
      if (verdict !== "older") {
        this.count(`rejected.lease-${verdict}`);
        return [{ type: "problem", from: replica, detail: `a LEASE with ${verdict}` }];
      }
      return [];
    }
    if (body.type === "SESSION" && envelope.macs === undefined) {
      const verdict = this.ring.checkReplica(
        replica,
        envelope.epoch,
        envelope.signed,
        envelope.sig,
      );
      if (verdict === "unknown-epoch") return this.queryKeys(replica, nowMs);
      if (verdict !== "ok") {
        this.count(`rejected.${verdict}`);
        return [];
      }
      // A half new here (the replica started again, or took a new key): the request waiting
      // goes to it again at once, now with a MAC it can check.
      if (this.sessions?.learn(replica, envelope.epoch, body.dh) !== true) return [];
      this.count("sessions.learned");
      const o = this.outstanding;
      const message = this.currentMessage();
      if (o?.request === undefined || message === undefined || o.answered.has(replica)) return [];
      this.count("requests.sent-on-new-session");
      return [{ type: "send", to: replica, message: this.withMac(message, replica) }];
    }
    if (body.type !== "REPLY" && body.type !== "READ_REPLY") return [];
    // A reply to no request outstanding (most often one after the q that answered it) is
    // dropped before its signature costs anything: it could change nothing.
    const o = this.outstanding;
    if (
      o === undefined ||
      body.client !== this.config.id ||
      body.ts !== o.ts ||
      (body.type === "READ_REPLY") !== (o.readDigest !== undefined)
    ) {
      this.count("replies.late");
      return [];
    }
    if (body.type === "READ_REPLY" && body.op !== o.readDigest) {
      this.count("rejected.other-read");
      return [{ type: "problem", from: replica, detail: "a READ_REPLY to another read" }];
    }
    if (
      body.type === "REPLY" &&
      (o.request === undefined || body.op !== requestDigest(o.request))
    ) {
      // The result of another request under this number: this client's numbers were used before
      // (its clock set back, or a second process under its id). Never its own result.
      this.count("rejected.other-request");
      return [{ type: "problem", from: replica, detail: "a REPLY to another request" }];
    }
    const verdict =
      envelope.macs === undefined
        ? this.ring.checkReplica(replica, envelope.epoch, envelope.signed, envelope.sig)
        : this.checkMac(replica, envelope.epoch, envelope.signed, envelope.macs);
    if (verdict === "unknown-epoch") return this.queryKeys(replica, nowMs);
    if (verdict === "no-session" || verdict === "bad-mac") {
      // The replica has a half of ours we no longer hold, or we lack its current one: offer
      // ours again (it answers with its own); the retransmission gets a reply that checks.
      this.count(`rejected.${verdict}`);
      return this.offerSession(replica, nowMs);
    }
    if (verdict !== "ok") {
      this.count(`rejected.${verdict}`);
      return [{ type: "problem", from: replica, detail: `a REPLY with ${verdict}` }];
    }
    if (!this.leaseCovers(replica, envelope.epoch)) {
      // No lease on that key good for the client clock bound: a key its board no longer vouches
      // for (it was taken down, or certified a newer one) is not a voice, whatever it says. A
      // correct replica's lease follows within a quarter lease; ask for it, as for a key.
      this.count("rejected.no-lease");
      return this.queryKeys(replica, nowMs);
    }
    // Replies to a request match only on the same execution: the same sequence number and batch
    // (not one that a cold start lost and one after it, even at the same number: the batch's
    // origin names its proposer's key epoch, renewed by every cold start). Answers to a read
    // match on their result, once q of them name intervals of states that share one
    // (`mostMeeting`).
    const resultJson = canonicalJson(body.result);
    const key =
      body.type === "READ_REPLY" ? resultJson : `${body.seq} ${body.batch ?? "-"} ${resultJson}`;
    // A replica may vote for more than one result: after a cold start went back to a checkpoint,
    // a request is executed afresh and its new result must be able to outvote the lost one.
    // (A Byzantine replica gains nothing by it: it is one voter in each set.)
    o.answered.add(replica);
    this.missed.delete(replica);
    let voters = o.votes.get(key);
    if (voters === undefined) {
      voters = new Map();
      o.votes.set(key, voters);
      o.answers.set(key, { seq: body.seq, result: body.result });
    }
    // A replica's vote counts once; one that no longer counts (it came under a key since replaced,
    // or whose lease lapsed) gives way to this one, under a key that counts now.
    const held = voters.get(replica);
    if (held === undefined || !this.leaseCovers(replica, held.epoch))
      voters.set(replica, {
        since: body.type === "READ_REPLY" ? body.since : body.seq,
        seq: body.seq,
        epoch: envelope.epoch,
      });
    const meeting =
      body.type === "READ_REPLY"
        ? mostMeeting(this.counted(voters))
        : { count: this.counted(voters).length, at: body.seq };
    const needed = body.type === "READ_REPLY" ? this.readQuorum : this.config.replyQuorum;
    const agreedAt = meeting.count >= needed ? meeting.at : undefined;
    if (agreedAt === undefined) {
      if (o.readDigest === undefined) return [];
      let most = 0;
      for (const v of o.votes.values()) most = Math.max(most, mostMeeting(this.counted(v)).count);
      // A replica that missed its last read (down, recovering) is not counted on to answer:
      // waiting for it cost every read whose answers split the read timeout before ordering.
      const expected = (r: string) => !o.answered.has(r) && !this.missed.has(r);
      const asked = [...o.askedReplicas].filter(expected).length;
      const unasked = this.config.replicas.filter(
        (r) => !o.askedReplicas.has(r) && expected(r),
      ).length;
      // Those asked can no longer agree: ask the rest at once; if all of them cannot either, order.
      if (most + asked + unasked < this.readQuorum) return this.order(nowMs);
      if (most + asked < this.readQuorum) return this.widen();
      return [];
    }
    this.outstanding = undefined;
    this.learnFrom(o, nowMs);
    const { result } = o.answers.get(key) as { seq: number; result: KvResult };
    return [
      {
        type: "complete",
        ts: o.ts,
        op: o.op,
        result,
        latencyMs: nowMs - o.sentMs,
        ...(o.readDigest !== undefined ? { readAtSeq: agreedAt } : {}),
      },
    ];
  }

  /** After a completed operation: its latency, and who was asked and missed it. */
  private learnFrom(o: Outstanding, nowMs: number): void {
    const latencyMs = nowMs - o.sentMs;
    this.smoothedMs =
      this.smoothedMs === undefined ? latencyMs : 0.875 * this.smoothedMs + 0.125 * latencyMs;
    if (o.readDigest !== undefined) {
      this.noteNarrow(o, false);
      for (const r of o.askedReplicas) if (!o.answered.has(r)) this.missed.add(r);
    }
  }

  /**
   * The votes that count now: each only while the lease on the key it came under still covers it.
   * Judged when the quorum is, not only when the vote came: an operation answered over several
   * moves of the adversary (a write whose correct replies the network holds back, retransmitted
   * for as long as that takes) would otherwise gather a vote from each host the adversary held in
   * turn, and q of them forge its result (SAFETY.md, "Key epochs": revocation at clients).
   */
  private counted(voters: ReadonlyMap<string, Vote>): Vote[] {
    const out: Vote[] = [];
    for (const [replica, vote] of voters) if (this.leaseCovers(replica, vote.epoch)) out.push(vote);
    return out;
  }

  private leaseCovers(replica: string, epoch: number): boolean {
    const boundMs = this.config.leaseClockBoundMs;
    if (boundMs === undefined) return true;
    const atMs = this.leaseClockMs();
    return this.ring.leaseCovers(replica, epoch, atMs + this.boardAheadOf(replica, atMs) + boundMs);
  }

  /** The most `replica`'s board was seen ahead by leases in the window (0 if none or behind). */
  private boardAheadOf(replica: string, atMs: number): number {
    const samples = this.boardAhead.get(replica);
    if (samples === undefined) return 0;
    const windowMs = 4 * (this.config.keyLeaseMs ?? 0);
    while (samples.length > 0 && atMs - (samples[0] as { atMs: number }).atMs > windowMs)
      samples.shift();
    let most = 0;
    for (const s of samples) most = Math.max(most, s.aheadMs);
    return most;
  }

  /**
   * The wall clock leases are read by, never behind where it was plus the core's time since: a
   * clock set back (by hand, by a time service) does not make a lapsed lease count again.
   */
  private leaseClockMs(): number {
    const wallMs = (this.config.wallClockMs ?? Date.now)();
    const mark = this.leaseClockMark;
    const nowMs = Number.isFinite(this.coreNowMs) ? this.coreNowMs : 0;
    const atMs = mark === undefined ? wallMs : Math.max(wallMs, mark.wallMs + (nowMs - mark.nowMs));
    this.leaseClockMark = { wallMs: atMs, nowMs };
    return atMs;
  }

  /**
   * A verified lease from `replica`'s board, lapsing at `notAfterMs`: its board's clock read at
   * least `notAfterMs − keyLease` when it was issued, before it came. A board seen ahead of this
   * clock has its leases judged by its own clock from then on, so a client whose clock is behind
   * the boards' (beyond the bound the testbed promises) counts no lease past its lapse.
   */
  private readBoardClock(replica: string, notAfterMs: number): ClientAction[] {
    const keyLeaseMs = this.config.keyLeaseMs;
    if (keyLeaseMs === undefined || this.config.leaseClockBoundMs === undefined) return [];
    const atMs = this.leaseClockMs();
    const aheadMs = notAfterMs - keyLeaseMs - atMs;
    const known = this.boardAheadOf(replica, atMs);
    const samples = this.boardAhead.get(replica) ?? [];
    samples.push({ aheadMs, atMs });
    this.boardAhead.set(replica, samples);
    this.clockBehindMs = Math.max(this.clockBehindMs, aheadMs);
    // Said when it grows past the bound: not for every renewal.
    if (aheadMs <= Math.max(known, this.config.leaseClockBoundMs)) return [];
    this.count("clock.behind-a-board");
    return [
      {
        type: "problem",
        from: replica,
        detail: `this machine's clock is at least ${Math.round(aheadMs)} ms behind the clock of ${replica}'s board, more than the client clock bound (${this.config.leaseClockBoundMs} ms): its leases are read by its board's clock`,
      },
    ];
  }

  /** How far behind its boards' clocks this client's clock was seen to be, at most over them (0: none). */
  clockBehindMs = 0;

  private checkMac(
    replica: string,
    epoch: number,
    bytes: Buffer,
    macs: ReadonlyMap<string, string>,
  ): "ok" | "stale-epoch" | "unknown-epoch" | "revoked-key" | "no-session" | "bad-mac" {
    const epochVerdict = this.ring.checkEpoch(replica, epoch);
    if (epochVerdict !== "ok") return epochVerdict;
    const mac = macs.get(this.config.id);
    if (this.sessions === undefined || mac === undefined) return "bad-mac";
    return this.sessions.check(replica, epoch, bytes, mac);
  }

  private offerSession(replica: string, nowMs: number): ClientAction[] {
    const last = this.sessionSentAtMs.get(replica);
    if (this.sessionMessage === undefined) return [];
    if (last !== undefined && nowMs - last < this.config.retransmitMs) return [];
    this.sessionSentAtMs.set(replica, nowMs);
    return [{ type: "send", to: replica, message: this.sessionMessage }];
  }

  private queryKeys(replica: string, nowMs: number): ClientAction[] {
    const last = this.keyQueryAtMs.get(replica);
    if (last !== undefined && nowMs - last < this.config.retransmitMs) return [];
    this.keyQueryAtMs.set(replica, nowMs);
    return [{ type: "send", to: replica, message: encodeClientMessage({ type: "KEYS_QUERY" }) }];
  }

  private count(name: string): void {
    this.counters.set(name, (this.counters.get(name) ?? 0) + 1);
  }
}
