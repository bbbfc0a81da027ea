/**
 * One replica of the BFT state machine replication protocol, as a pure state
 * machine: events in (a message, a client message, the passing of time, a
 * command from the host agent), actions out (send, reply, persist, report).
 * It does no I/O and reads no clock, so a whole cluster runs in one process
 * from a seed and replays exactly.
 *
 * PBFT's normal case (pre-prepare, prepare, commit, with batching) with
 * hybrid quorums; checkpoints every C sequence numbers made stable by a
 * quorum; view changes on a suspected primary and planned hand-offs when the
 * primary's host is about to be rejuvenated; state transfer by partitions and
 * a log suffix for replicas that are behind or recovering; key epochs.
 */
import { createHash } from "node:crypto";
import type { KeyCertificate } from "@smw/wiring";
import type { KvResult } from "../kv/kv-operation.js";
import type { KvSnapshot } from "../kv/kv-snapshot.js";
import { KvStore } from "../kv/kv-store.js";
import { ClientTable, checkpointDigest } from "./client-table.js";
import type { KeyRing, Signer } from "./key-ring.js";
import {
  type BatchBody,
  batchDigest,
  type ClientMessage,
  type ClientRequest,
  type ClientTableEntry,
  type ExecutedEntry,
  parseClientMessage,
  parseEnvelope,
  type ReplicaBody,
  type ReplicaEnvelope,
  requestDigest,
  requestSigningBytes,
  type SeqDigest,
  sealEnvelope,
  type ViewSeqDigest,
} from "./messages.js";
import type { Quorums } from "./quorums.js";
import { StateTransfer } from "./state-transfer.js";
import { decideNewView, type ViewChangeBody, viewChangeFault } from "./view-change.js";

export interface ReplicaConfig {
  /** All replicas in order: the primary of view v is ids[v mod n]. */
  ids: readonly string[];
  self: string;
  quorums: Quorums;
  /** C: a checkpoint every C sequence numbers. */
  checkpointInterval: number;
  batchMax: number;
  /** Sequence numbers a primary may have proposed but not yet executed. */
  maxInFlight: number;
  viewChangeTimeoutMs: number;
  statusIntervalMs: number;
  /** Longest EXECUTED or PARTS reply, in bytes of payload. */
  maxReplyBytes: number;
  /**
   * The groups the boards rejuvenate, in their order (the testbed's rejuvenation order);
   * default: the replicas in id order, k per group.
   */
  rejuvenationGroups?: ReadonlyArray<readonly string[]>;
}

export interface StartingState {
  /** The stored checkpoint, if one was found and decoded (not trusted when recovering). */
  checkpoint?: { seq: number; snapshot: KvSnapshot; clients: ClientTableEntry[] };
  /** A rejuvenated replica does not trust its stored state: it recovers from its peers first. */
  recovering: boolean;
  /** Keys revoked so far, as the board told its host (see `revokeKeys`). */
  revokedKeys?: ReadonlyArray<{ host: string; before: number }>;
}

export type ProblemKind =
  | "malformed"
  | "bad-signature"
  | "stale-epoch"
  | "unknown-epoch"
  | "revoked-key"
  | "unknown-client"
  | "bad-request"
  | "bad-pre-prepare"
  | "bad-view-change"
  | "bad-new-view"
  | "bad-transfer-reply"
  | "bad-certificate"
  | "view-out-of-window"
  | "handler-fault"
  | "diverged";

export type ReplicaAction =
  | { type: "send"; to: string; message: Buffer }
  | { type: "broadcast"; message: Buffer }
  | { type: "reply"; client: string; message: Buffer }
  | {
      type: "executed";
      seq: number;
      view: number;
      digest: string;
      requests: readonly ClientRequest[];
      /** Per request: its result, or undefined if it was a duplicate and not executed again. */
      results: ReadonlyArray<KvResult | undefined>;
    }
  | {
      type: "checkpoint";
      seq: number;
      digest: string;
      snapshot: KvSnapshot;
      clients: ClientTableEntry[];
    }
  | { type: "stable"; seq: number; digest: string }
  | { type: "view"; view: number; primary: string }
  | { type: "transfer-started"; seq: number }
  | { type: "transferred"; seq: number; partitions: number; bytes: number }
  | { type: "recovered"; seq: number; digest: string }
  | { type: "problem"; kind: ProblemKind; from: string; detail: string };

type Mode = "normal" | "view-change" | "recovering";

interface Slot {
  view: number;
  digest?: string;
  requests?: ClientRequest[];
  /** The primary's PRE_PREPARE as received (or sent), for retransmission. */
  prePrepare?: Buffer;
  prepares: Map<string, string>;
  commits: Map<string, string>;
  prepared: boolean;
  committed: boolean;
  sentPrepare?: Buffer;
  sentCommit?: Buffer;
  /** When this slot was opened: only slots older than a status interval are retransmitted. */
  sinceMs: number;
}

interface OwnCheckpoint {
  seq: number;
  digest: string;
  snapshot: KvSnapshot;
  clients: ClientTableEntry[];
}

const GENESIS_CLIENTS: ClientTableEntry[] = [];

const DEDUPLICATED = new Set(["PRE_PREPARE", "PREPARE", "COMMIT", "CHECKPOINT", "EXECUTED"]);

/**
 * How far above its own view a replica takes a peer's VIEW_CHANGE into account: far enough for
 * a replica that fell behind by many failed view changes, near enough that a Byzantine peer
 * cannot drive the view number out of range. A NEW_VIEW has no such bound: it carries a quorum's
 * signed VIEW_CHANGEs, so however far ahead it is, the service is there (a replica rebooted at
 * view 0 must be able to join a service many rejuvenations old).
 */
export const VIEW_WINDOW = 1024;

/** VIEW_CHANGEs kept per peer (its newest views). */
export const VIEW_CHANGES_PER_PEER = 8;

export class ReplicaCore {
  private out: ReplicaAction[] = [];
  private nowMs = 0;
  private mode: Mode;
  private view = 0;
  private epoch: number;
  private store: KvStore;
  private clients: ClientTable;
  private lastExecuted: number;
  private stable: SeqDigest;
  private readonly ownCheckpoints = new Map<number, OwnCheckpoint>();
  /** seq -> "digest" -> replicas that sent CHECKPOINT for it. */
  private readonly checkpointVotes = new Map<number, Map<string, Set<string>>>();
  private readonly slots = new Map<number, Slot>();
  /** PBFT's P and Q sets: what this replica prepared / saw pre-prepared, above the stable checkpoint. */
  private readonly preparedInfo = new Map<number, ViewSeqDigest>();
  private readonly prePreparedInfo = new Map<number, Map<string, number>>();
  private readonly batchesByDigest = new Map<string, ClientRequest[]>();
  /** Batches executed above the stable checkpoint: the log suffix peers may ask for. */
  private readonly executedLog = new Map<number, ExecutedEntry>();
  private readonly executedAtMs = new Map<number, number>();
  /** Digests of messages seen lately: a duplicate is dropped before its signature is checked again. */
  private readonly recentMessages = new Set<string>();
  private olderMessages = new Set<string>();
  /** EXECUTED reports from peers: seq -> digest -> senders, and the requests. */
  private readonly executedReports = new Map<number, Map<string, Set<string>>>();
  private readonly reportedBatches = new Map<string, ExecutedEntry>();
  private nextSeq: number;
  /** Requests known but not yet executed, by digest. */
  private readonly pending = new Map<string, ClientRequest>();
  /**
   * Since when each pending request has waited (in this view): PBFT's per-request timers. The
   * primary is suspected once the oldest has waited a view-change timeout, whatever else
   * executes meanwhile (a primary that executes empty batches, or other clients' requests, does
   * not starve one client).
   */
  private readonly pendingSinceMs = new Map<string, number>();
  private readonly queued: string[] = [];
  private readonly verifiedRequests = new Set<string>();
  private progressDeadlineMs: number | undefined;
  private handingOff = false;
  // view change
  private targetView = 0;
  private viewChangeDeadlineMs = 0;
  private viewChangeAttempts = 0;
  /**
   * VIEW_CHANGEs by sender, then by view. A VIEW_CHANGE for v still helps form v after its
   * sender asked for v+1 (replicas timing out at different moments meet that way), so several
   * are kept; but at most VIEW_CHANGES_PER_PEER of each peer's, its newest, so that no peer can
   * crowd out the others' by flooding views.
   */
  private readonly viewChanges = new Map<string, Map<number, ReplicaEnvelope>>();
  private readonly sentNewView = new Set<number>();
  /**
   * The highest view this replica has sent a VIEW_CHANGE for. It never enters a lower view: a
   * view formed later from that VIEW_CHANGE would not know what it prepared there.
   */
  private highestViewChangeSent = 0;
  /**
   * The NEW_VIEW of the current view as sent by its primary (whoever formed or accepted it), for
   * peers still in an older view: a replica enters a view only with that view's NEW_VIEW.
   */
  private newViewMessage: Buffer | undefined;
  /** When this replica last forwarded its NEW_VIEW to each lagging peer. */
  private readonly newViewSentAtMs = new Map<string, number>();
  /** Views peers report in STATUS, for a replica that lags behind in views. */
  private readonly peerViews = new Map<string, number>();
  private readonly peerExecuted = new Map<string, number>();
  private readonly peerStable = new Map<string, number>();
  private readonly peerPrepared = new Map<string, number>();
  /** Null batches a primary proposes, when idle, up to this sequence number. */
  private padUntil = 0;
  // state transfer and recovery
  private transfer: StateTransfer | undefined;
  /** Fixed once a quorum's worth of peers has reported, so a busy service is not chased forever. */
  private catchUpTarget: { executed: number; stable: number; checkpoint: number } | undefined;
  private recoveredReported: boolean;
  /**
   * Rejuvenated: what it voted before is forgotten. It casts no vote (PRE_PREPARE, PREPARE,
   * COMMIT, VIEW_CHANGE) until it enters a view whose NEW_VIEW was formed only from VIEW_CHANGEs
   * written after their senders held its new key (SAFETY.md, "A replica that lost its memory").
   */
  private amnesic: boolean;
  /**
   * The highest sequence number the fresh view it joined fixed: its own VIEW_CHANGEs would say
   * nothing of what it forgot below, so it sends none until a stable checkpoint covers this.
   */
  private amnesiaHorizon = 0;
  /** Per replica: the lowest key epoch any VIEW_CHANGE behind the current view held for it. */
  private viewKeyEpochs: number[];
  /** Per amnesic peer: the "epoch@view" a refreshing view change was started for already. */
  private readonly refreshedFor = new Map<string, string>();
  private readonly peerAmnesic = new Set<string>();
  private nextStatusMs = 0;
  private readonly keyQueryAtMs = new Map<string, number>();
  readonly counters = new Map<string, number>();

