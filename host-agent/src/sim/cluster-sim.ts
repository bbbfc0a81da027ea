/**
 * The whole replicated service in one process, from a seed: replicas,
 * clients, a network that loses, duplicates, delays, reorders and
 * partitions, Byzantine replicas, and boards that rejuvenate k replicas at a
 * time (planned shutdown, downtime, a new key epoch, stored state intact,
 * wiped or corrupted). The properties are checked as the run goes; a failing
 * seed replays exactly.
 */
import {
  certificateSigningBytes,
  type KeyCertificate,
  type KeyLease,
  leaseSigningBytes,
} from "@smw/wiring";
import { KvClientCore } from "../client/kv-client-core.js";
import { type KvOperation, MAX_SCAN_LIMIT } from "../kv/kv-operation.js";
import type { KvSnapshot } from "../kv/kv-snapshot.js";
import { KvStore } from "../kv/kv-store.js";
import { transferRetryMs } from "../replica/catch-up.js";
import { KeyRing, type Signer } from "../replica/key-ring.js";
import {
  type ClientTableEntry,
  encodeClientMessage,
  parseClientMessage,
  parseEnvelope,
  readDigest,
  requestDigest,
  sealEnvelope,
} from "../replica/messages.js";
import { quorumsFor } from "../replica/quorums.js";
import { type ReplicaAction, ReplicaCore } from "../replica/replica-core.js";
import { keptCheckpointSeqs } from "../storage/checkpoint-retention.js";
import {
  type AimedPlan,
  BYZANTINE_BEHAVIOURS,
  type ByzantineBehaviour,
  ByzantineFilter,
  type Outgoing,
} from "./byzantine.js";
import { EventQueue } from "./event-queue.js";
import { HistoryChecker } from "./history-checker.js";
import { Prng } from "./prng.js";
import { SimCrypto } from "./sim-crypto.js";
import { replicaIds, type Scenario } from "./sim-scenario.js";

const REPLICA_TICK_MS = 10;
const CLIENT_TICK_MS = 50;
const MISCHIEF_EVERY_MS = 100;
/** How long the service idles at the end of a run while its traffic is counted. */
const IDLE_WINDOW_MS = 2_000;
/**
 * Its bound, per peer per status interval: at most 3.94 in 300 seeds (the status traffic and
 * rate-limited answers to Byzantine peers' queries), so a margin of two and a half.
 */
const IDLE_MESSAGES_PER_PEER_PER_INTERVAL = 10;

/**
 * The boards' key leases (`KeyLease`): each lasts this long and is renewed four times a lease
 * while its replica runs outside its rejuvenation; a replica goes down (and the adversary may
 * leave it) only once its last lease lapsed (as the boards' shutdown step waits for it).
 */
const SIM_KEY_LEASE_MS = 600;
/** How far each client's clock is from the boards' at most (each is drawn within it). */
const SIM_CLIENT_CLOCK_BOUND_MS = 100;

/** Clients' first timestamp, as large as the real clients' (the wall clock in microseconds). */
const SIM_FIRST_TS = 1_764_000_000_000_000;

export interface SimResult {
  seed: number;
  passed: boolean;
  violations: string[];
  completed: number;
  executedSeqs: number;
  /** Cold starts in the run, and the requests they went back on (executed after the agreed checkpoint). */
  coldStarts: number;
  lostToColdStart: number;
  viewChanges: number;
  rejuvenations: number;
  stateTransfers: number;
  rejected: number;
  simulatedMs: number;
  /** The adversary's lies and tricks, by kind. */
  byzantineActions: Record<string, number>;
  /** What correct replicas refused from compromised ones (or their stolen keys), by kind. */
  rejectedFromByzantine: Record<string, number>;
  /** Correct replicas' counters of `SUMMED_COUNTERS`, summed over every core of the run. */
  replicaCounters: Record<string, number>;
}

/**
 * Replica counters the summary adds up: how often clients were suspected, and suspicions lapsed;
 * state transfers that waited a round because no voucher could serve (they had dropped the
 * checkpoint, or lied), and transfers the replica overtook from its peers' log; STATUS messages
 * of peers beyond what a replica answers (`onStatus`); batch bodies a new view fixed that a replica
 * lacked, and those it fetched (`batch-fetch.ts`); pages of a client table served after a META.
 */
export const SUMMED_COUNTERS = [
  "clients.suspected",
  "clients.suspicion-lapsed",
  "view-change.for-amnesic",
  "state-transfer.waiting",
  "state-transfer.overtaken",
  "status.over-allowance",
  "client.over-allowance",
  "batches.missing",
  "batches.fetched",
  "state-transfer.client-pages-served",
] as const;

/** What a held client's connection holds unread at most, in messages (its buffers). */
const HELD_BACKLOG = 64;

/** Holds of a client's connections by correct replicas' hosts (`Scenario.readFlood`). */
const HOLDS_COUNTER = "client.held";

/** Correct replicas' refusals of correct primaries' NEW_VIEWs as below their own VIEW_CHANGE. */
const LEFT_OUT_COUNTER = "new-view.below-own-view-change.from-correct";
/** Correct replicas' refusals of correct replicas' state-transfer requests over their allowance. */
const REFUSED_CORRECT_COUNTER = "fetch-over-allowance.from-correct";

interface StoredCheckpoint {
  seq: number;
  snapshot: KvSnapshot;
  clients: ClientTableEntry[];
}

interface ReplicaNode {
  id: string;
  core: ReplicaCore | undefined;
  signer: Signer;
  epoch: number;
  byzantine: ByzantineFilter | undefined;
  disk: StoredCheckpoint | undefined;
  /** The checkpoints before `disk`, newest first, as the checkpoint files keep them (a cold start offers all). */
  olderDisks: StoredCheckpoint[];
  /** Set while rejuvenated and not yet recovered. */
  restartedAtMs: number | undefined;
  stableAtRestart: number;
}

/** A voice of the adversary's: a key it holds (stolen, or of a replica it holds), and its last lease. */
interface Voice {
  epoch: number;
  signer: Signer;
  lease: KeyLease | undefined;
}

interface ClientNode {
  id: string;
  core: KvClientCore;
  invokedMs: number;
  ops: number;
  /** The highest request number whose first copy went out (the partial-send adversary). */
  firstSentTs: number;
  /** The faulty client (`Scenario.faultyClient`): owed no answer. */
  faulty?: true;
}

export interface SimOptions {
  /** Every protocol event of the run, one line each (for replaying a failing seed). */
  trace?: (line: string) => void;
  /** Tests only: run with a quorum smaller than safe, to show the checks catch it. */
  unsafeQuorum?: number;
  /**
   * Tests only: this correct replica sends its latest message to its peers again every `everyMs`,
   * for as long as the run lasts, to show the idle check catches an exchange that never ends.
   */
  unsafeChatter?: { replica: string; everyMs: number };
  /** Tests only: clients count replies whatever their leases, to show what leases prevent. */
  unsafeIgnoreLeases?: boolean;
  /** Tests only: clients take this many matching answers to an unordered read. */
  unsafeReadQuorum?: number;
  /**
   * Tests only: a host goes down at the end of the shutdown grace, whether or not its key's last
   * lease lapsed (as boards did before), to show what the wait prevents.
   */
  unsafeResetBeforeLapse?: boolean;
}

export function runSimulation(scenario: Scenario, options: SimOptions = {}): SimResult {
  return new ClusterSim(scenario, options).run();
}

