/**
 * What one replica knows, and the few things every sub-protocol does with it (sign, send, count,
 * report). The step functions of the sub-protocols beside this file read and change it; nothing
 * outside this folder does: `ReplicaCore` is the replica's interface.
 */
import type { KeyCertificate, KeyLease } from "@smw/wiring";
import type { KvResult } from "../kv/kv-operation.js";
import type { KvSnapshot } from "../kv/kv-snapshot.js";
import { KvStore } from "../kv/kv-store.js";
import { AnswerAllowance } from "./answer-allowance.js";
import { AwaitingKeys } from "./awaiting-keys.js";
import { ClientAllowance } from "./client-allowance.js";
import { ClientSessions } from "./client-sessions.js";
import { ClientTable, checkpointDigest } from "./client-table.js";
import type { KeyRing, Signer } from "./key-ring.js";
import type { LargeResends } from "./large-resends.js";
import {
  type BatchBody,
  type ClientRequest,
  type ClientTableEntry,
  type ExecutedEntry,
  MAC_TYPES,
  type ReplicaBody,
  type ReplicaEnvelope,
  type SeqDigest,
  sealEnvelope,
  sealEnvelopeWithMacs,
  type ViewSeqDigest,
} from "./messages.js";
import type { Quorums } from "./quorums.js";
import { ReadSince } from "./read-since.js";
import { RecentSet } from "./recent-set.js";
import { type KeyAgreement, Sessions } from "./sessions.js";
import type { StateTransfer } from "./state-transfer.js";

/** A view entered, as its NEW_VIEW showed it (see `ReplicaState.viewsEntered`). */
export interface EnteredView {
  view: number;
  primary: string;
  /** Per replica: the lowest key epoch the view's VIEW_CHANGEs held for it. */
  minEpochs: number[];
  /** Per replica: the (k' + 1)-th highest, one that at least one correct sender held. */
  vouchedEpochs: number[];
  /**
   * The primaries of the views k' + 1 of its VIEW_CHANGEs passed over, each with the key epochs
   * (per replica, as `vouchedEpochs`) that k' + 1 of those naming it held.
   */
  passedOver: { primary: string; vouchedEpochs: number[] }[];
}

/** How many entered views a replica keeps (`viewsEntered`), in multiples of n. */
export const VIEWS_REMEMBERED_PER_REPLICA = 4;

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
  /** Longest EXECUTED or PARTS reply, in bytes of payload (`HOST_MAX_REPLY_BYTES` on hosts). */
  maxReplyBytes: number;
  /**
   * The groups the boards rejuvenate, in their order (the testbed's rejuvenation order);
   * default: the replicas in id order, k per group.
   */
  rejuvenationGroups?: ReadonlyArray<readonly string[]>;
  /** How many view-change timeouts a client's first suspicion lasts (default `SUSPICION_TIMEOUTS`). */
  suspicionTimeouts?: number;
  /** What one client may cost this replica a second, in bytes (`client-allowance.ts`; default `CLIENT_BYTES_PER_SECOND`). */
  clientBytesPerSecond?: number;
  /**
   * The bodies one VIEW_CHANGE carries, in bytes as `requestBytesAtMost` counts them (default
   * `viewChangeBodyBudget`: a NEW_VIEW of n VIEW_CHANGEs within half a frame). The rest are
   * fetched (`batch-fetch.ts`).
   */
  viewChangeBodyBytes?: number;
  /**
   * The client table's entries one META or CLIENTS carries, in bytes as JSON writes them
   * (default `maxReplyBytes`); the rest are fetched page by page (`state-transfer.ts`).
   */
  clientsPageBytes?: number;
}