  constructor(
    private readonly config: ReplicaConfig,
    private readonly ring: KeyRing,
    private signer: Signer,
    certificate: KeyCertificate | undefined,
    start: StartingState,
  ) {
    const { ids, self } = config;
    if (!ids.includes(self))
      throw new RangeError(`replica ${self} is not one of ${ids.join(", ")}`);
    if (ids.length !== config.quorums.n) throw new RangeError("ids and quorums disagree on n");
    this.epoch = certificate?.period ?? 0;
    for (const { host, before } of start.revokedKeys ?? [])
      if (host !== self) ring.revoke(host, before);
    if (certificate) ring.install(certificate);
    const cp = start.checkpoint;
    this.store = cp ? KvStore.fromSnapshot(cp.snapshot) : new KvStore();
    this.clients = ClientTable.from(cp?.clients ?? GENESIS_CLIENTS);
    this.lastExecuted = cp?.seq ?? 0;
    const digest = this.stateDigest();
    this.stable = { seq: this.lastExecuted, digest };
    this.ownCheckpoints.set(this.lastExecuted, {
      seq: this.lastExecuted,
      digest,
      snapshot: this.store.snapshot(),
      clients: this.clients.list(),
    });
    this.nextSeq = this.lastExecuted + 1;
    this.mode = start.recovering ? "recovering" : "normal";
    this.recoveredReported = !start.recovering;
    this.amnesic = start.recovering;
    // View 0 has no NEW_VIEW: no key is known to have been held by a VIEW_CHANGE behind it.
    this.viewKeyEpochs = ids.map(() => -1);
  }

  // ---- queries ------------------------------------------------------------

  get id(): string {
    return this.config.self;
  }
  get currentView(): number {
    return this.view;
  }
  get primary(): string {
    return this.primaryOf(this.view);
  }
  get isPrimary(): boolean {
    return this.primary === this.config.self && this.mode === "normal";
  }
  get executedUpTo(): number {
    return this.lastExecuted;
  }
  get stableCheckpoint(): SeqDigest {
    return { ...this.stable };
  }
  get currentEpoch(): number {
    return this.epoch;
  }
  get status(): Mode {
    return this.mode;
  }
  get isRecovered(): boolean {
    return this.recoveredReported;
  }
  /** Rejuvenated and not yet voting again (see `amnesic`). */
  get isAmnesic(): boolean {
    return this.amnesic;
  }

  /** PRE_PREPARE, PREPARE and COMMIT: only with a memory of every vote it cast in this view. */
  private mayVote(): boolean {
    return !this.amnesic && this.mode !== "recovering";
  }

  /** VIEW_CHANGE: only once nothing it forgot lies above its stable checkpoint. */
  private mayChangeView(): boolean {
    return !this.amnesic && this.stable.seq >= this.amnesiaHorizon;
  }
  /** The digest of the state as executed so far (for checks, not for the protocol). */
  stateDigest(): string {
    return checkpointDigest(this.store.rootDigest().toString("hex"), this.clients.digest());
  }
  readValue(key: string): string | null {
    return this.store.get(key) ?? null;
  }
  /** Test hook for simulated faults: the store a Byzantine host could scribble on. */
  unsafeStore(): KvStore {
    return this.store;
  }

  private primaryOf(view: number): string {
    return this.config.ids[view % this.config.ids.length] as string;
  }

  private count(name: string): void {
    this.counters.set(name, (this.counters.get(name) ?? 0) + 1);
  }

  private problem(kind: ProblemKind, from: string, detail: string): void {
    this.count(`rejected.${kind}`);
    this.out.push({ type: "problem", kind, from, detail });
  }

  private drain(): ReplicaAction[] {
    const actions = this.out;
    this.out = [];
    return actions;
  }

  // ---- sending ------------------------------------------------------------

  private seal(body: ReplicaBody): Buffer {
    const from = this.config.self;
    return sealEnvelope(from, this.epoch, body, (bytes) => this.signer.sign(bytes));
  }

  private broadcast(body: ReplicaBody): Buffer {
    const message = this.seal(body);
    this.out.push({ type: "broadcast", message });
    return message;
  }

  private send(to: string, body: ReplicaBody): void {
    this.out.push({ type: "send", to, message: this.seal(body) });
  }

  // ---- events -------------------------------------------------------------

  /** Announces this replica's key; call once after construction. */
  start(nowMs: number): ReplicaAction[] {
    this.nowMs = nowMs;
    const cert = this.ring.keyOf(this.config.self)?.certificate;
    if (cert) this.broadcast({ type: "NEW_KEY", certificate: cert });
    this.broadcastStatus();
    return this.drain();
  }

  /** A new key pair, certified by the board at this rejuvenation. */
  installKey(certificate: KeyCertificate, signer: Signer, nowMs: number): ReplicaAction[] {
    this.nowMs = nowMs;
    if (certificate.host !== this.config.self || certificate.publicKey !== signer.publicKey) {
      this.problem("bad-certificate", "board", "the certificate is not for this replica's key");
      return this.drain();
    }
    const verdict = this.ring.install(certificate);
    if (verdict !== "installed" && verdict !== "same") {
      this.problem("bad-certificate", "board", `certificate refused: ${verdict}`);
      return this.drain();
    }
    this.signer = signer;
    this.epoch = certificate.period;
    this.broadcast({ type: "NEW_KEY", certificate });
    this.refreshOwnViewChange();
    return this.drain();
  }

  /**
   * The boards began rejuvenating `hosts`: keys of theirs certified before `before` are revoked
   * here and now, not when their new keys arrive, so that from their shutdown on a key stolen
   * from a compromised host no longer speaks for a replica the quorums count as silent.
   */
  revokeKeys(hosts: readonly string[], before: number, nowMs: number): ReplicaAction[] {
    this.nowMs = nowMs;
    for (const host of hosts)
      if (host !== this.config.self && this.config.ids.includes(host)) {
        this.ring.revoke(host, before);
        this.viewChanges.delete(host);
        this.count("keys.revoked");
      }
    return this.drain();
  }

  /**
   * The view a planned hand-off goes to: the first view whose primary is in the group
   * rejuvenated just before this replica's (in the boards' order), so the new primary keeps
   * its place for a whole period instead of going down with the next group.
   */
  private handOffView(view: number): number {
    const { ids, self } = this.config;
    const n = ids.length;
    const k = Math.max(1, this.config.quorums.k);
    const groups =
      this.config.rejuvenationGroups ??
      Array.from({ length: Math.ceil(n / k) }, (_, g) => ids.slice(g * k, g * k + k));
    const g = groups.findIndex((members) => members.includes(self));
    const previous = g < 0 ? [] : (groups[(g - 1 + groups.length) % groups.length] ?? []);
    for (let step = 1; step <= n; step++) {
      const primary = ids[(view + step) % n] as string;
      if (primary !== self && previous.includes(primary)) return view + step;
    }
    return view + 1;
  }