class ClusterSim {
  private readonly q = new EventQueue();
  private readonly prng: Prng;
  private readonly net: Prng;
  private readonly adversary: Prng;
  private readonly crypto: SimCrypto;
  private readonly ids: string[];
  private readonly replicas = new Map<string, ReplicaNode>();
  private readonly clients = new Map<string, ClientNode>();
  private readonly boardSigners = new Map<string, Signer>();
  private readonly checker = new HistoryChecker();
  private readonly certificates = new Map<string, KeyCertificate>();
  private readonly oldSigners: Array<{
    id: string;
    epoch: number;
    signer: Signer;
    /** The last lease its board gave on it, which the adversary saw go through the host. */
    lease: KeyLease | undefined;
  }> = [];
  /** Per replica: the key epoch its board leases now (none from its group's start to its boot). */
  private readonly leasing = new Map<string, number>();
  /** Per replica: the last lease its board gave. */
  private readonly lastLeases = new Map<string, KeyLease>();
  /** The oldest state the adversary saw, which its stolen keys answer reads from. */
  private staleState: { seq: number; store: KvStore } | undefined;
  /** Operations the adversary answered already ("client ts voices"). */
  private readonly forgedFor = new Set<string>();
  private forgedReplies = 0;
  private laggardAnswers = 0;
  private heldFromVictim = 0;
  private period = 0;
  private rejuvenations = 0;
  private viewChanges = 0;
  private stateTransfers = 0;
  private rejected = 0;
  private maxExecuted = 0;

  constructor(
    private readonly s: Scenario,
    private readonly options: SimOptions,
  ) {
    this.prng = new Prng(s.seed);
    this.net = this.prng.fork();
    this.adversary = this.prng.fork();
    this.crypto = new SimCrypto(s.seed);
    this.ids = replicaIds(s.n);
  }

  private quorums() {
    const q = quorumsFor(this.s.n, this.s.kPrime, this.s.k);
    return this.options.unsafeQuorum ? { ...q, quorum: this.options.unsafeQuorum } : q;
  }

  /** `onlyOf`: the one replica whose certificate it holds (a restarted replica's own). */
  private ring(onlyOf?: string): KeyRing {
    const boardKeys = new Map<string, string>();
    for (const [id, signer] of this.boardSigners) boardKeys.set(id, signer.publicKey);
    const clientKeys = new Map<string, string>();
    for (const [id, c] of this.clientSigners) clientKeys.set(id, c.publicKey);
    const ring = new KeyRing(this.crypto, boardKeys, clientKeys);
    for (const cert of this.certificates.values())
      if (onlyOf === undefined || cert.host === onlyOf) ring.install(cert);
    return ring;
  }

  private readonly clientSigners = new Map<string, Signer>();

  private certify(id: string, signer: Signer, period: number): KeyCertificate {
    const board = this.boardSigners.get(id) as Signer;
    const body = {
      host: id,
      board: `b-${id}`,
      period,
      publicKey: signer.publicKey,
      issuedAt: "sim",
    };
    const cert = { ...body, signature: board.sign(certificateSigningBytes(body)) };
    this.certificates.set(id, cert);
    this.leasing.set(id, period);
    return cert;
  }

  /** What a board does at a certificate and four times a lease after: its replica's key leased. */
  private leaseNow(node: ReplicaNode): void {
    const epoch = this.leasing.get(node.id);
    if (epoch === undefined || node.core === undefined) return;
    const board = this.boardSigners.get(node.id) as Signer;
    const body = {
      host: node.id,
      board: `b-${node.id}`,
      epoch,
      notAfterMs: Math.floor(this.q.nowMs + SIM_KEY_LEASE_MS),
    };
    const lease = { ...body, signature: board.sign(leaseSigningBytes(body)) };
    this.lastLeases.set(node.id, lease);
    this.emit(node, node.core.installLease(lease, this.q.nowMs));
  }

  private renewLeases(endMs: number): void {
    for (const node of this.replicas.values()) this.leaseNow(node);
    if (this.q.nowMs < endMs) this.q.after(SIM_KEY_LEASE_MS / 4, () => this.renewLeases(endMs));
  }

  private newCore(node: ReplicaNode, recovering: boolean, coldStart = false): ReplicaCore {
    const cert = this.certificates.get(node.id);
    return new ReplicaCore(
      {
        ids: this.ids,
        self: node.id,
        quorums: this.quorums(),
        checkpointInterval: this.s.checkpointInterval,
        batchMax: this.s.batchMax,
        maxInFlight: this.s.maxInFlight,
        viewChangeTimeoutMs: this.s.viewChangeTimeoutMs,
        statusIntervalMs: this.s.statusIntervalMs,
        maxReplyBytes: 256 * 1024,
        ...(this.s.readFlood !== undefined
          ? { clientBytesPerSecond: this.s.readFlood.allowanceBytesPerSecond }
          : {}),
        ...(this.s.suspicionTimeouts !== undefined
          ? { suspicionTimeouts: this.s.suspicionTimeouts }
          : {}),
        ...(this.s.viewChangeBodyBytes !== undefined
          ? { viewChangeBodyBytes: this.s.viewChangeBodyBytes }
          : {}),
        ...(this.s.clientsPageBytes !== undefined
          ? { clientsPageBytes: this.s.clientsPageBytes }
          : {}),
      },
      this.ring((recovering || coldStart) && this.s.restartsKnowNoKeys ? node.id : undefined),
      node.signer,
      cert,
      {
        recovering,
        ...((recovering || coldStart) && node.disk ? { checkpoint: node.disk } : {}),
        ...(coldStart ? { coldStart: true } : {}),
        ...(coldStart ? { olderCheckpoints: node.olderDisks } : {}),
        revokedKeys: [...this.revokedBefore].map(([host, before]) => ({ host, before })),
      },
    );
  }

  /** What the boards have revoked so far: the keys of each host before its latest rejuvenation. */
  private readonly revokedBefore = new Map<string, number>();

  run(): SimResult {
    for (const id of this.ids) this.boardSigners.set(id, this.crypto.newSigner(`board-${id}`));
    for (let i = 1; i <= this.s.clients; i++)
      this.clientSigners.set(`c${i}`, this.crypto.newSigner(`client-c${i}`));
    // Drawn after the others, so that scenarios without it keep their keys.
    const faultyId = `c${this.s.clients + 1}`;
    if (this.s.faultyClient !== undefined)
      this.clientSigners.set(faultyId, this.crypto.newSigner(`client-${faultyId}`));
    for (const id of this.ids) {
      const signer = this.crypto.newSigner(`${id}-e0`);
      this.certify(id, signer, 0);
      const byz = this.s.byzantine.find((b) => b.replica === id);
      const node: ReplicaNode = {
        id,
        core: undefined,
        signer,
        epoch: 0,
        byzantine: undefined,
        disk: undefined,
        olderDisks: [],
        restartedAtMs: undefined,
        stableAtRestart: 0,
      };
      if (byz) node.byzantine = this.byzantineFilter(node, byz.behaviours);
      this.replicas.set(id, node);
    }
    for (const node of this.replicas.values()) {
      node.core = this.newCore(node, false);
      this.emit(node, node.core.start(0));
      this.scheduleTick(node, node.core);
      this.leaseNow(node);
    }
    const endMs = this.s.loadUntilMs + this.s.livenessBoundMs;
    this.q.after(SIM_KEY_LEASE_MS / 4, () => this.renewLeases(endMs));
    // Each client's clock off the boards' by up to the bound, drawn from a stream of its own.
    const clocks = new Prng(this.s.seed * 104_729 + 3);
    for (const [id, signer] of this.clientSigners) {
      const clockOffsetMs = clocks.int(-SIM_CLIENT_CLOCK_BOUND_MS, SIM_CLIENT_CLOCK_BOUND_MS);
      const core = new KvClientCore(
        {
          id,
          replicas: this.ids,
          replyQuorum: this.quorums().quorum,
          readQuorum: this.options.unsafeReadQuorum ?? this.quorums().unorderedRead,
          retransmitMs: 500,
          firstTs: SIM_FIRST_TS,
          ...(this.options.unsafeIgnoreLeases === true
            ? {}
            : { leaseClockBoundMs: SIM_CLIENT_CLOCK_BOUND_MS, keyLeaseMs: SIM_KEY_LEASE_MS }),
          wallClockMs: () => this.q.nowMs + clockOffsetMs,
        },
        this.ring(),
        signer,
      );
      const client: ClientNode = { id, core, invokedMs: 0, ops: 0, firstSentTs: 0 };
      this.clients.set(id, client);
      this.clientSend(client, core.start());
      if (id === faultyId) {
        client.faulty = true;
        this.q.after(this.prng.int(0, 50), () => this.nextFaultyWrite(client));
      } else this.q.after(this.prng.int(0, 50), () => this.nextOperation(client));
      this.scheduleClientTick(client);
    }
    if (this.s.byzantine.length > 0) this.scheduleMischief();
    if (this.s.readFlood !== undefined) this.q.after(this.prng.int(0, 50), () => this.readFlood());
    const chatter = this.options.unsafeChatter;
    if (chatter !== undefined) {
      const again = () => {
        if (this.latestSent !== undefined) this.deliverAll(chatter.replica, [this.latestSent]);
        this.q.after(chatter.everyMs, again);
      };
      this.q.after(chatter.everyMs, again);
    }
    if (this.s.rejuvenation) this.q.at(this.s.rejuvenation.startMs, () => this.rejuvenateGroup(0));
    const cold = this.s.coldStart;
    if (cold !== undefined) this.q.at(cold.atMs, () => this.coldStart(cold));

    while (this.q.step(endMs)) {
      if (this.checker.violations.length > 0) break;
      if (this.q.nowMs > this.s.loadUntilMs && this.quiescent()) break;
    }
    if (this.checker.violations.length === 0) this.finalChecks(endMs);
    if (this.checker.violations.length === 0 && this.quiescent()) this.checkIdleChatter();
    for (const node of this.replicas.values()) this.harvestCounters(node);
    return {
      seed: this.s.seed,
      passed: this.checker.violations.length === 0,
      violations: this.checker.violations,
      completed: this.checker.completedCount,
      executedSeqs: this.maxExecuted,
      coldStarts: this.coldStarts,
      lostToColdStart: this.checker.lostCount,
      viewChanges: this.viewChanges,
      rejuvenations: this.rejuvenations,
      stateTransfers: this.stateTransfers,
      rejected: this.rejected,
      simulatedMs: this.q.nowMs,
      byzantineActions: this.byzantineActions(),
      rejectedFromByzantine: Object.fromEntries(this.rejectedFromByzantine),
      replicaCounters: Object.fromEntries(this.replicaCounters),
    };
  }

