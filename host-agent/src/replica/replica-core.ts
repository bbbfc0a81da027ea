/**
 * One replica of the BFT state machine replication protocol, as a pure state machine: events in
 * (a message, a client message, the passing of time, a command from the host agent), actions out
 * (send, reply, persist, report). It does no I/O and reads no clock, so a whole cluster runs in
 * one process from a seed and replays exactly.
 *
 * This file is the replica's interface and its one dispatcher: it checks who sent a message and
 * under which key, and hands it to the step function of its sub-protocol, each in its own file
 * and all sharing the replica's state (`replica-state.ts`):
 *
 *   normal-case.ts     PBFT's pre-prepare, prepare, commit with batching; per-request timers
 *   checkpoints.ts     checkpoints every C sequence numbers, made stable by a quorum
 *   view-change.ts     suspecting or handing off the primary, VIEW_CHANGE, NEW_VIEW
 *   progress-timeout.ts  how long a request waits before its primary is suspected, growing
 *                      after views that executed nothing
 *   new-view-decision.ts  what a new view re-proposes (pure)
 *   batch-fetch.ts     bodies a new view fixed that a replica lacks, fetched by digest
 *   catch-up.ts        state transfer and the log suffix, for replicas behind or recovering
 *   peer-status.ts     STATUS: peers' progress, and helping those that lag
 *   amnesia.ts         a replica that lost its memory votes again only in a view fresh for it
 *   keys.ts            key epochs: certified at rejuvenation, revoked, announced
 *   quorums.ts         quorum sizes (n >= 3k'+2k+1)
 *   read-only.ts       reads answered without ordering
 *   client-allowance.ts  what one client may cost: its messages and read answers, per second
 *   large-resends.ts   large messages sent again, each time after twice the wait
 *
 * The safety argument, sub-protocol by sub-protocol, is in SAFETY.md.
 */

import type { KeyCertificate, KeyLease } from "@smw/wiring";
import type { KvStore } from "../kv/kv-store.js";
import type { KeptFor } from "./awaiting-keys.js";
import { retryBatchFetches, serveBatch } from "./batch-fetch.js";
import { sha256Base64 } from "./canonical.js";
import { applyTransferStep, onExecuted, peersAhead, serveFetch, transferTick } from "./catch-up.js";
import { onCheckpoint, storeStartingState } from "./checkpoints.js";
import { MESSAGE_COST_BYTES } from "./client-allowance.js";
import { checkpointDigest } from "./client-table.js";
import { beginColdStart } from "./cold-start.js";
import type { KeyRing, Signer } from "./key-ring.js";
import {
  announceSession,
  installKey,
  installLease,
  onClientKeysQuery,
  onClientSession,
  onKeyQuery,
  onKeys,
  onNewKey,
  onSession,
  queryKey,
  relayKeys,
  revokeKeys,
  sendSessionTo,
} from "./keys.js";
import {
  type ClientMessage,
  parseClientMessage,
  parseEnvelope,
  type ReplicaEnvelope,
  type SeqDigest,
} from "./messages.js";
import {
  armSuspicion,
  isFresh,
  onCommit,
  onPrePrepare,
  onPrepare,
  onRequest,
} from "./normal-case.js";
import { broadcastStatus, onStatus } from "./peer-status.js";
import { onRead } from "./read-only.js";
import {
  type Mode,
  type ReplicaAction,
  type ReplicaConfig,
  ReplicaState,
  type StartingState,
} from "./replica-state.js";
import { expireSuspicions, onHold, onHolders, sendDueHolds } from "./request-holds.js";
import {
  handOff,
  nextFormableView,
  onBatch,
  onHandoff,
  onNewView,
  onViewChange,
  ownViewChange,
  startViewChange,
  viewChangeFailed,
  viewChangeWaitMs,
} from "./view-change.js";

export type { ProblemKind, ReplicaAction, ReplicaConfig, StartingState } from "./replica-state.js";
export { senderProven } from "./replica-state.js";
export { VIEW_CHANGES_PER_PEER, VIEW_WINDOW } from "./view-change.js";