  /** The host is about to be shut down: a primary hands off so the next view starts at once. */
  prepareShutdown(nowMs: number): ReplicaAction[] {
    this.nowMs = nowMs;
    if (this.mode === "normal" && this.primary === this.config.self) {
      this.handingOff = true;
      this.broadcast({ type: "HANDOFF", view: this.view });
      this.startViewChange(this.handOffView(this.view));
    }
    return this.drain();
  }

  tick(nowMs: number): ReplicaAction[] {
    this.nowMs = nowMs;
    if (nowMs >= this.nextStatusMs) {
      this.nextStatusMs = nowMs + this.config.statusIntervalMs;
      this.broadcastStatus();
      // The new primary needs our VIEW_CHANGE to form its view: the first copy may be lost.
      const mine = this.mode === "view-change" ? this.ownViewChange() : undefined;
      const primary = this.primaryOf(this.targetView);
      if (mine !== undefined && primary !== this.config.self)
        this.out.push({ type: "send", to: primary, message: mine.wire });
    }
    if (this.transfer) this.applyTransferStep(this.transfer.tick(nowMs));
    if (this.mode === "view-change" && nowMs >= this.viewChangeDeadlineMs) {
      this.startViewChange(this.nextFormableView());
    } else if (
      this.mode === "normal" &&
      this.progressDeadlineMs !== undefined &&
      nowMs >= this.progressDeadlineMs
    ) {
      if (this.peersAhead()) {
        // Peers in this view are executing past us: the primary works, we lag. Catch up first.
        this.count("view-change.postponed");
        this.progressDeadlineMs = nowMs + this.config.viewChangeTimeoutMs;
      } else {
        this.count("view-change.timeout");
        this.startViewChange(this.view + 1);
      }
    }
    return this.drain();
  }

  onClientMessage(client: string, bytes: Buffer, nowMs: number): ReplicaAction[] {
    this.nowMs = nowMs;
    const message: ClientMessage | undefined = parseClientMessage(bytes);
    if (message === undefined) {
      this.problem("malformed", client, "a client message that does not parse");
    } else if (message.type === "KEYS_QUERY") {
      this.out.push({
        type: "reply",
        client,
        message: this.seal({ type: "KEYS", certificates: this.ring.certificates() }),
      });
    } else if (message.request.client !== client) {
      this.problem("bad-request", client, `a request signed for ${message.request.client}`);
    } else {
      this.onRequest(message.request);
    }
    return this.drain();
  }

  onMessage(bytes: Buffer, nowMs: number): ReplicaAction[] {
    this.nowMs = nowMs;
    const envelope = parseEnvelope(bytes);
    if (envelope === undefined) {
      this.problem("malformed", "?", "a replica message that does not parse");
      return this.drain();
    }
    // Retransmissions and network duplicates of normal-case messages: the same bytes were
    // verified before, so the signature is not checked again (the epoch still is). They are
    // still handled: the first copy may have come when this replica could not use it.
    const dedupe = DEDUPLICATED.has(envelope.body.type);
    const fingerprint = dedupe ? createHash("sha256").update(bytes).digest("base64") : "";
    const seenBefore =
      dedupe && (this.recentMessages.has(fingerprint) || this.olderMessages.has(fingerprint));
    const { from, epoch, body } = envelope;
    if (from === this.config.self) {
      // Our own message relayed back (a retransmitted PRE_PREPARE): nothing to learn.
      this.count("own-messages");
      return this.drain();
    }
    if (!this.config.ids.includes(from)) {
      this.problem("malformed", from, "a message from no known peer");
      return this.drain();
    }
    if (body.type === "NEW_KEY") {
      this.onNewKey(from, body.certificate);
      return this.drain();
    }
    const verdict =
      seenBefore && this.ring.keyOf(from)?.epoch === epoch
        ? "ok"
        : this.ring.checkReplica(from, epoch, envelope.signed, envelope.sig);
    if (seenBefore) this.count("verify-skipped");
    if (verdict !== "ok") {
      this.problem(verdict, from, `${body.type} under epoch ${epoch}`);
      if (verdict === "unknown-epoch") this.queryKey(from);
      return this.drain();
    }
    this.count(`in.${body.type}`);
    if (dedupe && !seenBefore) {
      this.recentMessages.add(fingerprint);
      if (this.recentMessages.size >= 8192) {
        this.olderMessages = new Set(this.recentMessages);
        this.recentMessages.clear();
      }
    }
    try {
      this.dispatch(envelope);
    } catch (error) {
      // A bug a message can reach must not end the replica (its agent would restart it, and the
      // sender would send it again): the message is dropped and counted; the bug stays visible.
      this.problem(
        "handler-fault",
        from,
        `${body.type}: ${(error as Error).message}`.slice(0, 200),
      );
    }
    return this.drain();
  }

  private onNewKey(from: string, certificate: KeyCertificate): void {
    if (certificate.host !== from) {
      this.problem("bad-certificate", from, `a certificate for ${certificate.host}`);
      return;
    }
    const verdict = this.ring.install(certificate);
    if (verdict === "installed") {
      this.count("keys.installed");
      // What its former self asked for (under a key now stale) no longer speaks for it.
      this.viewChanges.delete(from);
      this.refreshOwnViewChange();
    } else if (verdict !== "same" && verdict !== "stale")
      this.problem("bad-certificate", from, `certificate refused: ${verdict}`);
  }

  private queryKey(peer: string): void {
    const last = this.keyQueryAtMs.get(peer);
    if (last !== undefined && this.nowMs - last < this.config.statusIntervalMs) return;
    this.keyQueryAtMs.set(peer, this.nowMs);
    this.send(peer, { type: "KEY_QUERY" });
  }

  private dispatch(envelope: ReplicaEnvelope): void {
    const { from, body } = envelope;
    switch (body.type) {
      case "PRE_PREPARE":
        this.onPrePrepare(from, body, envelope);
        return;
      case "PREPARE":
        this.onPrepare(from, body);
        return;
      case "COMMIT":
        this.onCommit(from, body);
        return;
      case "CHECKPOINT":
        this.onCheckpoint(from, body);
        return;
      case "VIEW_CHANGE":
        this.onViewChange(envelope);
        return;
      case "NEW_VIEW":
        this.onNewView(from, body, envelope.wire);
        return;
      case "HANDOFF":
        if (body.view === this.view && from === this.primary && this.mode === "normal") {
          this.count("view-change.handoff");
          this.startViewChange(this.handOffView(this.view));
        }
        return;
      case "STATUS":
        this.onStatus(from, body);
        return;
      case "EXECUTED":
        this.onExecuted(from, body.entries);
        return;
      case "FETCH_META":
      case "FETCH_LEAVES":
      case "FETCH_PARTS":
        this.serveFetch(from, body);
        return;
      case "META":
      case "LEAVES":
      case "PARTS":
      case "NO_CHECKPOINT":
        if (this.transfer) this.applyTransferStep(this.transfer.onReply(from, body, this.nowMs));
        return;
      case "KEY_QUERY": {
        const cert = this.ring.keyOf(this.config.self)?.certificate;
        if (cert) this.send(from, { type: "NEW_KEY", certificate: cert });
        return;
      }
      default:
        // REPLY and KEYS are for clients; a replica ignores them.
        return;
    }
  }

  // ---- requests -----------------------------------------------------------

  private checkRequest(request: ClientRequest): boolean {
    const digest = requestDigest(request);
    if (this.verifiedRequests.has(digest)) return true;
    if (!this.ring.hasClient(request.client)) {
      this.problem("unknown-client", request.client, "a request from a client not on the list");
      return false;
    }
    const { sig, ...signed } = request;
    if (!this.ring.checkClient(request.client, requestSigningBytes(signed), sig)) {
      this.problem("bad-signature", request.client, "a request whose signature does not verify");
      return false;
    }
    this.verifiedRequests.add(digest);
    return true;
  }

  private onRequest(request: ClientRequest): void {
    if (!this.checkRequest(request)) return;
    const last = this.clients.last(request.client);
    if (last !== undefined && request.ts <= last.ts) {
      if (request.ts === last.ts) this.sendReply(request.client, last.ts, last.result);
      return;
    }
    const digest = requestDigest(request);
    if (this.pending.has(digest)) return;
    this.hold(digest, request);
    if (this.isPrimary) this.queued.push(digest);
    if (this.progressDeadlineMs === undefined && this.mode === "normal") this.armSuspicion();
    this.propose();
  }

  private hold(digest: string, request: ClientRequest): void {
    this.pending.set(digest, request);
    if (!this.pendingSinceMs.has(digest)) this.pendingSinceMs.set(digest, this.nowMs);
  }

  private release(digest: string): void {
    this.pending.delete(digest);
    this.pendingSinceMs.delete(digest);
  }

  /** The primary is suspected when the request that has waited longest has waited a timeout. */
  private armSuspicion(): void {
    let oldest = Number.POSITIVE_INFINITY;
    for (const since of this.pendingSinceMs.values()) oldest = Math.min(oldest, since);
    this.progressDeadlineMs =
      oldest === Number.POSITIVE_INFINITY ? undefined : oldest + this.config.viewChangeTimeoutMs;
  }