  /** Counters of the replicas' own (`SUMMED_COUNTERS`), taken from a core before it goes. */
  private readonly replicaCounters = new Map<string, number>();
  private harvestCounters(node: ReplicaNode): void {
    if (node.core === undefined || node.byzantine !== undefined) return;
    for (const name of SUMMED_COUNTERS)
      this.replicaCounters.set(
        name,
        (this.replicaCounters.get(name) ?? 0) + (node.core.counters.get(name) ?? 0),
      );
  }

  /** Lies told by filters removed at rejuvenation, then by those still at work. */
  private readonly retiredActions = new Map<string, number>();
  private readonly rejectedFromByzantine = new Map<string, number>();
  /** Replicas compromised at some moment of the run: their names in `from` are suspect. */
  private readonly everCompromised = new Set<string>();

  private byzantineActions(): Record<string, number> {
    const total = new Map(this.retiredActions);
    for (const node of this.replicas.values())
      for (const [kind, n] of node.byzantine?.taken ?? [])
        total.set(kind, (total.get(kind) ?? 0) + n);
    if (this.oldKeyForgeries > 0) total.set("old-key", this.oldKeyForgeries);
    if (this.forgedReplies > 0) total.set("stolen-key-reply", this.forgedReplies);
    if (this.heldFromVictim > 0) total.set("held-from-victim", this.heldFromVictim);
    if (this.laggardAnswers > 0) total.set("answers-as-laggard", this.laggardAnswers);
    if (this.partialSends > 0) total.set("partial-send", this.partialSends);
    if (this.faultyWrites > 0)
      total.set(`faulty-client.${this.s.faultyClient?.sendsTo}`, this.faultyWrites);
    if (this.clientReplays > 0) total.set("client-replay", this.clientReplays);
    if (this.floodReads > 0) {
      total.set("read-flood.sent", this.floodReads);
      total.set("read-flood.answered", this.floodAnswers);
    }
    return Object.fromEntries(total);
  }

  /** Requests whose first copy reached only the primary and a few backups. */
  private partialSends = 0;
  private faultyWrites = 0;

  /** Per replica, the last client copies of requests the network saw go to it (to replay). */
  private readonly clientCopies = new Map<string, Array<{ client: string; message: Buffer }>>();
  private clientReplays = 0;

  /** Remembers a client's copy of a request on its way to `to`, for the replay adversary. */
  private recordClientCopy(to: string, client: string, message: Buffer): void {
    if (this.s.replayClientCopies !== true) return;
    if (parseClientMessage(message)?.type !== "REQUEST") return;
    const copies = this.clientCopies.get(to) ?? [];
    copies.push({ client, message });
    if (copies.length > 64) copies.shift();
    this.clientCopies.set(to, copies);
  }

  /**
   * A replica started again: the network replays into its clients' connections the copies it
   * saw go to it before, over the next few hundred milliseconds (after its new session's half
   * went out, so that only freshness, not a missing session, can refuse them).
   */
  private replayClientCopiesTo(node: ReplicaNode): void {
    const copies = this.clientCopies.get(node.id);
    if (this.s.replayClientCopies !== true || copies === undefined) return;
    for (const { client, message } of copies.splice(0))
      this.q.after(this.adversary.int(0, 400), () => {
        this.clientReplays++;
        this.replicaReceiveClient(node.id, client, message);
      });
  }

  private oldKeyForgeries = 0;

  /** Load is over, every client has its answer, every rejuvenated replica has recovered. */
  private quiescent(): boolean {
    for (const c of this.clients.values()) if (c.core.busy && !c.faulty) return false;
    for (const r of this.replicas.values()) if (r.restartedAtMs !== undefined) return false;
    return !this.rejuvenating;
  }

  private finalChecks(endMs: number): void {
    if (this.options.trace !== undefined)
      for (const c of this.clients.values())
        this.trace(`${c.id} counters ${JSON.stringify(Object.fromEntries(c.core.counters))}`);
    for (const c of this.clients.values())
      if (c.core.busy && !c.faulty)
        this.checker.violations.push(
          `liveness: ${c.id}'s operation invoked at ${c.invokedMs} ms did not complete by ${endMs} ms (healed at ${this.s.healMs} ms)`,
        );
    for (const r of this.replicas.values())
      if (r.restartedAtMs !== undefined)
        this.checker.violations.push(
          `recovery: ${r.id}, restarted at ${r.restartedAtMs} ms, had not recovered by ${this.q.nowMs} ms`,
        );
    this.checker.checkLinearizable();
  }

  /** Messages each correct replica sent its peers while the service was idle (`checkIdleChatter`). */
  private idleSent: Map<string, number> | undefined;

  /**
   * Once all is done, the service idles for `IDLE_WINDOW_MS`: what correct replicas send then is
   * their status traffic and the answers their rate limits allow, a few messages per peer per
   * status interval. An exchange that never ends (a state transfer going round vouchers that
   * dropped its checkpoint, at network speed, for as long as the replica ran) is far above that,
   * and is a violation: it passes every safety check while it eats the CPU the service runs on.
   */
  private checkIdleChatter(): void {
    const fromMs = this.q.nowMs;
    this.idleSent = new Map();
    // A Byzantine replica that floods its peers with state-transfer requests goes on doing so.
    const flood = () => {
      for (const node of this.replicas.values())
        if (node.byzantine !== undefined && node.core !== undefined)
          this.deliverAll(node.id, node.byzantine.askFlood(16));
      if (this.q.nowMs + MISCHIEF_EVERY_MS < fromMs + IDLE_WINDOW_MS)
        this.q.after(MISCHIEF_EVERY_MS, flood);
    };
    flood();
    while (this.q.step(fromMs + IDLE_WINDOW_MS)) if (this.checker.violations.length > 0) return;
    const intervals = IDLE_WINDOW_MS / this.s.statusIntervalMs;
    const bound = Math.ceil(
      (this.ids.length - 1) * intervals * IDLE_MESSAGES_PER_PEER_PER_INTERVAL,
    );
    for (const [id, sent] of this.idleSent)
      if (sent > bound)
        this.checker.violations.push(
          `chatter: ${id} sent ${sent} messages to its peers in ${IDLE_WINDOW_MS} ms with the service idle (at most ${bound}: ${IDLE_MESSAGES_PER_PEER_PER_INTERVAL} per peer per status interval)`,
        );
    this.idleSent = undefined;
  }