export interface StartingState {
  /** The stored checkpoint, if one was found and decoded (not trusted when recovering). */
  checkpoint?: { seq: number; snapshot: KvSnapshot; clients: ClientTableEntry[] };
  /** A rejuvenated replica does not trust its stored state: it recovers from its peers first. */
  recovering: boolean;
  /**
   * Its board released it in a cold start (every replica was held in reset since its last vote):
   * it remembers nothing and neither does anyone, so it is not amnesic among peers that remember;
   * the replicas agree in a first view change on the stored checkpoint to start from
   * (`cold-start.ts`).
   */
  coldStart?: boolean;
  /** The checkpoints stored before `checkpoint`, newest first: a cold start may agree on one. */
  olderCheckpoints?: ReadonlyArray<{
    seq: number;
    snapshot: KvSnapshot;
    clients: ClientTableEntry[];
  }>;
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
  | "bad-holders"
  /** A BATCH whose body is not the batch asked for (`batch-fetch.ts`). */
  | "bad-batch"
  | "bad-transfer-reply"
  | "bad-certificate"
  | "view-out-of-window"
  | "handler-fault"
  | "diverged"
  | "no-session"
  | "bad-mac"
  /** State-transfer requests beyond what the asker is answered (`answer-allowance.ts`). */
  | "fetch-over-allowance"
  /** Not the sender's fault: a NEW_VIEW below the view this replica asked for, refused. */
  | "below-own-view-change";

/**
 * The kinds refused, from a replica's message, before anything proved who sent it: its sender is
 * only what the envelope claims, and anyone can write any name there (an epoch is checked before
 * any signature, a MAC that fails proves nothing, a NEW_KEY is read unsigned as its certificate
 * carries a board's signature, and an unknown client is a name inside a request, which a primary
 * relays). Logs say "said to be from" for these, so that no reader takes a forgery for its named
 * sender's fault. The default only: a caller that knows better says so (`problem`'s `proven`):
 * a client's messages come on a connection that proved its client (the hello's challenge), and a
 * certificate refused in a peer's KEYS came in a message whose signature or MAC checked.
 */
const SENDER_UNPROVEN: ReadonlySet<ProblemKind> = new Set<ProblemKind>([
  "malformed",
  "bad-signature",
  "stale-epoch",
  "unknown-epoch",
  "revoked-key",
  "no-session",
  "bad-mac",
  "bad-certificate",
  "unknown-client",
]);

/** Whether a problem of this kind was found in a message its named sender is proven to have sent. */
export function senderProven(kind: ProblemKind): boolean {
  return !SENDER_UNPROVEN.has(kind);
}

export type ReplicaAction =
  | { type: "send"; to: string; message: Buffer }
  | { type: "broadcast"; message: Buffer }
  | { type: "reply"; client: string; message: Buffer }
  /**
   * Anything `client` sends before `untilMs` (this core's clock) is dropped unread: its
   * connections need not be read until then.
   */
  | { type: "hold-client"; client: string; untilMs: number }
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
  /** A peer's current key, or its session half under it, is known here from now on. */
  | { type: "learned"; what: "key" | "session"; host: string }
  /** A cold start: the state this replica starts from (its own copy, or fetched). */
  | { type: "cold-start-state"; seq: number; digest: string }
  | {
      type: "problem";
      kind: ProblemKind;
      from: string;
      detail: string;
      /** Whether anything proved that `from` sent it (`senderProven`, unless the caller knew). */
      senderProven: boolean;
    };

export type Mode = "normal" | "view-change" | "recovering";

export interface Slot {
  view: number;
  digest?: string;
  /** The batch's origin (`BatchBody`), known with its requests. */
  origin?: string;
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
  /**
   * Digests of the PRE_PREPARE's requests that their clients have not sent this replica since it
   * started: it votes for the batch only once they have (`normal-case.ts`, `onRequest`).
   */
  awaiting?: Set<string>;
  /**
   * The primary that sent the PRE_PREPARE had its key revoked since (`keys.ts`, `revokeKeys`)
   * before the slot prepared here: its word counts no more, so the slot neither prepares nor is
   * attested in its view.
   */
  primaryRevoked?: true;
  /** When its large messages were sent again to each peer (`large-resends.ts`). */
  largeResends?: LargeResends;
}

export interface OwnCheckpoint {
  seq: number;
  digest: string;
  snapshot: KvSnapshot;
  clients: ClientTableEntry[];
}

export const GENESIS_CLIENTS: ClientTableEntry[] = [];

/**
 * State-transfer answers one asker gets at once, and per status interval after that; and STATUS
 * messages of one peer answered. A correct asker has one request out at a time, and a 4 MiB
 * answer takes longer to make than a quarter interval, so a full transfer of the benchmark's
 * 64 MiB state is not slowed by it; a correct peer sends one STATUS per interval, and a few more
 * while it recovers.
 */
const ANSWER_BURST = 4;

export class ReplicaState {
  out: ReplicaAction[] = [];
  /**
   * No checkpoint was stored (a first start, a wiped disk): the starting state is written down
   * as checkpoint 0 at `start`, so that a cold start while the service is young finds a state
   * that enough disks hold (`storeStartingState`).
   */
  readonly startedFromNothing: boolean;
  nowMs = 0;
  mode: Mode;
  view = 0;
  epoch: number;
  store: KvStore;
  /** Since when each read's result has held (READ_REPLY's `since`); reset with the store. */
  readSince: ReadSince;
  clients: ClientTable;
  lastExecuted: number;
  stable: SeqDigest;
  readonly ownCheckpoints = new Map<number, OwnCheckpoint>();
  /** seq -> "digest" -> replicas that sent CHECKPOINT for it. */
  readonly checkpointVotes = new Map<number, Map<string, Set<string>>>();
  /** Per sequence number: voters whose CHECKPOINT vote there was cast under a key since revoked. */
  readonly revokedCheckpointVoters = new Map<number, Set<string>>();
  readonly slots = new Map<number, Slot>();
  /** PBFT's P and Q sets: what this replica prepared / saw pre-prepared, above the stable checkpoint. */
  readonly preparedInfo = new Map<number, ViewSeqDigest>();
  readonly prePreparedInfo = new Map<number, Map<string, number>>();
  readonly batchesByDigest = new Map<string, { origin: string; requests: ClientRequest[] }>();
  /** Batches executed above the stable checkpoint: the log suffix peers may ask for. */
  readonly executedLog = new Map<number, ExecutedEntry>();
  readonly executedAtMs = new Map<number, number>();
  /** Digests of messages seen lately: a duplicate is dropped before its signature is checked again. */
  readonly seenMessages = new RecentSet(8192);
  /** EXECUTED reports from peers: seq -> digest -> senders, and the requests. */
  readonly executedReports = new Map<number, Map<string, Set<string>>>();
  readonly reportedBatches = new Map<string, ExecutedEntry>();
  nextSeq: number;
  /** Requests known but not yet executed, by digest. */
  readonly pending = new Map<string, ClientRequest>();
  /**
   * Since when each pending request has waited (in this view): PBFT's per-request timers. The
   * primary is suspected once the oldest has waited a view-change timeout, whatever else
   * executes meanwhile (a primary that executes empty batches, or other clients' requests, does
   * not starve one client).
   */
  readonly pendingSinceMs = new Map<string, number>();
  readonly queued: string[] = [];
  /** Slots of this view waiting for a request's copy from its client, since when (`armSuspicion`). */
  readonly awaitingSinceMs = new Map<number, number>();
  /** When each pending request came in: one not proposed half a timeout later is held (`HOLD`). */
  readonly receivedAtMs = new Map<string, number>();
  /** Per request: the latest view it was seen proposed in here (a PRE_PREPARE, a NEW_VIEW). */
  readonly proposedIn = new Map<string, number>();
  /**
   * Clients suspected of sending requests to too few replicas: named by k' + 1 VIEW_CHANGEs of a
   * NEW_VIEW this replica entered (`request-holds.ts`). Their requests are proposed only once
   * 2k' replicas other than the primary hold them.
   */
  readonly suspects = new Set<string>();
  /** When each suspect's suspicion lapses (`expireSuspicions`). */
  readonly suspectedUntilMs = new Map<string, number>();
  /** How many times each client was made a suspect in this replica's life (its back-off). */
  readonly timesSuspected = new Map<string, number>();
  /** HOLDs heard: per client, per sender, the newest request the sender said it holds. */
  readonly holds = new Map<
    string,
    Map<string, { ts: number; digest: string; epoch: number; wire: Buffer }>
  >();
  /** When this replica last sent a HOLD for each request, and that HOLD as signed. */
  readonly holdSentAtMs = new Map<string, number>();
  readonly holdSent = new Map<string, Buffer>();
  /** How many times a large request's HOLDERS went again (`large-resends.ts`). */
  readonly holdersResends = new Map<string, number>();
  /** When a large executed batch went again to each peer in an EXECUTED (`large-resends.ts`). */
  readonly executedResends = new Map<number, LargeResends>();
  /** Per client: the newest request from it this replica holds and has not seen proposed. */
  readonly newestUnproposed = new Map<string, string>();
  /** When this replica last relayed the HOLDs it counted for each request to the primary. */
  readonly holdsRelayedAtMs = new Map<string, number>();
  /** Requests received from their own clients since this replica started (SAFETY.md, "Where a request comes from"). */
  readonly fromClient = new RecentSet(65_536);
  progressDeadlineMs: number | undefined;
  /** View changes started while requests waited, since the last request executed (`progress-timeout.ts`). */
  stalledViewChanges = 0;
  handingOff = false;
  // view change
  targetView = 0;
  viewChangeDeadlineMs = 0;
  viewChangeAttempts = 0;
  /** The views asked for since the last view entered (or key learned) and left unentered (`passedOver`). */
  readonly viewsPassedOver: number[] = [];
  /**
   * VIEW_CHANGEs by sender, then by view. A VIEW_CHANGE for v still helps form v after its
   * sender asked for v+1 (replicas timing out at different moments meet that way), so several
   * are kept; but at most VIEW_CHANGES_PER_PEER of each peer's, its newest, so that no peer can
   * crowd out the others' by flooding views.
   */
  readonly viewChanges = new Map<string, Map<number, ReplicaEnvelope>>();
  readonly sentNewView = new Set<number>();
  /**
   * The highest view this replica has sent a VIEW_CHANGE for. It never enters a lower view: a
   * view formed later from that VIEW_CHANGE would not know what it prepared there.
   */
  highestViewChangeSent = 0;
  /**
   * The NEW_VIEW of the current view as sent by its primary (whoever formed or accepted it), for
   * peers still in an older view: a replica enters a view only with that view's NEW_VIEW.
   */
  newViewMessage: Buffer | undefined;
  /** When this replica last forwarded its NEW_VIEW to each lagging peer. */
  readonly newViewSentAtMs = new Map<string, number>();
  /** When this replica entered its current view. */
  viewEnteredAtMs = 0;
  /** Views peers report in STATUS, for a replica that lags behind in views. */
  readonly peerViews = new Map<string, number>();
  /** Per peer: when its last STATUS came (`viewChangeFailed` counts only recent ones). */
  readonly peerStatusAtMs = new Map<string, number>();
  readonly peerExecuted = new Map<string, number>();
  readonly peerStable = new Map<string, number>();
  readonly peerPrepared = new Map<string, number>();
  /**
   * The batches the current view's NEW_VIEW fixed above its checkpoint, by sequence number:
   * what every replica entering the view takes at those numbers, whoever first proposed them.
   */
  readonly viewProposals = new Map<number, BatchBody>();
  /**
   * Bodies of batches the current view's NEW_VIEW fixed that this replica lacks, by sequence
   * number: what it asks peers for (`batch-fetch.ts`).
   */
  readonly missingBatches = new Map<
    number,
    { digest: string; holders: string[]; asked: number; askedAtMs: number }
  >();
  /** Null batches a primary proposes, when idle, up to this sequence number. */
  padUntil = 0;
  // state transfer and recovery
  transfer: StateTransfer | undefined;
  /** Fixed once a quorum's worth of peers has reported, so a busy service is not chased forever. */
  catchUpTarget: { executed: number; stable: number; checkpoint: number } | undefined;
  recoveredReported: boolean;
  /**
   * Rejuvenated: what it voted before is forgotten. It casts no vote (PRE_PREPARE, PREPARE,
   * COMMIT, VIEW_CHANGE) until it enters a view whose NEW_VIEW was formed only from VIEW_CHANGEs
   * written after their senders held its new key (SAFETY.md, "A replica that lost its memory").
   */
  amnesic: boolean;
  /** Started from `recovering: true` (rejuvenated): what it forgot is what `amnesic` covers. */
  readonly startedAmnesic: boolean;
  /**
   * The highest sequence number the fresh view it joined fixed: its own VIEW_CHANGEs would say
   * nothing of what it forgot below, so it sends none until a stable checkpoint covers this.
   */
  amnesiaHorizon = 0;
  /** Released in a cold start and in no view yet (see `StartingState.coldStart`). */
  coldStart: boolean;
  /**
   * Per replica: the lowest key epoch any VIEW_CHANGE behind the current view held for it (-1 for
   * view 0, which has no NEW_VIEW).
   */
  get viewKeyEpochs(): readonly number[] {
    return this.viewsEntered.at(-1)?.minEpochs ?? this.config.ids.map(() => -1);
  }
  /**
   * The views entered lately (the newest last, at most `VIEWS_REMEMBERED_PER_REPLICA` × n), as their NEW_VIEWs
   * show them: the same at every correct replica that entered them, whenever it learned which
   * key. `refreshViewFor` changes to none of the primaries whose views were not fresh for a peer.
   */
  readonly viewsEntered: EnteredView[] = [];
  /** Per amnesic peer: the "epoch@view" a refreshing view change was started for already. */
  readonly refreshedFor = new Map<string, string>();