  private sendReply(client: string, ts: number, result: KvResult): void {
    this.out.push({
      type: "reply",
      client,
      message: this.seal({ type: "REPLY", view: this.view, client, ts, result }),
    });
  }

  // ---- normal case --------------------------------------------------------

  private inWindow(seq: number): boolean {
    return seq > this.stable.seq && seq <= this.stable.seq + 2 * this.config.checkpointInterval;
  }

  private slot(seq: number, view: number): Slot {
    let slot = this.slots.get(seq);
    if (slot === undefined || slot.view < view) {
      slot = {
        view,
        prepares: new Map(),
        commits: new Map(),
        prepared: false,
        committed: false,
        sinceMs: this.nowMs,
      };
      this.slots.set(seq, slot);
    }
    return slot;
  }

  /** The primary proposes batches while its window allows. */
  private propose(): void {
    if (!this.isPrimary || this.handingOff || this.amnesic) return;
    while (
      (this.queued.length > 0 || this.nextSeq <= this.padUntil) &&
      this.nextSeq - 1 - this.lastExecuted < this.config.maxInFlight &&
      this.inWindow(this.nextSeq)
    ) {
      const requests: ClientRequest[] = [];
      while (this.queued.length > 0 && requests.length < this.config.batchMax) {
        const p = this.pending.get(this.queued.shift() as string);
        if (p !== undefined) requests.push(p);
      }
      if (requests.length === 0 && this.nextSeq > this.padUntil) return;
      const seq = this.nextSeq++;
      this.count("batches.proposed");
      this.counters.set(
        "requests.proposed",
        (this.counters.get("requests.proposed") ?? 0) + requests.length,
      );
      const digest = batchDigest(requests);
      const body: ReplicaBody = { type: "PRE_PREPARE", view: this.view, seq, digest, requests };
      const message = this.broadcast(body);
      const slot = this.slot(seq, this.view);
      slot.digest = digest;
      slot.requests = requests;
      slot.prePrepare = message;
      this.notePrePrepared(seq, digest, requests);
    }
  }

  private notePrePrepared(seq: number, digest: string, requests: ClientRequest[]): void {
    let byDigest = this.prePreparedInfo.get(seq);
    if (byDigest === undefined) {
      byDigest = new Map();
      this.prePreparedInfo.set(seq, byDigest);
    }
    byDigest.set(digest, Math.max(byDigest.get(digest) ?? 0, this.view));
    this.batchesByDigest.set(digest, requests);
  }

  private onPrePrepare(
    from: string,
    body: Extract<ReplicaBody, { type: "PRE_PREPARE" }>,
    envelope: ReplicaEnvelope,
  ): void {
    if (this.mode !== "normal" || body.view !== this.view) return;
    if (from !== this.primary) {
      this.problem("bad-pre-prepare", from, "a PRE_PREPARE from a replica that is not the primary");
      return;
    }
    if (!this.inWindow(body.seq) || body.seq <= this.lastExecuted) return;
    const slot = this.slot(body.seq, body.view);
    if (slot.digest !== undefined) {
      if (slot.digest !== body.digest) {
        this.problem(
          "bad-pre-prepare",
          from,
          `two PRE_PREPAREs for seq ${body.seq} in view ${body.view}`,
        );
        this.suspectPrimary();
      }
      return;
    }
    if (
      body.requests.length > this.config.batchMax ||
      batchDigest(body.requests) !== body.digest ||
      !body.requests.every((r) => this.checkRequest(r))
    ) {
      this.problem("bad-pre-prepare", from, `PRE_PREPARE ${body.seq}: batch does not check out`);
      this.suspectPrimary();
      return;
    }
    slot.digest = body.digest;
    slot.requests = body.requests;
    slot.prePrepare = envelope.wire;
    this.notePrePrepared(body.seq, body.digest, body.requests);
    for (const r of body.requests) {
      const d = requestDigest(r);
      if (!this.pending.has(d) && r.ts > this.clients.lastTs(r.client)) this.hold(d, r);
    }
    if (this.progressDeadlineMs === undefined) this.armSuspicion();
    if (!this.mayVote()) {
      // It watches the slot (it may execute from others' votes) but casts no vote of its own.
      this.count("votes.withheld");
      this.checkPrepared(body.seq);
      return;
    }
    slot.sentPrepare = this.broadcast({
      type: "PREPARE",
      view: body.view,
      seq: body.seq,
      digest: body.digest,
    });
    slot.prepares.set(this.config.self, body.digest);
    this.checkPrepared(body.seq);
  }

  /** A primary caught lying: move on without waiting for the timeout. */
  private suspectPrimary(): void {
    if (this.mode === "normal") this.startViewChange(this.view + 1);
  }

  private onPrepare(from: string, body: { view: number; seq: number; digest: string }): void {
    if (this.mode !== "normal" || body.view !== this.view || !this.inWindow(body.seq)) return;
    if (from === this.primary) return; // the primary's vote is its PRE_PREPARE
    const slot = this.slot(body.seq, body.view);
    if (slot.view !== body.view) return;
    slot.prepares.set(from, body.digest);
    this.checkPrepared(body.seq);
  }

  private onCommit(from: string, body: { view: number; seq: number; digest: string }): void {
    if (this.mode !== "normal" || body.view !== this.view || !this.inWindow(body.seq)) return;
    const slot = this.slot(body.seq, body.view);
    if (slot.view !== body.view) return;
    slot.commits.set(from, body.digest);
    this.checkCommitted(body.seq);
  }

  private matching(votes: Map<string, string>, digest: string): number {
    let n = 0;
    for (const d of votes.values()) if (d === digest) n++;
    return n;
  }

  private checkPrepared(seq: number): void {
    const slot = this.slots.get(seq);
    if (slot === undefined || slot.prepared || slot.digest === undefined) return;
    // q - 1 PREPAREs from backups plus the primary's PRE_PREPARE.
    if (this.matching(slot.prepares, slot.digest) < this.config.quorums.quorum - 1) return;
    slot.prepared = true;
    this.preparedInfo.set(seq, { seq, view: slot.view, digest: slot.digest });
    if (!this.mayVote()) {
      this.checkCommitted(seq);
      return;
    }
    slot.sentCommit = this.broadcast({ type: "COMMIT", view: slot.view, seq, digest: slot.digest });
    slot.commits.set(this.config.self, slot.digest);
    this.checkCommitted(seq);
  }

  private checkCommitted(seq: number): void {
    const slot = this.slots.get(seq);
    if (slot === undefined || slot.committed || !slot.prepared || slot.digest === undefined) return;
    if (this.matching(slot.commits, slot.digest) < this.config.quorums.quorum) return;
    slot.committed = true;
    this.executeReady();
  }

  // ---- execution and checkpoints ------------------------------------------

  private executeReady(): void {
    for (;;) {
      const seq = this.lastExecuted + 1;
      const slot = this.slots.get(seq);
      if (slot?.committed && slot.requests !== undefined && slot.digest !== undefined) {
        this.execute(seq, slot.view, slot.digest, slot.requests);
        continue;
      }
      const reported = this.agreedExecuted(seq);
      if (reported !== undefined) {
        this.count("executed.from-peers");
        this.execute(seq, reported.view, reported.digest, reported.requests);
        continue;
      }
      break;
    }
    if (this.mode === "normal") this.propose();
    this.maybeRecovered();
  }

  private execute(seq: number, view: number, digest: string, requests: ClientRequest[]): void {
    const results: Array<KvResult | undefined> = [];
    for (const request of requests) {
      const d = requestDigest(request);
      this.release(d);
      if (!this.verifiedRequests.has(d) && !this.checkRequest(request)) {
        // Agreed yet unauthenticated: only a bug could get here. The digest binds the signature,
        // so every correct replica reaches this same verdict and skips it alike.
        results.push(undefined);
        continue;
      }
      if (request.ts <= this.clients.lastTs(request.client)) {
        results.push(undefined);
        continue;
      }
      const result = this.store.apply(request.op);
      this.clients.record(request.client, request.ts, result);
      results.push(result);
      this.sendReply(request.client, request.ts, result);
    }
    this.lastExecuted = seq;
    this.executedLog.set(seq, { seq, view, digest, requests });
    this.executedAtMs.set(seq, this.nowMs);
    this.out.push({ type: "executed", seq, view, digest, requests, results });
    // The suspicion timer runs on for whatever is still pending: executing something else is
    // not progress for a request that has waited.
    this.armSuspicion();
    if (seq % this.config.checkpointInterval === 0) this.takeCheckpoint(seq);
  }