  // ---- replicas -----------------------------------------------------------

  private byzantineFilter(
    node: ReplicaNode,
    behaviours: readonly ByzantineBehaviour[],
  ): ByzantineFilter {
    this.everCompromised.add(node.id);
    const filter = new ByzantineFilter(
      node.id,
      new Set(behaviours),
      this.ids.filter((i) => i !== node.id),
      () => ({ signer: node.signer, epoch: node.epoch }),
      this.adversary.fork(),
      {
        quorums: quorumsFor(this.s.n, this.s.kPrime, this.s.k),
        logWindow: 2 * this.s.checkpointInterval,
        ids: this.ids,
      },
    );
    // Held so that the answer still comes within the asker's retry interval, through the network's
    // delay and jitter both ways.
    const { delayMs, jitterMs } = this.s.network;
    filter.dripDelayMs = Math.max(
      0,
      transferRetryMs(this.s.statusIntervalMs) - 2 * (delayMs + jitterMs) - 5,
    );
    return filter;
  }

  private scheduleTick(node: ReplicaNode, core: ReplicaCore): void {
    this.q.after(REPLICA_TICK_MS, () => {
      if (node.core !== core) return; // killed or replaced
      this.emit(node, core.tick(this.q.nowMs));
      this.scheduleTick(node, core);
    });
  }

  private isCorrect(node: ReplicaNode): boolean {
    return node.byzantine === undefined;
  }

  private emit(node: ReplicaNode, actions: ReplicaAction[]): void {
    for (const a of actions) this.observe(node, a);
    const outgoing: Outgoing[] = node.byzantine
      ? node.byzantine.filter(actions)
      : actions.flatMap((a): Outgoing[] =>
          a.type === "send"
            ? [{ to: a.to, message: a.message }]
            : a.type === "broadcast"
              ? [{ to: "all", message: a.message }]
              : a.type === "reply"
                ? [{ to: a.client, message: a.message, toClient: true }]
                : [],
        );
    this.deliverAll(node.id, outgoing);
  }

  /** The latest message `unsafeChatter`'s replica sent a peer. */
  private latestSent: Outgoing | undefined;

  private deliverAll(from: string, outgoing: Outgoing[]): void {
    for (const o of outgoing) {
      if (from === this.options.unsafeChatter?.replica && !o.toClient) this.latestSent = o;
      if (o.toClient) {
        const client = this.clients.get(o.to);
        if (client && this.heldFromVictim_(from, o.to, o.message)) continue;
        if (client) this.transmit(from, o.to, () => this.clientReceive(client, from, o.message));
        else if (o.to === this.flooderId) this.floodAnswers++;
        else if (this.replicas.has(o.to))
          this.transmit(from, o.to, () => this.replicaReceiveClient(o.to, "mallory", o.message));
        continue;
      }
      const targets = o.to === "all" ? this.ids.filter((i) => i !== from) : [o.to];
      const correct = this.replicas.get(from)?.byzantine === undefined;
      if (correct && this.idleSent !== undefined)
        this.idleSent.set(from, (this.idleSent.get(from) ?? 0) + targets.length);
      for (const to of targets)
        this.transmit(
          from,
          to,
          () => this.replicaReceive(to, o.message, correct),
          o.message,
          o.delayMs,
        );
    }
  }

  private trace(text: string): void {
    this.options.trace?.(`${this.q.nowMs.toFixed(1).padStart(9)} ${text}`);
  }

  private observe(node: ReplicaNode, a: ReplicaAction): void {
    const correct = this.isCorrect(node);
    if (this.options.trace && a.type !== "send" && a.type !== "broadcast" && a.type !== "reply") {
      const { type, ...rest } = a;
      const detail = JSON.stringify(rest, (k, v) =>
        k === "snapshot" || k === "clients" ? undefined : k === "requests" ? v.length : v,
      );
      this.trace(`${node.id}${correct ? "" : "(byz)"} ${type} ${detail.slice(0, 200)}`);
    }
    switch (a.type) {
      case "reply": {
        // Which era's state a correct replica's answer to an unordered read comes from.
        const body = correct ? parseEnvelope(a.message)?.body : undefined;
        if (body?.type === "READ_REPLY") this.checker.onReadAnswered(body.client, body.ts, body);
        break;
      }
      case "executed":
        if (correct) {
          this.checker.onExecuted(node.id, a.seq, a.digest, a.requests, a.results);
          this.maxExecuted = Math.max(this.maxExecuted, a.seq);
        }
        break;
      case "checkpoint":
        if (correct) this.checker.onCheckpoint(node.id, a.seq, a.digest);
        // As the checkpoint files do: the one replaced is kept if older, those at or above the
        // new one go, and the retention rule decides which older ones stay.
        if (node.disk !== undefined) {
          const older = [node.disk, ...node.olderDisks].filter((d) => d.seq < a.seq);
          const kept = keptCheckpointSeqs(
            a.seq,
            older.map((d) => d.seq),
            this.s.checkpointInterval,
          );
          node.olderDisks = older.filter((d) => kept.has(d.seq));
        }
        node.disk = { seq: a.seq, snapshot: a.snapshot, clients: a.clients };
        break;
      case "view":
        this.viewChanges++;
        break;
      case "hold-client": {
        if (!correct || node.core === undefined) break;
        this.holdClient(node, node.core, a.client, a.untilMs);
        this.replicaCounters.set(HOLDS_COUNTER, (this.replicaCounters.get(HOLDS_COUNTER) ?? 0) + 1);
        if (a.client !== this.flooderId)
          this.checker.violations.push(
            `reads: ${node.id} held correct client ${a.client} for its reads until ${a.untilMs} ms`,
          );
        break;
      }
      case "cold-start-state":
        if (correct) this.checker.onColdStartCheckpoint(node.id, a.seq, a.digest);
        break;
      case "transferred":
        this.stateTransfers++;
        break;
      case "problem":
        this.rejected++;
        if (correct && this.everCompromised.has(a.from))
          this.rejectedFromByzantine.set(a.kind, (this.rejectedFromByzantine.get(a.kind) ?? 0) + 1);
        // A correct primary's NEW_VIEW refused by a correct replica that asked for a higher view:
        // that replica is out of the view until a later one passes its own (SAFETY.md, "Every
        // correct replica must pick the same view").
        else if (correct && a.kind === "below-own-view-change")
          this.replicaCounters.set(
            LEFT_OUT_COUNTER,
            (this.replicaCounters.get(LEFT_OUT_COUNTER) ?? 0) + 1,
          );
        // A correct asker refused a state-transfer answer: its transfer waits a retry interval.
        else if (correct && a.kind === "fetch-over-allowance")
          this.replicaCounters.set(
            REFUSED_CORRECT_COUNTER,
            (this.replicaCounters.get(REFUSED_CORRECT_COUNTER) ?? 0) + 1,
          );
        // A message that reached a bug in a correct replica's handlers: dropped there so that the
        // replica lives on, but a bug all the same.
        // A correct replica sends only a body it holds under that digest (`serveBatch`).
        if (correct && a.kind === "bad-batch" && !this.everCompromised.has(a.from))
          this.checker.violations.push(
            `bad batch: ${node.id}: from correct ${a.from}: ${a.detail}`,
          );
        if (correct && a.kind === "handler-fault")
          this.checker.violations.push(`handler fault: ${node.id}: ${a.detail} (from ${a.from})`);
        break;
      case "recovered":
        if (correct && node.restartedAtMs !== undefined) {
          const agreed = this.checker.checkpointDigest(a.seq);
          if (agreed !== undefined && agreed !== a.digest)
            this.checker.violations.push(
              `recovery: ${node.id} recovered to checkpoint ${a.seq} with digest ${a.digest.slice(0, 12)}, correct replicas have ${agreed.slice(0, 12)}`,
            );
          if (a.seq < node.stableAtRestart)
            this.checker.violations.push(
              `recovery: ${node.id} recovered to checkpoint ${a.seq}, but ${node.stableAtRestart} was stable when it restarted`,
            );
          node.restartedAtMs = undefined;
        }
        break;
      default:
        break;
    }
  }