  nextStatusMs = 0;
  readonly keyQueryAtMs = new Map<string, number>();
  /** Per peer: the SESSION that gave its current half here, as signed (`relayKeys` passes it on). */
  readonly sessionWires = new Map<string, { epoch: number; wire: Buffer }>();
  /** Per peer: when this replica's keys were last relayed to it (`relayKeys`). */
  readonly keysRelayedAtMs = new Map<string, number>();
  /** Per peer still catching up: when this replica last answered its STATUS (`peer-status.ts`). */
  readonly statusAnsweredAtMs = new Map<string, number>();
  /** State-transfer answers per asker (`serveFetch`): a burst of 4, then 4 per status interval. */
  readonly fetchAnswers: AnswerAllowance;
  /** What each client costs: its messages and its read answers, in bytes (`client-allowance.ts`). */
  readonly clientAllowance: ClientAllowance;
  /** STATUS messages per peer that this replica answers with what it sends (`onStatus`): as many. */
  readonly statusAnswers: AnswerAllowance;
  /** Per peer: when certificates it lacked were last sent to it (`sendMissingKeys`). */
  readonly keysSentAtMs = new Map<string, number>();
  /** Session keys with the peers (`sessions.ts`); undefined when the scheme has no key agreement. */
  readonly sessions: Sessions | undefined;
  /** Session keys with clients, for MAC'd replies; undefined when the scheme has no key agreement. */
  readonly clientSessions: ClientSessions | undefined;
  /** NEW_VIEWs that named a key epoch not known here yet, by view: taken again as keys arrive. */
  readonly newViewsAwaitingKeys = new Map<
    number,
    { from: string; body: Extract<ReplicaBody, { type: "NEW_VIEW" }>; wire: Buffer }
  >();
  /** Messages from peers that could not be checked yet for want of their key or session half. */
  readonly awaitingKeys = new AwaitingKeys();
  /** When this replica last sent its SESSION to each peer that asked (or whose MAC failed). */
  readonly sessionSentAtMs = new Map<string, number>();
  /** The board's newest lease on this replica's current key (`KeyLease`), for clients. */
  lease: KeyLease | undefined;
  /** Clients that asked for keys here: each new lease goes to them (the client list bounds it). */
  readonly leaseClients = new Set<string>();
  readonly counters = new Map<string, number>();