  private takeCheckpoint(seq: number): void {
    const snapshot = this.store.snapshot();
    const clients = this.clients.list();
    const digest = checkpointDigest(snapshot.root().toString("hex"), this.clients.digest());
    this.ownCheckpoints.set(seq, { seq, digest, snapshot, clients });
    this.out.push({ type: "checkpoint", seq, digest, snapshot, clients });
    this.broadcast({ type: "CHECKPOINT", seq, digest });
    this.addCheckpointVote(seq, digest, this.config.self);
  }
  private addCheckpointVote(seq: number, digest: string, from: string): void {
    if (seq < this.stable.seq && this.mode !== "recovering") return;
    let byDigest = this.checkpointVotes.get(seq);
    if (byDigest === undefined) {
      byDigest = new Map();
      this.checkpointVotes.set(seq, byDigest);
    }
    // One vote per replica and sequence number: a later, different vote replaces it.
    for (const voters of byDigest.values()) voters.delete(from);
    let voters = byDigest.get(digest);
    if (voters === undefined) {
      voters = new Set();
      byDigest.set(digest, voters);
    }
    voters.add(from);
    const { quorum, weak } = this.config.quorums;
    const vouchers = () => [...voters].filter((v) => v !== this.config.self);
    if (this.mode === "recovering") {
      // Its own stored state proves nothing: take the newest checkpoint k'+1 peers vouch for.
      if (voters.size >= weak) this.behind({ seq, digest }, vouchers());
      return;
    }
    const own = this.ownCheckpoints.get(seq);
    if (own !== undefined && own.digest !== digest && voters.size >= quorum) {
      // A quorum's checkpoint differs from this replica's own at a sequence number it executed:
      // its state has diverged (a fault, a corrupted disk). It stops answering as if its state
      // were good, and fetches the quorum's state, as a rejuvenated replica does.
      this.count("state.diverged");
      this.problem(
        "diverged",
        this.config.self,
        `checkpoint ${seq}: own digest ${own.digest.slice(0, 12)}, a quorum has ${digest.slice(0, 12)}`,
      );
      this.mode = "recovering";
      this.behind({ seq, digest }, vouchers());
      return;
    }
    if (own?.digest === digest && voters.size >= quorum && seq > this.stable.seq)
      this.makeStable(seq, digest);
    else if (voters.size >= weak && seq >= this.lastExecuted + this.config.checkpointInterval)
      // A whole interval behind: the log suffix peers keep may no longer reach back here.
      this.behind({ seq, digest }, vouchers());
  }

  private onCheckpoint(from: string, body: { seq: number; digest: string }): void {
    if (body.seq % this.config.checkpointInterval !== 0 && body.seq !== 0) return;
    if (body.seq < this.stable.seq && this.mode !== "recovering") return;
    // Bound the votes kept for the future: a Byzantine peer may claim any number.
    if (
      body.seq > this.lastExecuted + 64 * this.config.checkpointInterval &&
      this.checkpointVotes.size > 256
    )
      return;
    this.addCheckpointVote(body.seq, body.digest, from);
  }

  private makeStable(seq: number, digest: string): void {
    this.stable = { seq, digest };
    this.out.push({ type: "stable", seq, digest });
    for (const s of [...this.slots.keys()]) if (s <= seq) this.slots.delete(s);
    for (const s of [...this.preparedInfo.keys()]) if (s <= seq) this.preparedInfo.delete(s);
    for (const s of [...this.prePreparedInfo.keys()]) if (s <= seq) this.prePreparedInfo.delete(s); // The log suffix is kept one interval longer, for peers just behind the checkpoint.
    const keepFrom = seq - this.config.checkpointInterval;
    for (const s of [...this.executedLog.keys()])
      if (s <= keepFrom) {
        this.executedLog.delete(s);
        this.executedAtMs.delete(s);
      }
    for (const s of [...this.executedReports.keys()]) if (s <= seq) this.executedReports.delete(s);
    for (const s of [...this.checkpointVotes.keys()]) if (s < seq) this.checkpointVotes.delete(s);
    // Keep the stable checkpoint (peers may fetch it) and anything newer.
    for (const s of [...this.ownCheckpoints.keys()]) if (s < seq) this.ownCheckpoints.delete(s);
    // Bodies still needed: those of open slots, and of what this replica prepared above the
    // stable checkpoint (its VIEW_CHANGE must carry them, even after a view change closed the
    // slot).
    const live = new Set<string>();
    for (const slot of this.slots.values()) if (slot.digest) live.add(slot.digest);
    for (const p of this.preparedInfo.values()) live.add(p.digest);
    for (const digest of [...this.batchesByDigest.keys()])
      if (!live.has(digest)) this.batchesByDigest.delete(digest);
    for (const [digest, entry] of [...this.reportedBatches])
      if (entry.seq <= seq) this.reportedBatches.delete(digest);
    if (this.verifiedRequests.size > 100_000) this.verifiedRequests.clear();
    if (this.nextSeq <= seq) this.nextSeq = seq + 1;
    this.propose();
  }

  // ---- lagging, state transfer, recovery ----------------------------------

  /** k'+1 replicas vouch for a checkpoint this replica has not reached: fetch it. */
  private behind(target: SeqDigest, vouchers: string[]): void {
    if (vouchers.length === 0) return;
    if (
      this.transfer !== undefined &&
      !this.transfer.finished &&
      this.transfer.target.seq >= target.seq
    )
      return;
    // A recovering replica whose stored checkpoint is the vouched one needs no transfer.
    if (
      this.mode === "recovering" &&
      this.lastExecuted === target.seq &&
      this.stateDigest() === target.digest
    ) {
      this.installState(target, this.store, this.clients.list());
      return;
    }
    if (this.mode !== "recovering" && target.seq <= this.lastExecuted) return;
    this.count("state-transfer.started");
    this.out.push({ type: "transfer-started", seq: target.seq });
    this.transfer = new StateTransfer(
      target,
      this.store.snapshot(),
      vouchers,
      this.nowMs,
      Math.max(2 * this.config.statusIntervalMs, 50),
    );
    this.applyTransferStep(this.transfer.start());
  }

  private applyTransferStep(step: ReturnType<StateTransfer["start"]>): void {
    if (step.rejected) this.problem("bad-transfer-reply", "?", step.rejected);
    for (const { to, body } of step.send) this.send(to, body);
    if (step.done && this.transfer) {
      const target = this.transfer.target;
      this.transfer = undefined;
      if (this.mode !== "recovering" && target.seq <= this.lastExecuted) return;
      this.out.push({
        type: "transferred",
        seq: target.seq,
        partitions: step.done.partitionsFetched,
        bytes: step.done.bytesFetched,
      });
      this.installState(target, step.done.store, step.done.clients);
    }
  }

  private installState(target: SeqDigest, store: KvStore, clients: ClientTableEntry[]): void {
    const wasRecovering = this.mode === "recovering";
    if (wasRecovering) {
      // Nothing from before is trusted: not the stored sequence number, not its checkpoints.
      this.ownCheckpoints.clear();
      this.slots.clear();
      this.executedLog.clear();
      this.preparedInfo.clear();
      this.prePreparedInfo.clear();
      this.stable = { seq: -1, digest: "" };
      this.nextSeq = target.seq + 1;
    }
    this.store = store;
    this.clients = ClientTable.from(clients);
    this.lastExecuted = target.seq;
    if (this.nextSeq <= target.seq) this.nextSeq = target.seq + 1;
    const snapshot = store.snapshot();
    this.ownCheckpoints.set(target.seq, {
      seq: target.seq,
      digest: target.digest,
      snapshot,
      clients,
    });
    this.out.push({
      type: "checkpoint",
      seq: target.seq,
      digest: target.digest,
      snapshot,
      clients,
    });
    for (const s of [...this.slots.keys()]) if (s <= target.seq) this.slots.delete(s);
    for (const [d, r] of [...this.pending])
      if (r.ts <= this.clients.lastTs(r.client)) this.release(d);
    if (this.mode === "recovering") {
      this.mode = "normal";
      this.catchUpTarget = undefined;
      // Only what peers report from now on counts towards having caught up.
      this.peerExecuted.clear();
      this.peerStable.clear();
      this.peerPrepared.clear();
    }
    this.addCheckpointVote(target.seq, target.digest, this.config.self);
    if (target.seq > this.stable.seq) this.makeStable(target.seq, target.digest);
    this.executeReady();
  }

  /** k'+1 peers (so one correct one) in our view report having executed more than we have. */
  private peersAhead(): boolean {
    let ahead = 0;
    for (const [peer, executed] of this.peerExecuted)
      if (executed > this.lastExecuted && this.peerViews.get(peer) === this.view) ahead++;
    return ahead >= this.config.quorums.weak;
  }