// SESSION too: each peer relays the others' (`relayKeys`), and a half held already needs no
// second signature check.
const DEDUPLICATED = new Set([
  "PRE_PREPARE",
  "PREPARE",
  "COMMIT",
  "CHECKPOINT",
  "EXECUTED",
  "SESSION",
]);

export class ReplicaCore {
  private readonly r: ReplicaState;
  /** Counters of what happened (messages in, rejections by kind, view changes, ...). */
  readonly counters: Map<string, number>;

  constructor(
    config: ReplicaConfig,
    ring: KeyRing,
    signer: Signer,
    certificate: KeyCertificate | undefined,
    start: StartingState,
  ) {
    this.r = new ReplicaState(config, ring, signer, certificate, start);
    this.counters = this.r.counters;
  }

  get id(): string {
    return this.r.config.self;
  }

  get currentView(): number {
    return this.r.view;
  }

  get primary(): string {
    return this.r.primaryOf(this.r.view);
  }

  get isPrimary(): boolean {
    return this.r.primary === this.r.config.self && this.r.mode === "normal";
  }

  get executedUpTo(): number {
    return this.r.lastExecuted;
  }

  get stableCheckpoint(): SeqDigest {
    return { ...this.r.stable };
  }

  /** The board's newest lease on this replica's current key, if one came. */
  get currentLease(): KeyLease | undefined {
    return this.r.lease;
  }

  get currentEpoch(): number {
    return this.r.epoch;
  }

  get status(): Mode {
    return this.r.mode;
  }

  get isRecovered(): boolean {
    return this.r.recoveredReported;
  }

  /** The key epoch this replica holds for `host` (undefined: none yet). */
  keyEpochOf(host: string): number | undefined {
    return this.r.ring.keyOf(host)?.epoch;
  }

  /** Rejuvenated and not yet voting again (see `amnesic`). */
  get isAmnesic(): boolean {
    return this.r.amnesic;
  }

  /** The digest of the state as executed so far (for checks, not for the protocol). */
  stateDigest(): string {
    return checkpointDigest(this.r.store.rootDigest().toString("hex"), this.r.clients.digest());
  }

  readValue(key: string): string | null {
    return this.r.store.get(key) ?? null;
  }

  /** Test hook for simulated faults: the store a Byzantine host could scribble on. */
  unsafeStore(): KvStore {
    return this.r.store;
  }

  /** Announces this replica's key; call once after construction. */
  start(nowMs: number): ReplicaAction[] {
    const r = this.r;
    r.nowMs = nowMs;
    const cert = r.ring.keyOf(r.config.self)?.certificate;
    if (cert) r.broadcast({ type: "NEW_KEY", certificate: cert });
    // And learns every peer's current key at once: a peer rejuvenated while this replica was
    // down signs under a key it has never seen.
    r.broadcast({ type: "KEY_QUERY" });
    announceSession(r, undefined, true);
    storeStartingState(r);
    beginColdStart(r);
    broadcastStatus(r);
    return r.drain();
  }

  /** A new key pair, certified by the board at this rejuvenation. */
  installKey(certificate: KeyCertificate, signer: Signer, nowMs: number): ReplicaAction[] {
    this.r.nowMs = nowMs;
    installKey(this.r, certificate, signer);
    return this.r.drain();
  }

  /** The board vouches for this replica's current key until `lease.notAfterMs` (keys.ts). */
  installLease(lease: KeyLease, nowMs: number): ReplicaAction[] {
    this.r.nowMs = nowMs;
    installLease(this.r, lease);
    return this.r.drain();
  }

  /** The boards began rejuvenating `hosts` (see `revokeKeys` in keys.ts). */
  revokeKeys(hosts: readonly string[], before: number, nowMs: number): ReplicaAction[] {
    this.r.nowMs = nowMs;
    revokeKeys(this.r, hosts, before);
    return this.r.drain();
  }

  /** The host is about to be shut down: a primary hands off so the next view starts at once. */
  prepareShutdown(nowMs: number): ReplicaAction[] {
    const r = this.r;
    r.nowMs = nowMs;
    handOff(r);
    return r.drain();
  }