  constructor(
    readonly config: ReplicaConfig,
    readonly ring: KeyRing,
    public signer: Signer,
    certificate: KeyCertificate | undefined,
    start: StartingState,
  ) {
    const { ids, self } = config;
    if (!ids.includes(self))
      throw new RangeError(`replica ${self} is not one of ${ids.join(", ")}`);
    if (ids.length !== config.quorums.n) throw new RangeError("ids and quorums disagree on n");
    const allowance = {
      burst: ANSWER_BURST,
      refillMs: config.statusIntervalMs / ANSWER_BURST,
    };
    this.fetchAnswers = new AnswerAllowance(allowance);
    const clientRate = config.clientBytesPerSecond;
    this.clientAllowance = new ClientAllowance(clientRate, clientRate);
    this.statusAnswers = new AnswerAllowance(allowance);
    this.epoch = certificate?.period ?? 0;
    this.sessions = ring.agreesKeys
      ? new Sessions(self, this.epoch, () => ring.newKeyAgreement() as KeyAgreement)
      : undefined;
    this.clientSessions = ring.agreesKeys
      ? new ClientSessions(self, this.epoch, () => ring.newKeyAgreement() as KeyAgreement)
      : undefined;
    for (const { host, before } of start.revokedKeys ?? [])
      if (host !== self) ring.revoke(host, before);
    if (certificate) ring.install(certificate);
    const cp = start.checkpoint;
    this.startedFromNothing = cp === undefined;
    this.store = cp ? KvStore.fromSnapshot(cp.snapshot) : new KvStore();
    this.clients = ClientTable.from(cp?.clients ?? GENESIS_CLIENTS);
    this.lastExecuted = cp?.seq ?? 0;
    this.readSince = new ReadSince(this.lastExecuted);
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
    this.coldStart = start.coldStart === true && !start.recovering;
    this.recoveredReported = !start.recovering && !this.coldStart;
    this.amnesic = start.recovering;
    this.startedAmnesic = start.recovering;
    // Offered too, the oldest as the stable one: the replicas' last checkpoints may be an
    // interval or two apart, and one that took its last by transfer never held the one before.
    let below = this.lastExecuted;
    for (const older of this.coldStart ? (start.olderCheckpoints ?? []) : []) {
      if (older.seq >= below) continue;
      below = older.seq;
      const olderDigest = checkpointDigest(
        older.snapshot.root().toString("hex"),
        ClientTable.from(older.clients).digest(),
      );
      this.ownCheckpoints.set(older.seq, {
        seq: older.seq,
        digest: olderDigest,
        snapshot: older.snapshot,
        clients: older.clients,
      });
      this.stable = { seq: older.seq, digest: olderDigest };
    }
  }