  private replicaReceive(to: string, message: Buffer, fromCorrect: boolean): void {
    const node = this.replicas.get(to);
    if (node?.core === undefined) return;
    node.byzantine?.observe(message);
    const actions = node.core.onMessage(message, this.q.nowMs);
    // What a correct replica sends its peers must parse there: one that does not is dropped as
    // malformed, and whatever it asked for waits (a STATUS sent with stable seq -1 did).
    if (fromCorrect && actions.some((a) => a.type === "problem" && a.kind === "malformed"))
      this.checker.violations.push(
        `unparsable message: ${to} could not parse ${message.toString("utf8").split("\n")[1]?.slice(0, 200)}`,
      );
    this.emit(node, actions);
  }

  private replicaReceiveClient(to: string, client: string, message: Buffer): void {
    const node = this.replicas.get(to);
    if (node?.core === undefined) return;
    // The host leaves a client in debt for its reads unread until it is paid back (`hold-client`):
    // what it sends meanwhile waits, as in a connection's buffers, and is read at the end in order.
    const hold = this.clientHolds.get(node.core)?.get(client);
    if (hold !== undefined) {
      hold.backlog.push(message);
      // The buffers are bounded: the sender's own queue drops its oldest (`send-queue.ts`).
      if (hold.backlog.length > HELD_BACKLOG) hold.backlog.shift();
      return;
    }
    this.emit(node, node.core.onClientMessage(client, message, this.q.nowMs));
  }

  /** Per replica process (its core), each held client's hold: until when, and what waits. */
  private readonly clientHolds = new WeakMap<
    ReplicaCore,
    Map<string, { untilMs: number; backlog: Buffer[] }>
  >();

  /** A replica's host holds `client` until `untilMs`, then reads what waited, until held again. */
  private holdClient(node: ReplicaNode, core: ReplicaCore, client: string, untilMs: number): void {
    const holds =
      this.clientHolds.get(core) ?? new Map<string, { untilMs: number; backlog: Buffer[] }>();
    this.clientHolds.set(core, holds);
    const hold = holds.get(client);
    if (hold !== undefined) {
      // Already held (a release reading its backlog, or a second hold): ends with the later.
      if (untilMs > hold.untilMs) {
        hold.untilMs = untilMs;
        this.q.at(untilMs, () => this.releaseClient(node, core, client, untilMs));
      }
      return;
    }
    holds.set(client, { untilMs, backlog: [] });
    this.q.at(untilMs, () => this.releaseClient(node, core, client, untilMs));
  }

  private releaseClient(
    node: ReplicaNode,
    core: ReplicaCore,
    client: string,
    untilMs: number,
  ): void {
    const holds = this.clientHolds.get(core);
    const hold = holds?.get(client);
    if (holds === undefined || hold === undefined || hold.untilMs !== untilMs || node.core !== core)
      return;
    while (hold.backlog.length > 0 && hold.untilMs === untilMs) {
      const message = hold.backlog.shift() as Buffer;
      this.emit(node, core.onClientMessage(client, message, this.q.nowMs));
    }
    // Held again by one of them: the rest waits for that hold's end.
    if (hold.untilMs === untilMs) holds.delete(client);
  }

  /** `Scenario.readFlood`: the flooding client's id, its READs sent and answers got. */
  private readonly flooderId = "flooder";
  private floodRounds = 0;
  private floodReads = 0;
  private floodAnswers = 0;
  private floodRead: Buffer | undefined;

  /** The flooding client: a scan of everything to every replica, mostly the same READ again. */
  private readFlood(): void {
    const flood = this.s.readFlood;
    if (flood === undefined || this.q.nowMs >= this.s.loadUntilMs) return;
    // A new READ every 16 rounds; the same bytes in between (each copy is answered if allowed).
    if (this.floodRounds++ % 16 === 0 || this.floodRead === undefined)
      this.floodRead = encodeClientMessage({
        type: "READ",
        client: this.flooderId,
        ts: this.floodRounds,
        op: { op: "scan", from: "", to: "", limit: MAX_SCAN_LIMIT },
      });
    const read = this.floodRead;
    for (const id of this.ids) {
      this.floodReads++;
      this.transmit(this.flooderId, id, () => this.replicaReceiveClient(id, this.flooderId, read));
    }
    this.q.after(flood.everyMs, () => this.readFlood());
  }

  // ---- network ------------------------------------------------------------

  private healthy(): boolean {
    return this.q.nowMs >= this.s.healMs;
  }

  private cut(a: string, b: string): boolean {
    const now = this.q.nowMs;
    for (const p of this.s.partitions)
      if (now >= p.fromMs && now < p.untilMs && p.isolated.includes(a) !== p.isolated.includes(b))
        return true;
    return false;
  }

  private transmit(
    from: string,
    to: string,
    deliver: () => void,
    message?: Buffer,
    heldMs = 0,
  ): void {
    if (this.cut(from, to)) return;
    const { delayMs, jitterMs, loss, duplicate } = this.s.network;
    const faulty = !this.healthy();
    if (faulty && this.net.chance(loss)) return;
    const copies = faulty && this.net.chance(duplicate) ? 2 : 1;
    const held = faulty && message !== undefined ? this.heldBack(to, message) : 0;
    const stalled =
      faulty && this.s.stalledFetchMs !== undefined && message?.includes('"type":"FETCH_')
        ? this.s.stalledFetchMs
        : 0;
    const lag = this.lagTo(from, to);
    for (let i = 0; i < copies; i++)
      this.q.after(heldMs + delayMs + held + stalled + lag + this.net.next() * jitterMs, () => {
        if (!this.cut(from, to)) deliver();
      });
  }

  /** `Scenario.laggingReads`: the two replicas it keeps behind, once chosen (correct then). */
  private laggards: string[] | undefined;

  private laggardsNow(): string[] | undefined {
    const aim = this.s.laggingReads;
    if (aim === undefined || this.q.nowMs < aim.fromMs || this.q.nowMs >= this.s.healMs)
      return undefined;
    if (this.laggards === undefined) {
      const correct = this.ids.filter((id) => this.replicas.get(id)?.byzantine === undefined);
      this.laggards = correct.slice(-2);
      this.trace(`laggards: ${this.laggards.join(", ")}`);
    }
    return this.laggards;
  }

  /** `Scenario.laggingReads`: what a message from another replica to a laggard waits more. */
  private lagTo(from: string, to: string): number {
    const laggards = this.laggardsNow();
    if (laggards === undefined || !laggards.includes(to) || laggards.includes(from)) return 0;
    if (!this.replicas.has(from)) return 0;
    return this.s.laggingReads?.lagMs ?? 0;
  }

  /**
   * The adversarial scheduler: it holds back, within the asynchrony the protocol must survive,
   * the messages that hurt most when late: COMMITs (the last ones complete a slot), anything to
   * the primary, anything to a replica being rejuvenated.
   */
  private heldBack(to: string, message: Buffer): number {
    const { chance, holdMs } = this.s.targeted;
    if (chance === 0) return 0;
    const target = this.replicas.get(to);
    const aimed =
      target?.restartedAtMs !== undefined ||
      target?.core?.isPrimary === true ||
      message.includes('"type":"COMMIT"');
    if (!aimed || !this.adversary.chance(chance)) return 0;
    return this.adversary.int(1, holdMs);
  }

  // ---- clients ------------------------------------------------------------

  private scheduleClientTick(client: ClientNode): void {
    this.q.after(CLIENT_TICK_MS, () => {
      this.clientSend(client, client.core.tick(this.q.nowMs));
      if (this.q.nowMs < this.s.loadUntilMs + this.s.livenessBoundMs)
        this.scheduleClientTick(client);
    });
  }

  private nextOperation(client: ClientNode): void {
    if (this.q.nowMs >= this.s.loadUntilMs || client.core.busy) return;
    const op = this.randomOperation();
    client.invokedMs = this.q.nowMs;
    client.ops++;
    this.clientSend(client, client.core.submit(op, this.q.nowMs));
  }