  tick(nowMs: number): ReplicaAction[] {
    const r = this.r;
    r.nowMs = nowMs;
    try {
      this.timers(nowMs);
    } catch (error) {
      // As in `receive`: a bug a timer reaches must not end the replica (its server's timer would
      // not be armed again); counted as a fault of its own, the bug stays visible.
      r.problem("handler-fault", r.config.self, `tick: ${(error as Error).message}`.slice(0, 200));
    }
    return r.drain();
  }

  private timers(nowMs: number): void {
    const r = this.r;
    if (nowMs >= r.nextStatusMs) {
      r.nextStatusMs = nowMs + r.config.statusIntervalMs;
      broadcastStatus(r);
      expireSuspicions(r);
      if (r.mode === "normal") sendDueHolds(r);
      retryBatchFetches(r);
      // The new primary needs our VIEW_CHANGE to form its view: the first copy may be lost.
      const mine = r.mode === "view-change" ? ownViewChange(r) : undefined;
      const primary = r.primaryOf(r.targetView);
      if (mine !== undefined && primary !== r.config.self)
        r.out.push({ type: "send", to: primary, message: mine.wire });
    }
    transferTick(r, nowMs);
    if (r.mode === "view-change" && nowMs >= r.viewChangeDeadlineMs) {
      if (viewChangeFailed(r)) startViewChange(r, nextFormableView(r));
      else {
        // Waiting, it sends its VIEW_CHANGE to every peer again: one that was lost (a partition)
        // may be what keeps the others from joining it, or it from seeing them ask higher.
        r.count("view-change.waiting");
        r.viewChangeDeadlineMs = nowMs + viewChangeWaitMs(r);
        const mine = ownViewChange(r);
        if (mine !== undefined) r.out.push({ type: "broadcast", message: mine.wire });
      }
    } else if (
      r.mode === "normal" &&
      r.progressDeadlineMs === undefined &&
      (r.pendingSinceMs.size > 0 || r.awaitingSinceMs.size > 0)
    ) {
      // Something is timed but no deadline runs (it was timed outside the normal mode): arm it.
      armSuspicion(r);
    } else if (
      r.mode === "normal" &&
      r.progressDeadlineMs !== undefined &&
      nowMs >= r.progressDeadlineMs
    ) {
      if (peersAhead(r)) {
        // Peers in this view are executing past us: the primary works, we lag. Catch up first.
        r.count("view-change.postponed");
        r.progressDeadlineMs = nowMs + r.config.viewChangeTimeoutMs;
      } else {
        r.count("view-change.timeout");
        startViewChange(r, r.view + 1);
      }
    }
  }

  onClientMessage(client: string, bytes: Buffer, nowMs: number): ReplicaAction[] {
    const r = this.r;
    r.nowMs = nowMs;
    const allowance = r.clientAllowance;
    if (!allowance.mayAnswer(client, nowMs)) {
      // In debt (`client-allowance.ts`): whatever it sends is dropped unread until it is paid
      // back (a quarter of a second for a 1 MiB value read, at the default rate), and its host
      // leaves its connections unread meanwhile.
      r.count("client.over-allowance");
      this.holdIfInDebt(client);
      return r.drain();
    }
    allowance.charge(client, MESSAGE_COST_BYTES, nowMs);
    const message: ClientMessage | undefined = parseClientMessage(bytes);
    if (message === undefined) {
      r.problem("malformed", client, "a client message that does not parse", true);
    } else if (message.type === "KEYS_QUERY") {
      onClientKeysQuery(r, client);
    } else if (message.type === "SESSION") {
      onClientSession(r, client, message);
    } else if (message.type === "READ") {
      onRead(r, client, message, bytes);
    } else if (message.request.client !== client) {
      r.problem("bad-request", client, `a request signed for ${message.request.client}`);
    } else {
      onRequest(r, message.request, isFresh(r, client, message));
    }
    this.holdIfInDebt(client);
    return r.drain();
  }