  /** PRE_PREPARE, PREPARE and COMMIT: only with a memory of every vote it cast in this view. */
  mayVote(): boolean {
    return !this.amnesic && this.mode !== "recovering";
  }

  /** VIEW_CHANGE: only once nothing it forgot lies above its stable checkpoint. */
  mayChangeView(): boolean {
    return !this.amnesic && this.stable.seq >= this.amnesiaHorizon;
  }

  /** The digest of the state as executed so far (for checks, not for the protocol). */
  stateDigest(): string {
    return checkpointDigest(this.store.rootDigest().toString("hex"), this.clients.digest());
  }

  primaryOf(view: number): string {
    return this.config.ids[view % this.config.ids.length] as string;
  }

  count(name: string, by = 1): void {
    if (by !== 0) this.counters.set(name, (this.counters.get(name) ?? 0) + by);
  }

  /**
   * `proven`: whether the sender is proven, where the kind alone does not say (a certificate
   * refused in a peer's checked KEYS, a client's message on its proven connection).
   */
  problem(kind: ProblemKind, from: string, detail: string, proven = senderProven(kind)): void {
    this.count(`rejected.${kind}`);
    this.out.push({ type: "problem", kind, from, detail, senderProven: proven });
  }

  drain(): ReplicaAction[] {
    const actions = this.out;
    this.out = [];
    return actions;
  }