  /** Recovered: state installed and caught up with what k'+1 peers have executed. */
  private maybeRecovered(): void {
    if (this.recoveredReported || this.mode === "recovering") return;
    // Voting again, and nothing it forgot is left uncovered by a stable checkpoint.
    if (!this.mayChangeView()) {
      const want = this.wantedCheckpoint();
      if (want > this.padUntil) {
        this.padUntil = want;
        this.propose();
      }
      return;
    } // The (k'+1)-th highest report: at least one correct replica is that far.
    const kth = (m: Map<string, number>) =>
      [...m.values()].sort((a, b) => b - a)[this.config.quorums.weak - 1];
    // Heard from a quorum's worth of peers, so not only from a minority cut off with it.
    if (this.catchUpTarget === undefined) {
      if (this.peerExecuted.size < this.config.quorums.quorum - 1) return;
      // Whatever any of them had prepared may have committed somewhere, and this replica
      // has forgotten it: recovered only once a stable checkpoint covers it (the primary
      // pads with null batches if it is idle). A Byzantine peer can only make it wait
      // up to the log window.
      const C = this.config.checkpointInterval;
      const prepared = Math.min(
        Math.max(0, ...this.peerPrepared.values()),
        this.stable.seq + 2 * C,
      );
      this.catchUpTarget = {
        executed: kth(this.peerExecuted) ?? 0,
        stable: kth(this.peerStable) ?? 0,
        checkpoint: prepared > this.stable.seq ? Math.ceil(prepared / C) * C : 0,
      };
      // Should this replica be (or become) the primary, it pads for itself too.
      this.padUntil = Math.max(this.padUntil, this.catchUpTarget.checkpoint);
      this.propose();
    }
    const target = this.catchUpTarget;
    if (
      this.lastExecuted < target.executed ||
      this.stable.seq < target.stable ||
      this.stable.seq < target.checkpoint
    )
      return;
    this.recoveredReported = true;
    this.out.push({ type: "recovered", seq: this.stable.seq, digest: this.stable.digest });
  }

  private maxPreparedSeq(): number {
    let max = this.lastExecuted;
    for (const seq of this.prePreparedInfo.keys()) if (seq > max) max = seq;
    return max;
  }

  private broadcastStatus(): void {
    this.broadcast({
      type: "STATUS",
      view: this.view,
      lastExecuted: this.lastExecuted,
      stableSeq: this.stable.seq,
      recovering: this.mode === "recovering",
      maxPrepared: this.maxPreparedSeq(),
      wantCheckpoint: this.recoveredReported ? 0 : this.wantedCheckpoint(),
      amnesic: this.amnesic,
    });
  }

  /** The stable checkpoint this recovering replica waits for before it calls itself recovered. */
  private wantedCheckpoint(): number {
    const C = this.config.checkpointInterval;
    const horizon =
      !this.amnesic && this.amnesiaHorizon > this.stable.seq
        ? Math.ceil(this.amnesiaHorizon / C) * C
        : 0;
    return Math.max(this.catchUpTarget?.checkpoint ?? 0, horizon);
  }

  private onStatus(from: string, body: Extract<ReplicaBody, { type: "STATUS" }>): void {
    this.peerViews.set(from, body.view);
    if (body.amnesic) {
      this.peerAmnesic.add(from);
      this.refreshViewFor(from);
    } else this.peerAmnesic.delete(from);
    if (!body.recovering) {
      this.peerExecuted.set(from, body.lastExecuted);
      this.peerStable.set(from, body.stableSeq);
      this.peerPrepared.set(from, body.maxPrepared);
    }
    // A recovering peer waits for a checkpoint: an idle primary fills the gap with null batches.
    const C = this.config.checkpointInterval;
    if (
      body.wantCheckpoint > this.stable.seq &&
      body.wantCheckpoint <= this.stable.seq + 2 * C &&
      body.wantCheckpoint % C === 0
    ) {
      this.padUntil = Math.max(this.padUntil, body.wantCheckpoint);
      this.propose();
    }
    this.maybeRecovered();
    if (this.mode === "recovering") return;
    // A peer behind our stable checkpoint needs the checkpoint (it gathers k'+1 votes).
    if (body.stableSeq < this.stable.seq || body.recovering) {
      this.send(from, { type: "CHECKPOINT", seq: this.stable.seq, digest: this.stable.digest });
    }
    // Our votes for newer checkpoints may have been lost (a partition): the peer's stable
    // checkpoint is behind ours-to-be, so send them again (a duplicate is dropped unchecked).
    for (const cp of this.ownCheckpoints.values())
      if (cp.seq > this.stable.seq && cp.seq > body.stableSeq && body.lastExecuted >= cp.seq)
        this.send(from, { type: "CHECKPOINT", seq: cp.seq, digest: cp.digest });
    if (body.lastExecuted < this.lastExecuted) {
      const entries: ExecutedEntry[] = [];
      let bytes = 0;
      for (let s = body.lastExecuted + 1; s <= this.lastExecuted; s++) {
        const e = this.executedLog.get(s);
        // Executed moments ago: the peer is likely just behind in the pipeline, not stuck.
        const at = this.executedAtMs.get(s);
        if (e === undefined || at === undefined || this.nowMs - at < this.config.statusIntervalMs)
          break;
        bytes += 256 + e.requests.length * 256;
        if (entries.length > 0 && bytes > this.config.maxReplyBytes) break;
        entries.push(e);
      }
      if (entries.length > 0) this.send(from, { type: "EXECUTED", entries });
    }
    if (body.view === this.view && this.mode === "normal") {
      // Retransmit our part of whatever is still in flight: the network may have lost it.
      for (const [seq, slot] of this.slots) {
        if (seq <= body.lastExecuted || slot.view !== this.view) continue;
        if (this.nowMs - slot.sinceMs < this.config.statusIntervalMs) continue;
        for (const m of [slot.prePrepare, slot.sentPrepare, slot.sentCommit])
          if (m !== undefined) this.out.push({ type: "send", to: from, message: m });
      }
    }
    if (body.view < this.view) this.resendNewView(from);
    else if (body.view === this.targetView && this.mode === "view-change") {
      const mine = this.ownViewChange();
      if (mine) this.out.push({ type: "send", to: from, message: mine.wire });
    }
  }

  /**
   * A peer in an older view gets this view's NEW_VIEW (signed by its primary, checkable by
   * anyone): from the primary at every STATUS, from the others once per view-change timeout, so
   * that a primary withholding it cannot keep a peer out of the view.
   */
  private resendNewView(to: string): void {
    if (this.newViewMessage === undefined) return;
    const last = this.newViewSentAtMs.get(to);
    const isPrimary = this.primaryOf(this.view) === this.config.self;
    if (!isPrimary && last !== undefined && this.nowMs - last < this.config.viewChangeTimeoutMs)
      return;
    this.newViewSentAtMs.set(to, this.nowMs);
    this.out.push({ type: "send", to, message: this.newViewMessage });
  }

  private onExecuted(from: string, entries: ExecutedEntry[]): void {
    for (const entry of entries) {
      if (
        entry.seq <= this.lastExecuted ||
        entry.seq > this.lastExecuted + 4 * this.config.checkpointInterval
      )
        continue;
      if (batchDigest(entry.requests) !== entry.digest) {
        this.problem("bad-transfer-reply", from, `EXECUTED ${entry.seq}: digest does not match`);
        continue;
      }
      let byDigest = this.executedReports.get(entry.seq);
      if (byDigest === undefined) {
        byDigest = new Map();
        this.executedReports.set(entry.seq, byDigest);
      }
      for (const voters of byDigest.values()) voters.delete(from);
      let voters = byDigest.get(entry.digest);
      if (voters === undefined) {
        voters = new Set();
        byDigest.set(entry.digest, voters);
      }
      voters.add(from);
      this.reportedBatches.set(entry.digest, entry);
    }
    if (this.mode !== "recovering") this.executeReady();
  }

  /** A batch k'+1 peers say they executed at seq (one of them is correct). */
  private agreedExecuted(seq: number): ExecutedEntry | undefined {
    if (this.mode === "recovering") return undefined;
    const byDigest = this.executedReports.get(seq);
    if (byDigest === undefined) return undefined;
    for (const [digest, voters] of byDigest)
      if (voters.size >= this.config.quorums.weak) {
        const entry = this.reportedBatches.get(digest);
        if (entry !== undefined) return entry;
      }
    return undefined;
  }

  private serveFetch(from: string, body: ReplicaBody): void {
    if (!("seq" in body)) return;
    const cp = this.ownCheckpoints.get(body.seq);
    if (cp === undefined || this.mode === "recovering") {
      this.send(from, { type: "NO_CHECKPOINT", seq: body.seq });
      return;
    }
    const s = cp.snapshot;
    if (body.type === "FETCH_META") {
      this.send(from, {
        type: "META",
        seq: cp.seq,
        kvRoot: s.root().toString("hex"),
        clients: cp.clients,
        metas: s.metaDigests().map((d) => d.toString("hex")),
      });
    } else if (body.type === "FETCH_LEAVES") {
      const metas = body.metas.filter((m) => m < s.metaDigests().length).slice(0, 64);
      this.send(from, {
        type: "LEAVES",
        seq: cp.seq,
        leaves: metas.map((meta) => ({
          meta,
          digests: s.leafDigests(meta).map((d) => d.toString("hex")),
        })),
      });
    } else if (body.type === "FETCH_PARTS") {
      const parts: Array<{ index: number; data: string }> = [];
      let bytes = 0;
      for (const index of body.parts.slice(0, 256)) {
        if (index >= 4096) continue;
        const data = s.encodePartition(index);
        if (parts.length > 0 && bytes + data.length > this.config.maxReplyBytes) break;
        bytes += data.length;
        parts.push({ index, data: data.toString("base64") });
      }
      this.send(from, { type: "PARTS", seq: cp.seq, parts });
    }
  }