  /**
   * A client in debt has whatever it sends dropped unread until it is paid back: its host may as
   * well leave its connections unread until then (`hold-client`), so that a flood costs neither
   * the reading nor the framing.
   */
  private holdIfInDebt(client: string): void {
    const untilMs = this.r.clientAllowance.paidBackAtMs(client, this.r.nowMs);
    if (untilMs !== undefined) this.r.out.push({ type: "hold-client", client, untilMs });
  }

  onMessage(bytes: Buffer, nowMs: number): ReplicaAction[] {
    const r = this.r;
    r.nowMs = nowMs;
    this.receive(bytes);
    // What waited for a key or session half that has just come, handled now in full; bounded:
    // a message is due again only when what it waited for comes, and is kept again only for the
    // other reason (`awaiting-keys.ts`).
    for (let due = r.awaitingKeys.takeDue(); due.length > 0; due = r.awaitingKeys.takeDue())
      for (const kept of due) {
        r.count("awaiting-keys.taken-again");
        this.receive(kept.wire, kept.keptFor);
      }
    return r.drain();
  }

  /**
   * One message from a peer, handled (its actions left in `r.out`); `keptFor`: it was kept for
   * want of its sender's key or half, which has come since.
   */
  private receive(bytes: Buffer, keptFor?: KeptFor): void {
    const r = this.r;
    const envelope = parseEnvelope(bytes);
    if (envelope === undefined) {
      r.problem("malformed", "?", "a replica message that does not parse");
      return;
    }
    // Retransmissions and network duplicates of signed normal-case messages: the same bytes were
    // verified before, so the signature is not checked again (the epoch still is). They are
    // still handled: the first copy may have come when this replica could not use it. A MAC costs
    // what the fingerprint would: MAC'd ones are checked each time.
    const dedupe = envelope.macs === undefined && DEDUPLICATED.has(envelope.body.type);
    const fingerprint = dedupe ? sha256Base64(bytes) : "";
    const seenBefore = dedupe && r.seenMessages.has(fingerprint);
    const { from, epoch, body } = envelope;
    if (from === r.config.self) {
      // Our own message relayed back (a retransmitted PRE_PREPARE): nothing to learn.
      r.count("own-messages");
      return;
    }
    if (!r.config.ids.includes(from)) {
      r.problem("malformed", from, "a message from no known peer");
      return;
    }
    if (body.type === "NEW_KEY") {
      onNewKey(r, from, body.certificate);
      return;
    }
    if (body.type === "KEY_QUERY") {
      // Answered unchecked: what it asks for is public, and signed by boards. Checked, two
      // replicas that each lack the other's current key (a NEW_KEY lost to a connection that
      // dropped) would each refuse the other's question, and never learn it.
      onKeyQuery(r, from);
      return;
    }
    const verdict =
      // Not for a revoked key: a replay of its bytes would put back the votes revocation dropped.
      seenBefore && r.ring.checkEpoch(from, epoch) === "ok"
        ? "ok"
        : envelope.macs !== undefined
          ? checkMacs(r, envelope)
          : r.ring.checkReplica(from, epoch, envelope.signed, envelope.sig);
    if (seenBefore) r.count("verify-skipped");
    if (verdict === "for-former-key") {
      // MAC'd for this replica's former self (queued while it was down, or sent before the peer
      // knew its new key): no one's fault, and of no use. Counted, not kept; the peer gets this
      // replica's new key and then its new half (both at most once per status interval).
      r.count("rejected.for-former-key");
      relayKeys(r, from);
      sendSessionTo(r, from, true);
      return;
    }
    if (body.type === "SESSION" && (verdict === "stale-epoch" || verdict === "revoked-key")) {
      // A half under a key since renewed or revoked gives nothing. It is most often not its
      // owner's doing: peers relay the SESSIONs they hold with their keys (`relayKeys`), and one
      // that has not heard of the renewal relays the old one. Counted, not reported against the
      // owner, as relayed certificates are.
      r.count(`rejected.session-${verdict}`);
      return;
    }
    if (verdict !== "ok") {
      r.problem(verdict, from, `${body.type} under epoch ${epoch}`);
      if (verdict === "unknown-epoch") queryKey(r, from);
      // Handled again once its key or session half comes (`awaiting-keys.ts`).
      if ((verdict === "unknown-epoch" || verdict === "no-session") && verdict !== keptFor) {
        const message = { wire: envelope.wire, epoch, keptFor: verdict } as const;
        const { kept, dropped } = r.awaitingKeys.keep(from, message, body.type === "SESSION");
        if (kept) r.count("awaiting-keys.kept");
        r.count("awaiting-keys.dropped", dropped);
      }
      // No session with it, or its MAC for this replica fails (it may hold a half of this
      // replica's former key): this replica's half goes to it, with a request for its own.
      if (verdict === "no-session" || verdict === "bad-mac") sendSessionTo(r, from, true);
      return;
    }
    r.count(`in.${body.type}`);
    if (dedupe && !seenBefore) r.seenMessages.add(fingerprint);
    try {
      dispatch(r, envelope);
    } catch (error) {
      // A bug a message can reach must not end the replica (its agent would restart it, and the
      // sender would send it again): the message is dropped and counted; the bug stays visible.
      r.problem("handler-fault", from, `${body.type}: ${(error as Error).message}`.slice(0, 200));
    }
    return;
  }
}