  private randomOperation(): KvOperation {
    const key = `k${this.prng.int(0, this.s.keys - 1)}`;
    const value = `v${this.prng.int(0, 999)}`;
    const r = this.prng.next();
    if (r < 0.3) return { op: "get", key };
    if (r < 0.6) return { op: "put", key, value };
    if (r < 0.7) return { op: "del", key };
    if (r < 0.9)
      return {
        op: "cas",
        key,
        expected: this.prng.chance(0.3) ? null : `v${this.prng.int(0, 999)}`,
        value,
      };
    return {
      op: "scan",
      from: `k${this.prng.int(0, 3)}`,
      to: this.prng.chance(0.5) ? "" : "k8",
      limit: this.prng.int(1, 5),
    };
  }

  /** The faulty client gives up on its write, if any, and sends a new one (to too few replicas). */
  private nextFaultyWrite(client: ClientNode): void {
    const faulty = this.s.faultyClient;
    if (faulty === undefined || this.q.nowMs >= this.s.loadUntilMs) return;
    client.core.abandon();
    client.invokedMs = this.q.nowMs;
    client.ops++;
    this.faultyWrites++;
    const key = `k${this.prng.int(0, this.s.keys - 1)}`;
    const op: KvOperation = { op: "put", key, value: `faulty-${client.ops}` };
    this.clientSend(client, client.core.submit(op, this.q.nowMs));
    this.q.after(faulty.everyMs, () => this.nextFaultyWrite(client));
  }

  /** Where the faulty client's copies of its requests go; undefined: everywhere. */
  private faultyReach(client: ClientNode): Set<string> | undefined {
    const faulty = this.s.faultyClient;
    if (!client.faulty || faulty === undefined) return undefined;
    let view = -1;
    let primary = "";
    for (const node of this.replicas.values())
      if (node.core !== undefined && node.core.currentView > view) {
        view = node.core.currentView;
        primary = node.core.primary;
      }
    const backups = this.ids.filter((id) => id !== primary);
    if (faulty.sendsTo === "primary") return new Set([primary]);
    if (faulty.sendsTo === "backups") return new Set(backups);
    return new Set([this.adversary.pick(backups)]);
  }

  private clientSend(client: ClientNode, actions: ReturnType<KvClientCore["tick"]>): void {
    const faultyReach = this.faultyReach(client);
    const reached = faultyReach ?? this.partialSend(client, actions);
    for (const a of actions) {
      // The faulty client's session offers and key queries go everywhere; its requests do not.
      const limited =
        faultyReach === undefined ||
        parseClientMessage(a.type === "send" ? a.message : Buffer.alloc(0))?.type === "REQUEST"
          ? reached
          : undefined;
      if (a.type === "send" && (limited === undefined || limited.has(a.to))) {
        this.recordClientCopy(a.to, client.id, a.message);
        this.answerWithStolenKeys(client, a.message);
        this.answerAsLaggard(client, a.message);
        this.transmit(client.id, a.to, () => this.replicaReceiveClient(a.to, client.id, a.message));
      } else if (a.type === "complete") {
        this.checker.onCompleted({
          client: client.id,
          ts: a.ts,
          op: a.op,
          result: a.result,
          invokedMs: client.invokedMs,
          completedMs: this.q.nowMs,
          ...(a.readAtSeq !== undefined ? { readAtSeq: a.readAtSeq } : {}),
        });
        if (!client.faulty) this.q.after(this.prng.int(0, 30), () => this.nextOperation(client));
      }
    }
  }

  /**
   * The replicas a request's first copy reaches when the partial-send adversary strikes: the
   * primary of the highest view a replica is in, and fewer than q - 1 backups (often fewer than
   * k', so that only a view change or the client's retransmission settles it); undefined: all.
   */
  private partialSend(
    client: ClientNode,
    actions: ReturnType<KvClientCore["tick"]>,
  ): Set<string> | undefined {
    const chance = this.s.partialSends;
    if (chance === undefined || this.healthy()) return undefined;
    const first = actions.find((a) => a.type === "send");
    if (first?.type !== "send") return undefined;
    const message = parseClientMessage(first.message);
    if (message?.type !== "REQUEST" || message.request.ts <= client.firstSentTs) return undefined;
    client.firstSentTs = message.request.ts;
    if (!this.adversary.chance(chance)) return undefined;
    let view = 0;
    let primary = "";
    for (const node of this.replicas.values())
      if (node.core !== undefined && node.core.currentView >= view) {
        view = node.core.currentView;
        primary = node.core.primary;
      }
    const backups = replicaIds(this.s.n).filter((id) => id !== primary);
    const quorum = quorumsFor(this.s.n, this.s.kPrime, this.s.k).quorum;
    const count = this.adversary.int(0, quorum - 2);
    const reached = new Set([primary]);
    for (const id of backups.sort(() => this.adversary.next() - 0.5).slice(0, count))
      reached.add(id);
    this.partialSends++;
    return reached;
  }

  private clientReceive(client: ClientNode, from: string, message: Buffer): void {
    this.clientSend(client, client.core.onMessage(from, message, this.q.nowMs));
  }

  // ---- the adversary --------------------------------------------------------

  private mischiefScheduled = false;

  private scheduleMischief(): void {
    this.mischiefScheduled = true;
    this.q.after(MISCHIEF_EVERY_MS, () => {
      for (const node of this.replicas.values()) {
        if (node.byzantine === undefined || node.core === undefined) continue;
        this.deliverAll(node.id, node.byzantine.mischief(this.q.nowMs));
        if (node.byzantine.behaviours.has("corrupt-state") && this.adversary.chance(0.2))
          node.core
            .unsafeStore()
            .apply({ op: "put", key: `k${this.adversary.int(0, 9)}`, value: "corrupt" });
      }
      // Keys of replicas rejuvenated since they were compromised: useless now.
      if (this.oldSigners.length > 0 && this.adversary.chance(0.3)) {
        const old = this.adversary.pick(this.oldSigners);
        this.forgeWithOldKey(old);
      }
      if (this.q.nowMs < this.s.loadUntilMs) this.scheduleMischief();
      else this.mischiefScheduled = false;
    });
  }

  /**
   * What the network keeps from a victim client: under `Scenario.laggingReads`, the answers of the
   * correct replicas that are not kept behind to its unordered reads; under
   * `Scenario.stolenKeyReads`, every certificate and lease, so that it never learns a stolen key
   * was replaced. Until the heal.
   */
  private heldFromVictim_(from: string, to: string, message: Buffer): boolean {
    const laggards = this.laggardsNow();
    if (
      laggards !== undefined &&
      to === this.s.laggingReads?.victim &&
      !laggards.includes(from) &&
      this.replicas.get(from)?.byzantine === undefined &&
      parseEnvelope(message)?.body.type === "READ_REPLY"
    ) {
      this.heldFromVictim++;
      return true;
    }
    const aim = this.s.stolenKeyReads;
    if (aim === undefined || to !== aim.victim) return false;
    if (this.q.nowMs < aim.fromMs || this.q.nowMs >= this.s.healMs) return false;
    const type = parseEnvelope(message)?.body.type;
    if (type !== "KEYS" && type !== "LEASE") return false;
    this.heldFromVictim++;
    return true;
  }

  /**
   * `Scenario.stolenKeyReads`: a client's READ or REQUEST seen on the network is answered, once,
   * from every key the adversary stole (the newest of each replica it left) and every replica it
   * holds, each with the result of the oldest state it saw and the last lease that key had. A
   * request is answered as executed right after that state (so that a client kept from the new
   * keys goes on to read), a read as read from it.
   */
  private answerWithStolenKeys(client: ClientNode, message: Buffer): void {
    const stale = this.staleState;
    if (this.s.stolenKeyReads === undefined || stale === undefined) return;
    const parsed = parseClientMessage(message);
    if (parsed === undefined || (parsed.type !== "READ" && parsed.type !== "REQUEST")) return;
    const ts = parsed.type === "READ" ? parsed.ts : parsed.request.ts;
    const voices = this.adversaryVoices();
    // Once per operation and number of voices: a retransmission after a move is answered again.
    const asked = `${client.id} ${ts} ${voices.size}`;
    if (this.forgedFor.has(asked)) return;
    this.forgedFor.add(asked);
    const body =
      parsed.type === "READ"
        ? {
            type: "READ_REPLY" as const,
            client: client.id,
            ts,
            since: stale.seq,
            seq: stale.seq,
            op: readDigest(message),
            result: stale.store.read(parsed.op),
          }
        : {
            type: "REPLY" as const,
            view: 0,
            client: client.id,
            ts,
            seq: stale.seq + 1,
            op: requestDigest(parsed.request),
            result: KvStore.fromSnapshot(stale.store.snapshot()).apply(parsed.request.op),
          };
    this.trace(`${client.id} ${ts} answered from stolen keys ${[...voices.keys()].join(", ")}`);
    this.forgedReplies += voices.size;
    this.answerWith(voices, client, body);
  }