  // ---- view changes -------------------------------------------------------

  private startViewChange(newView: number): void {
    if (newView <= this.view && this.mode !== "view-change") return;
    if (this.mode === "view-change" && newView <= this.targetView) return;
    if (!this.mayChangeView()) {
      // One of the k silent ones for view changes: the others change views without it, and it
      // follows their NEW_VIEW.
      this.count("view-change.withheld");
      if (this.mode === "normal")
        this.progressDeadlineMs = this.nowMs + this.config.viewChangeTimeoutMs;
      return;
    }
    this.count("view-change.started");
    this.mode = this.mode === "recovering" ? "recovering" : "view-change";
    this.targetView = newView;
    this.viewChangeAttempts++;
    // Exponential back-off: each further view waits twice as long for its NEW_VIEW.
    const backoff = Math.min(2 ** Math.min(this.viewChangeAttempts - 1, 6), 64);
    this.viewChangeDeadlineMs = this.nowMs + this.config.viewChangeTimeoutMs * backoff;
    this.progressDeadlineMs = undefined;
    this.sendViewChange(newView);
  }

  private sendViewChange(newView: number): void {
    this.highestViewChangeSent = Math.max(this.highestViewChangeSent, newView);
    const message = this.broadcast(this.viewChangeBody(newView));
    this.recordViewChange(parseEnvelope(message) as ReplicaEnvelope);
  }

  /**
   * A key learned while changing views: the VIEW_CHANGE already sent does not hold it, so a
   * replica that key's owner could have lost its memory cannot trust a view formed from it. Sent
   * again, holding every key known now.
   */
  private refreshOwnViewChange(): void {
    if (this.mode !== "view-change" || !this.mayChangeView()) return;
    const mine = this.ownViewChange()?.body as ViewChangeBody | undefined;
    if (mine !== undefined && this.holdsEveryKey(mine.keyEpochs)) return;
    this.count("view-change.refreshed");
    this.sendViewChange(this.targetView);
  }

  private keyEpochs(): number[] {
    return this.config.ids.map((id) => this.ring.keyOf(id)?.epoch ?? 0);
  }

  /** A VIEW_CHANGE's key epochs are at least those this replica holds, for every replica. */
  private holdsEveryKey(epochs: readonly number[]): boolean {
    return this.config.ids.every((id, i) => (epochs[i] ?? -1) >= (this.ring.keyOf(id)?.epoch ?? 0));
  }

  /**
   * A peer says it lost its memory and waits for a view formed after its new key. If the current
   * view's NEW_VIEW does not hold that key in every VIEW_CHANGE behind it, change views once more
   * (once per key epoch and view: the peer's claim cannot make it change views again and again).
   */
  private refreshViewFor(peer: string): void {
    const epoch = this.ring.keyOf(peer)?.epoch;
    const i = this.config.ids.indexOf(peer);
    if (epoch === undefined || (this.viewKeyEpochs[i] ?? -1) >= epoch) return;
    if (this.mode !== "normal" || !this.mayChangeView()) return;
    const mark = `${epoch}@${this.view}`;
    if (this.refreshedFor.get(peer) === mark) return;
    this.refreshedFor.set(peer, mark);
    this.count("view-change.for-amnesic");
    const n = this.config.ids.length;
    let target = this.view + 1;
    for (let step = 1; step <= n; step++) {
      const primary = this.primaryOf(this.view + step);
      if (primary !== peer && !this.peerAmnesic.has(primary)) {
        target = this.view + step;
        break;
      }
    }
    this.startViewChange(target);
  }

  /**
   * The view to try when the one this replica is changing to did not form: the least view above
   * it that could still form, from what the others' latest VIEW_CHANGEs ask for (a replica never
   * goes back to a lower view): a quorum of replicas not already past it, its primary among them.
   * Stepping one view at a time, replicas that got ahead in a partition and those behind can
   * keep a constant gap forever once their timeouts reach the same cap.
   */
  private nextFormableView(): number {
    const { ids, self, quorums } = this.config;
    const asked = new Map<string, number>();
    for (const [from, byView] of this.viewChanges)
      if (from !== self && byView.size > 0) asked.set(from, Math.max(...byView.keys()));
    const next = this.targetView + 1;
    for (let w = next; w < next + 4 * ids.length; w++) {
      let able = 1;
      for (const [, target] of asked) if (target <= w) able++;
      const primary = this.primaryOf(w);
      const primaryAsked = asked.get(primary);
      const primaryAble = primary === self || (primaryAsked !== undefined && primaryAsked <= w);
      if (able >= quorums.quorum && primaryAble) return w;
    }
    return next;
  }

  private viewChangeBody(newView: number): ViewChangeBody {
    const checkpoints: SeqDigest[] = [];
    for (const cp of this.ownCheckpoints.values())
      if (cp.seq > this.stable.seq) checkpoints.push({ seq: cp.seq, digest: cp.digest });
    const prepared = [...this.preparedInfo.values()].filter((p) => p.seq > this.stable.seq);
    const prePrepared: ViewSeqDigest[] = [];
    for (const [seq, byDigest] of this.prePreparedInfo)
      if (seq > this.stable.seq)
        for (const [digest, view] of byDigest) prePrepared.push({ seq, view, digest });
    const batches: BatchBody[] = [];
    for (const p of prepared) {
      const requests = this.batchesByDigest.get(p.digest);
      if (requests) batches.push({ digest: p.digest, requests });
    }
    return {
      type: "VIEW_CHANGE",
      newView,
      stable: { ...this.stable },
      checkpoints,
      prepared,
      prePrepared,
      batches,
      keyEpochs: this.keyEpochs(),
    };
  }

  private onViewChange(envelope: ReplicaEnvelope): void {
    const body = envelope.body as ViewChangeBody;
    if (body.newView <= this.view) return;
    if (body.newView > this.view + VIEW_WINDOW) {
      this.problem("view-out-of-window", envelope.from, `VIEW_CHANGE to ${body.newView}`);
      return;
    }
    const fault = this.viewChangeFault(body);
    if (fault !== undefined) {
      this.problem("bad-view-change", envelope.from, `VIEW_CHANGE to ${body.newView}: ${fault}`);
      return;
    }
    this.recordViewChange(envelope);
    // k'+1 replicas want a newer view: at least one correct one does, join it.
    const senders = new Set<string>();
    let least = Number.POSITIVE_INFINITY;
    const above = this.mode === "view-change" ? this.targetView : this.view;
    for (const [from, byView] of this.viewChanges)
      for (const view of byView.keys())
        if (view > above) {
          senders.add(from);
          least = Math.min(least, view);
        }
    if (senders.size >= this.config.quorums.weak && this.mode !== "recovering")
      this.startViewChange(least);
  }

  private viewChangeFault(body: ViewChangeBody): string | undefined {
    return viewChangeFault(body, this.config.ids.length);
  }

  private recordViewChange(envelope: ReplicaEnvelope): void {
    const body = envelope.body as ViewChangeBody;
    let byView = this.viewChanges.get(envelope.from);
    if (byView === undefined) {
      byView = new Map();
      this.viewChanges.set(envelope.from, byView);
    }
    byView.set(body.newView, envelope);
    if (byView.size > VIEW_CHANGES_PER_PEER) byView.delete(Math.min(...byView.keys()));
    if (this.primaryOf(body.newView) === this.config.self) this.tryNewView(body.newView);
  }

  /** The VIEW_CHANGEs for `view`, one per replica. */
  private viewChangesFor(view: number): ReplicaEnvelope[] {
    const found: ReplicaEnvelope[] = [];
    for (const byView of this.viewChanges.values()) {
      const vc = byView.get(view);
      if (vc !== undefined) found.push(vc);
    }
    return found;
  }

  /** This replica's VIEW_CHANGE for the view it is changing to. */
  private ownViewChange(): ReplicaEnvelope | undefined {
    return this.viewChanges.get(this.config.self)?.get(this.targetView);
  }

  private nullDigest(): string {
    return batchDigest([]);
  }