  /** Signed: for anyone to check, and to show to third parties. */
  seal(body: ReplicaBody): Buffer {
    const from = this.config.self;
    return sealEnvelope(from, this.epoch, body, (bytes) => this.signer.sign(bytes));
  }

  /**
   * The normal case's messages with a MAC for each of `receivers` when this replica holds a
   * session with each at its current key epoch; signed otherwise (a signature is always taken).
   */
  sealFor(body: ReplicaBody, receivers: readonly string[]): Buffer {
    const sessions = this.sessions;
    if (sessions !== undefined && MAC_TYPES.has(body.type)) {
      const macs = sealEnvelopeWithMacs(
        this.config.self,
        this.epoch,
        body,
        receivers,
        (to, digest) => {
          const epoch = this.ring.keyOf(to)?.epoch;
          return epoch === undefined ? undefined : sessions.macOfDigest(to, epoch, digest);
        },
        (to) => this.ring.keyOf(to)?.epoch,
      );
      if (macs !== undefined) {
        this.count("sealed.mac");
        return macs;
      }
    }
    if (MAC_TYPES.has(body.type)) this.count("sealed.signature");
    return this.seal(body);
  }

  /** Every replica but this one. */
  peers(): string[] {
    return this.config.ids.filter((id) => id !== this.config.self);
  }

  broadcast(body: ReplicaBody): Buffer {
    const message = this.sealFor(body, this.peers());
    this.out.push({ type: "broadcast", message });
    return message;
  }

  send(to: string, body: ReplicaBody): void {
    this.out.push({ type: "send", to, message: this.sealFor(body, [to]) });
  }

  /** As `send`, signed even where a MAC would do (for a receiver that may lack the session). */
  sendSigned(to: string, body: ReplicaBody): void {
    this.out.push({ type: "send", to, message: this.seal(body) });
  }

  get primary(): string {
    return this.primaryOf(this.view);
  }

  get isPrimary(): boolean {
    return this.primary === this.config.self && this.mode === "normal";
  }
}