  /**
   * Every voice the adversary has: each replica it holds, and each key it stole (the newest of
   * each replica it left), with the last lease its board gave on it.
   */
  private adversaryVoices(): Map<string, Voice> {
    const voices = new Map<string, Voice>();
    for (const old of this.oldSigners) {
      const known = voices.get(old.id);
      if (known === undefined || known.epoch < old.epoch) voices.set(old.id, old);
    }
    for (const node of this.replicas.values())
      if (node.byzantine !== undefined && node.core !== undefined)
        voices.set(node.id, {
          epoch: node.epoch,
          signer: node.signer,
          lease: this.lastLeases.get(node.id),
        });
    return voices;
  }

  /** `body` to `client` from each of `voices`, each after the lease it holds on its key. */
  private answerWith(
    voices: ReadonlyMap<string, Voice>,
    client: ClientNode,
    body: Parameters<typeof sealEnvelope>[2],
  ): void {
    for (const [id, voice] of voices) {
      const out: Outgoing[] = [];
      if (voice.lease !== undefined)
        out.push({
          to: client.id,
          toClient: true,
          message: sealEnvelope(id, voice.epoch, { type: "LEASE", lease: voice.lease }, (b) =>
            voice.signer.sign(b),
          ),
        });
      out.push({
        to: client.id,
        toClient: true,
        message: sealEnvelope(id, voice.epoch, body, (b) => voice.signer.sign(b)),
      });
      this.deliverAll(id, out);
    }
  }

  /**
   * `Scenario.laggingReads`: the victim's unordered read, seen on the network, is answered by
   * every voice the adversary has as the first laggard would answer it (its state's result, over
   * an interval from 0 to where it is, which meets the laggards' own).
   */
  private answerAsLaggard(client: ClientNode, message: Buffer): void {
    const laggard = this.laggardsNow()?.[0];
    if (laggard === undefined || client.id !== this.s.laggingReads?.victim) return;
    const core = this.replicas.get(laggard)?.core;
    const read = parseClientMessage(message);
    if (core === undefined || read?.type !== "READ") return;
    const asked = `lag ${client.id} ${read.ts}`;
    if (this.forgedFor.has(asked)) return;
    this.forgedFor.add(asked);
    const voices = this.adversaryVoices();
    this.laggardAnswers += voices.size;
    this.answerWith(voices, client, {
      type: "READ_REPLY",
      client: client.id,
      ts: read.ts,
      since: 0,
      seq: core.executedUpTo,
      op: readDigest(message),
      result: core.unsafeStore().read(read.op),
    });
  }

  private forgeWithOldKey(old: { id: string; epoch: number; signer: Signer }): void {
    this.oldKeyForgeries++;
    const node = this.replicas.get(old.id) as ReplicaNode;
    const view = node.core?.currentView ?? 0;
    const body = {
      type: "VIEW_CHANGE" as const,
      newView: view + 1,
      stable: { seq: 0, digest: "0".repeat(64) },
      checkpoints: [],
      prepared: [],
      prePrepared: [],
      batches: [],
      keyEpochs: [],
    };
    const message = sealEnvelope(old.id, old.epoch, body, (bytes) => old.signer.sign(bytes));
    this.deliverAll(old.id, [{ to: "all", message }]);
  }

  // ---- rejuvenation (what the boards do) -----------------------------------

  private rejuvenating = false;
  /** From a group's shutdown to its members' recovery. */
  private groupInProgress = false;

  private rejuvenateGroup(group: number): void {
    if (this.coldStarting) {
      this.q.after(50, () => this.rejuvenateGroup(group));
      return;
    }
    const r = this.s.rejuvenation;
    if (r === undefined || this.q.nowMs >= this.s.healMs) {
      this.rejuvenating = false;
      return;
    }
    this.rejuvenating = true;
    this.groupInProgress = true;
    const groups = Math.ceil(this.s.n / this.s.k);
    const members = this.ids.slice(
      (group % groups) * this.s.k,
      (group % groups) * this.s.k + this.s.k,
    );
    // A new period for each round, and after a cold start (its keys took the period's epoch).
    if (group % groups === 0 || this.coldStartTookPeriod) this.period++;
    this.coldStartTookPeriod = false;
    // Every other board tells its host that this group's keys are revoked once the group is
    // held in reset (after the shutdown grace and its last lease's lapse); the host link takes a few
    // milliseconds. Keys of this period on are certified after the boot.
    for (const id of members) this.revokedBefore.set(id, this.period);
    // Their boards lease their keys no more: the last leases lapse a lease from now.
    for (const id of members) this.leasing.delete(id);
    this.groupIndex = group;
    // Down once the shutdown grace is over and the last lease on each member's key has lapsed.
    let lapsesAtMs = 0;
    if (this.options.unsafeResetBeforeLapse !== true)
      for (const id of members)
        lapsesAtMs = Math.max(lapsesAtMs, this.lastLeases.get(id)?.notAfterMs ?? 0);
    const downInMs = Math.max(r.shutdownGraceMs, lapsesAtMs - this.q.nowMs);
    for (const other of this.ids) {
      if (members.includes(other)) continue;
      const node = this.replicas.get(other) as ReplicaNode;
      const period = this.period;
      this.q.after(downInMs + this.prng.int(0, 5), () => {
        if (node.core) this.emit(node, node.core.revokeKeys(members, period, this.q.nowMs));
      });
    }
    for (const id of members) {
      const node = this.replicas.get(id) as ReplicaNode;
      if (node.core) this.emit(node, node.core.prepareShutdown(this.q.nowMs));
      if (this.s.aimedMove && node.byzantine && node.core) {
        const left = node.byzantine.leaveVotes(node.core.primary, this.ids);
        if (left !== undefined) {
          this.aimedPlan = left.plan;
          this.deliverAll(node.id, left.out);
        }
      }
    }
    this.q.after(downInMs, () => {
      for (const id of members) this.kill(this.replicas.get(id) as ReplicaNode, members);
      const downMs = this.prng.int(r.downMs[0], r.downMs[1]);
      this.q.after(downMs, () => {
        for (const id of members) this.boot(this.replicas.get(id) as ReplicaNode, r.disk);
        this.waitRecovered(members, group);
      });
    });
  }

  private waitRecovered(members: string[], group: number): void {
    const r = this.s.rejuvenation;
    if (r === undefined) return;
    const pending = members.some((id) => this.replicas.get(id)?.restartedAtMs !== undefined);
    if (pending) {
      this.q.after(20, () => this.waitRecovered(members, group));
      return;
    }
    this.groupInProgress = false;
    this.q.after(r.gapMs, () => this.rejuvenateGroup(group + 1));
  }

  private groupIndex = 0;