  private tryNewView(view: number): void {
    if (this.sentNewView.has(view) || view < this.view) return;
    if (this.mode === "view-change" && view !== this.targetView) return;
    // Only VIEW_CHANGEs holding every key this primary holds: then the view is fresh for any
    // replica that lost its memory before its current key, and it may vote in it.
    // And only those signed under keys that still count (a departing primary's, for one, is
    // revoked as its host's rejuvenation begins).
    const forView = this.viewChangesFor(view).filter(
      (vc) =>
        this.holdsEveryKey((vc.body as ViewChangeBody).keyEpochs) &&
        this.ring.counts(vc.from, vc.epoch),
    );
    // A primary that lost its memory writes no VIEW_CHANGE, but it may still form its view from
    // a quorum of others' fresh for it: that is the view in which it votes again (otherwise
    // every view it is primary of would fail while it waits, one in n).
    if (this.mayChangeView()) {
      if (!forView.some((vc) => vc.from === this.config.self)) return;
    } else if (this.mode !== "normal" || !this.freshForSelf(forView)) return;
    const envelopes = forView.sort((a, b) => (a.from < b.from ? -1 : 1));
    const decision = decideNewView(
      envelopes.map((e) => e.body as ViewChangeBody),
      this.config.quorums,
      2 * this.config.checkpointInterval,
      this.nullDigest(),
    );
    if (decision === undefined) return;
    this.sentNewView.add(view);
    this.endAmnesiaIfFresh(envelopes, decision.checkpoint.seq, decision.proposals);
    const message = this.broadcast({
      type: "NEW_VIEW",
      view,
      viewChanges: envelopes.map((e) => e.wire.toString("utf8")),
      checkpoint: decision.checkpoint,
      proposals: decision.proposals,
    });
    this.newViewMessage = message;
    this.startView(view, decision, envelopes);
  }

  private onNewView(
    from: string,
    body: Extract<ReplicaBody, { type: "NEW_VIEW" }>,
    wire: Buffer,
  ): void {
    if (body.view < this.view || (body.view === this.view && this.mode === "normal")) return;
    if (body.view < this.highestViewChangeSent) {
      this.count("new-view.below-own-view-change");
      return;
    }
    if (from !== this.primaryOf(body.view)) {
      this.problem("bad-new-view", from, `NEW_VIEW ${body.view} not from its primary`);
      return;
    }
    const senders = new Set<string>();
    const viewChanges: ReplicaEnvelope[] = [];
    for (const text of body.viewChanges) {
      const vc = parseEnvelope(Buffer.from(text, "utf8"));
      const wellFormed =
        vc !== undefined &&
        vc.body.type === "VIEW_CHANGE" &&
        !senders.has(vc.from) &&
        this.config.ids.includes(vc.from) &&
        vc.body.newView === body.view &&
        this.viewChangeFault(vc.body) === undefined;
      const verdict = wellFormed
        ? this.ring.checkReplica(vc.from, vc.epoch, vc.signed, vc.sig)
        : "";
      if (wellFormed && (verdict === "revoked-key" || verdict === "stale-epoch")) {
        // Signed under a key that has since stopped counting here (its host is being
        // rejuvenated, or has been): it is left out, and the rest must still decide the same.
        this.count("new-view.left-out");
        continue;
      }
      if (verdict !== "ok" || vc === undefined) {
        this.problem(
          "bad-new-view",
          from,
          `NEW_VIEW ${body.view}: a VIEW_CHANGE does not check out`,
        );
        return;
      }
      senders.add(vc.from);
      viewChanges.push(vc);
    }
    const decision = decideNewView(
      viewChanges.map((e) => e.body as ViewChangeBody),
      this.config.quorums,
      2 * this.config.checkpointInterval,
      this.nullDigest(),
    );
    const same =
      decision !== undefined &&
      decision.checkpoint.seq === body.checkpoint.seq &&
      decision.checkpoint.digest === body.checkpoint.digest &&
      decision.proposals.length === body.proposals.length &&
      decision.proposals.every(
        (p, i) => p.seq === body.proposals[i]?.seq && p.digest === body.proposals[i]?.digest,
      );
    // Validity is decided before agreement: a batch the new view re-proposes must hold only
    // requests that verify (a correct replica pre-prepared it, so they do, unless k'+1 lied).
    const valid =
      decision !== undefined &&
      [...decision.batches.values()].every((b) => b.requests.every((r) => this.checkRequest(r)));
    if (!same || !valid || decision === undefined) {
      this.problem("bad-new-view", from, `NEW_VIEW ${body.view}: its choices do not follow`);
      // The primary of the view this replica is changing to is faulty: on to the next one. A
      // bad NEW_VIEW for any other view moves nothing (one Byzantine replica cannot make a
      // correct one skip views).
      if (this.mode === "view-change" && this.targetView === body.view)
        this.startViewChange(body.view + 1);
      return;
    }
    this.endAmnesiaIfFresh(viewChanges, body.checkpoint.seq, body.proposals);
    this.newViewMessage = wire;
    this.startView(body.view, decision, viewChanges);
  }

  private endAmnesiaIfFresh(
    viewChanges: readonly ReplicaEnvelope[],
    checkpointSeq: number,
    proposals: readonly SeqDigest[],
  ): void {
    if (!this.amnesic || !this.freshForSelf(viewChanges)) return;
    // Every VIEW_CHANGE behind this view was written after its sender held this replica's new
    // key, so after it lost its memory; none is its own. It votes again from this view on.
    this.amnesic = false;
    this.amnesiaHorizon = Math.max(checkpointSeq, ...proposals.map((p) => p.seq));
    this.count("amnesia.ended");
  }

  private freshForSelf(viewChanges: readonly ReplicaEnvelope[]): boolean {
    const i = this.config.ids.indexOf(this.config.self);
    return viewChanges.every(
      (vc) =>
        vc.from !== this.config.self &&
        ((vc.body as ViewChangeBody).keyEpochs[i] ?? -1) >= this.epoch,
    );
  }

  private enterView(view: number): void {
    this.view = view;
    this.targetView = view;
    if (this.mode !== "recovering") this.mode = "normal";
    this.viewChangeAttempts = 0;
    this.handingOff = false;
    this.newViewSentAtMs.clear();
    for (const [seq, slot] of [...this.slots])
      if (slot.view < view && !slot.committed) this.slots.delete(seq);
    for (const byView of this.viewChanges.values())
      for (const v of [...byView.keys()]) if (v <= view) byView.delete(v);
    // A new primary gets a whole timeout for every request it inherits.
    for (const d of this.pendingSinceMs.keys()) this.pendingSinceMs.set(d, this.nowMs);
    this.armSuspicion();
    this.queued.length = 0;
    if (this.primaryOf(view) === this.config.self)
      for (const [digest, r] of this.pending)
        if (r.ts > this.clients.lastTs(r.client)) this.queued.push(digest);
    this.out.push({ type: "view", view, primary: this.primaryOf(view) });
  }

  private startView(
    view: number,
    decision: ReturnType<typeof decideNewView> & object,
    viewChanges: ReplicaEnvelope[],
  ): void {
    this.enterView(view);
    this.viewKeyEpochs = this.config.ids.map((_, i) =>
      Math.min(...viewChanges.map((vc) => (vc.body as ViewChangeBody).keyEpochs[i] ?? -1)),
    );
    const { checkpoint, proposals, batches } = decision;
    if (checkpoint.seq > this.lastExecuted) {
      const vouchers = viewChanges
        .filter((vc) => {
          const b = vc.body as ViewChangeBody;
          return [b.stable, ...b.checkpoints].some(
            (c) => c.seq === checkpoint.seq && c.digest === checkpoint.digest,
          );
        })
        .map((vc) => vc.from)
        .filter((f) => f !== this.config.self);
      this.behind(checkpoint, vouchers);
    }
    const isPrimary = this.primaryOf(view) === this.config.self;
    let maxSeq = Math.max(checkpoint.seq, this.lastExecuted);
    for (const p of proposals) {
      maxSeq = Math.max(maxSeq, p.seq); // Executed here already, perhaps not elsewhere: take part again so the others complete it.
      // decideNewView proposes a non-null digest only with its body in hand.
      const requests = p.digest === this.nullDigest() ? [] : batches.get(p.digest)?.requests;
      if (requests === undefined) throw new Error(`new view ${view}: no body for seq ${p.seq}`);
      const slot = this.slot(p.seq, view);
      slot.digest = p.digest;
      slot.requests = requests;
      this.notePrePrepared(p.seq, p.digest, requests);
      if (isPrimary) {
        slot.prePrepare = this.seal({
          type: "PRE_PREPARE",
          view,
          seq: p.seq,
          digest: p.digest,
          requests,
        });
      } else if (this.mayVote()) {
        slot.sentPrepare = this.broadcast({ type: "PREPARE", view, seq: p.seq, digest: p.digest });
        slot.prepares.set(this.config.self, p.digest);
      }
    }
    this.nextSeq = maxSeq + 1;
    // Requests re-proposed above need no second proposal.
    const reproposed = new Set<string>();
    for (const b of batches.values()) for (const r of b.requests) reproposed.add(requestDigest(r));
    for (let i = this.queued.length - 1; i >= 0; i--)
      if (reproposed.has(this.queued[i] as string)) this.queued.splice(i, 1);
    for (const p of proposals) this.checkPrepared(p.seq);
    this.propose();
  }
}