/** A MAC'd envelope: the sender's current key epoch here, and this replica's MAC in it checks. */
function checkMacs(
  r: ReplicaState,
  envelope: ReplicaEnvelope,
):
  | "ok"
  | "stale-epoch"
  | "unknown-epoch"
  | "revoked-key"
  | "no-session"
  | "bad-mac"
  | "for-former-key" {
  const epochVerdict = r.ring.checkEpoch(envelope.from, envelope.epoch);
  if (epochVerdict !== "ok") return epochVerdict;
  const madeFor = envelope.macEpochs?.get(r.config.self);
  if (madeFor !== undefined && madeFor < r.epoch) return "for-former-key";
  const mac = envelope.macs?.get(r.config.self);
  if (r.sessions === undefined || mac === undefined) return "bad-mac";
  return r.sessions.check(envelope.from, envelope.epoch, envelope.signed, mac);
}

/** One dispatcher: each message type to the step function of its sub-protocol. */
function dispatch(r: ReplicaState, envelope: ReplicaEnvelope): void {
  const { from, body } = envelope;
  switch (body.type) {
    case "PRE_PREPARE":
      onPrePrepare(r, from, body, envelope);
      return;
    case "PREPARE":
      onPrepare(r, from, body);
      return;
    case "COMMIT":
      onCommit(r, from, body);
      return;
    case "CHECKPOINT":
      onCheckpoint(r, from, body);
      return;
    case "VIEW_CHANGE":
      onViewChange(r, envelope);
      return;
    case "NEW_VIEW":
      onNewView(r, from, body, envelope.wire);
      return;
    case "HANDOFF":
      onHandoff(r, from, body.view);
      return;
    case "HOLD":
      onHold(r, from, body, envelope);
      return;
    case "HOLDERS":
      onHolders(r, from, body);
      return;
    case "STATUS":
      onStatus(r, from, body);
      return;
    case "EXECUTED":
      onExecuted(r, from, body.entries);
      return;
    case "FETCH_META":
    case "FETCH_CLIENTS":
    case "FETCH_LEAVES":
    case "FETCH_PARTS":
      serveFetch(r, from, body);
      return;
    case "META":
    case "CLIENTS":
    case "LEAVES":
    case "PARTS":
    case "NO_CHECKPOINT":
      if (r.transfer) applyTransferStep(r, r.transfer.onReply(from, body, r.nowMs), from);
      return;
    case "FETCH_BATCH":
      serveBatch(r, from, body);
      return;
    case "BATCH":
      onBatch(r, from, body);
      return;
    case "SESSION":
      onSession(r, from, envelope.epoch, body, envelope.wire);
      break;
    case "KEYS":
      onKeys(r, from, body.certificates);
      return;
    default:
      // REPLY and READ_REPLY are for clients; a replica ignores them.
      return;
  }
}