  /**
   * The mobile adversary moves on: one replica that is not being rejuvenated, not recovering and
   * not compromised already is compromised now, keeping its memory and its current key.
   */
  private compromiseAnother(group: readonly string[]): void {
    const candidates = [...this.replicas.values()].filter(
      (r) =>
        !group.includes(r.id) &&
        r.byzantine === undefined &&
        r.core !== undefined &&
        r.restartedAtMs === undefined,
    );
    if (candidates.length === 0) return;
    // An aimed move takes the primary the votes left behind were for, if it can.
    const plan = this.aimedPlan;
    this.aimedPlan = undefined;
    const aimed = plan && candidates.find((r) => r.id === plan.primary);
    // Piling up stolen keys: a replica of the group rejuvenated next, to move again soonest.
    const groups = Math.ceil(this.s.n / this.s.k);
    const next = (this.groupIndex + 1) % groups;
    const hop =
      this.s.stolenKeyReads === undefined
        ? undefined
        : candidates.find(
            (r) =>
              this.ids.indexOf(r.id) >= next * this.s.k &&
              this.ids.indexOf(r.id) < (next + 1) * this.s.k,
          );
    const victim = hop ?? aimed ?? this.adversary.pick(candidates);
    const aimedHere = aimed !== undefined && victim === aimed;
    const behaviours = new Set<ByzantineBehaviour>();
    // From the first sixteen behaviours, so that older seeds keep their draws.
    for (let j = this.adversary.int(1, 3); j > 0; j--)
      behaviours.add(this.adversary.pick(BYZANTINE_BEHAVIOURS.slice(0, 16)));
    if (this.s.mobileShuns) behaviours.add("shun-rejuvenated");
    // An adversary that floods with state-transfer requests does so from every replica it takes.
    if (this.s.byzantine.some((b) => b.behaviours.includes("ask-flood")))
      behaviours.add("ask-flood");
    victim.byzantine = this.byzantineFilter(victim, [...behaviours]);
    if (aimedHere) victim.byzantine.aimedPlan = plan;
    this.trace(
      `${victim.id} compromised (${[...behaviours].join(", ")})${aimedHere ? `, aimed: view ${plan?.view} seqs ${plan?.fromSeq}..${plan?.toSeq}` : ""}`,
    );
    if (!this.mischiefScheduled) this.scheduleMischief();
  }

  private kill(node: ReplicaNode, group: readonly string[]): void {
    this.trace(`${node.id} killed for rejuvenation`);
    this.rejuvenations++;
    this.harvestCounters(node);
    if (node.byzantine && node.core && this.s.stolenKeyReads && this.staleState === undefined)
      this.staleState = {
        seq: node.core.executedUpTo,
        store: KvStore.fromSnapshot(node.core.unsafeStore().snapshot()),
      };
    node.core = undefined;
    if (node.byzantine) {
      // The adversary keeps the key it stole; the rejuvenated host is clean.
      this.oldSigners.push({
        id: node.id,
        epoch: node.epoch,
        signer: node.signer,
        lease: this.lastLeases.get(node.id),
      });
      for (const [kind, n] of node.byzantine.taken)
        this.retiredActions.set(kind, (this.retiredActions.get(kind) ?? 0) + n);
      node.byzantine = undefined;
      if (this.s.mobile) this.compromiseAnother(group);
    }
  }

  private boot(node: ReplicaNode, diskModes: Array<"intact" | "wiped" | "corrupted">): void {
    const mode = this.prng.pick(diskModes);
    if (mode === "wiped") {
      node.disk = undefined;
      node.olderDisks = [];
    } else if (mode === "corrupted" && node.disk) {
      node.disk = corruptCheckpoint(node.disk, this.prng);
    }
    node.epoch = this.period;
    node.signer = this.crypto.newSigner(`${node.id}-e${this.period}`);
    this.certify(node.id, node.signer, this.period);
    node.restartedAtMs = this.q.nowMs;
    this.trace(`${node.id} booted, disk ${mode}, epoch ${this.period}`);
    node.stableAtRestart = this.highestStable();
    const core = this.newCore(node, true);
    node.core = core;
    this.emit(node, core.start(this.q.nowMs));
    this.scheduleTick(node, core);
    this.leaseNow(node);
    this.replayClientCopiesTo(node);
    this.reconnectClientsTo(node);
  }

  /** Every client's connection to a rebooted replica comes up again (as `ClientConnections` tells). */
  private reconnectClientsTo(node: ReplicaNode): void {
    for (const client of this.clients.values())
      this.clientSend(client, client.core.onConnected(node.id));
  }

  /** The equivocation an aimed move planned, for the replica the adversary takes next. */
  private aimedPlan: AimedPlan | undefined;

  private coldStarting = false;
  private coldStartTookPeriod = false;
  private coldStarts = 0;

  /**
   * What the boards do after a testbed-wide fail-safe and clear: every host held in reset, then
   * released, each replica under a new key, told it is a cold start. Waits for a group being
   * rejuvenated to finish (the boards would have failed safe in between; the simulation only
   * needs the state after). The adversary writes the disks of the compromised replicas and of up
   * to k others: a checkpoint that never was.
   */
  private coldStart(c: NonNullable<Scenario["coldStart"]>): void {
    if (
      this.groupInProgress ||
      [...this.replicas.values()].some((r) => r.restartedAtMs !== undefined || r.core === undefined)
    ) {
      this.q.after(20, () => this.coldStart(c));
      return;
    }
    this.coldStarting = true;
    this.coldStarts++;
    this.trace("cold start: every host held in reset");
    this.checker.beginColdStart();
    const correct = [...this.replicas.values()].filter((r) => r.byzantine === undefined);
    const forged = new Set<string>();
    for (let i = 0; i < this.s.k && forged.size < correct.length; i++)
      forged.add(this.adversary.pick(correct.filter((r) => !forged.has(r.id))).id);
    for (const node of this.replicas.values()) {
      this.harvestCounters(node);
      node.core = undefined;
      this.leasing.delete(node.id);
      if ((node.byzantine !== undefined || forged.has(node.id)) && node.disk) {
        node.disk = corruptCheckpoint(node.disk, this.adversary);
        node.olderDisks = [];
      }
    }
    this.period++;
    this.coldStartTookPeriod = true;
    for (const id of this.ids) this.revokedBefore.set(id, this.period);
    // Released once the leases their boards gave before the fail-safe lapsed (`BoardDaemon`).
    this.q.after(Math.max(c.downMs, SIM_KEY_LEASE_MS), () => {
      let booted = 0;
      for (const node of this.replicas.values()) {
        this.q.after(this.prng.int(0, c.spreadMs), () => {
          node.epoch = this.period;
          node.signer = this.crypto.newSigner(`${node.id}-e${this.period}`);
          this.certify(node.id, node.signer, this.period);
          // A compromised replica stays so (the adversary is back at once): nothing to wait for.
          node.restartedAtMs = node.byzantine === undefined ? this.q.nowMs : undefined;
          node.stableAtRestart = 0;
          const held = [node.disk, ...node.olderDisks].flatMap((d) => (d ? [d.seq] : []));
          this.trace(
            `${node.id} booted in a cold start, epoch ${this.period}, disk holds ${held.join(", ") || "nothing"}${forged.has(node.id) ? " (forged)" : ""}`,
          );
          const core = this.newCore(node, false, true);
          node.core = core;
          this.emit(node, core.start(this.q.nowMs));
          this.scheduleTick(node, core);
          this.leaseNow(node);
          this.replayClientCopiesTo(node);
          this.reconnectClientsTo(node);
          if (++booted === this.replicas.size) this.afterColdStart();
        });
      }
    });
  }

  /**
   * The boards' first rejuvenation after a clear comes a join lead and a group's start later,
   * seconds after the hosts were released, by when the replicas have agreed on their state: the
   * groups resume once every correct replica has (a cold start that cannot complete is a
   * liveness failure of the run).
   */
  private afterColdStart(): void {
    if ([...this.replicas.values()].some((r) => r.restartedAtMs !== undefined)) {
      this.q.after(20, () => this.afterColdStart());
      return;
    }
    this.coldStarting = false;
  }

  private highestStable(): number {
    let best = 0;
    for (const r of this.replicas.values())
      if (r.core && this.isCorrect(r) && r.restartedAtMs === undefined)
        best = Math.max(best, r.core.stableCheckpoint.seq);
    return best;
  }
}

/** Stored state changed behind the replica's back: one value altered, or the sequence number. */
function corruptCheckpoint(disk: StoredCheckpoint, prng: Prng): StoredCheckpoint {
  const store = KvStore.fromSnapshot(disk.snapshot);
  if (prng.chance(0.5)) {
    store.apply({ op: "put", key: `k${prng.int(0, 9)}`, value: "bit-rot" });
    return { ...disk, snapshot: store.snapshot() };
  }
  return { ...disk, seq: disk.seq + prng.int(1, 3) * 1000 };
}
