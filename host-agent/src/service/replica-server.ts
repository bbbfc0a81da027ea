/**
 * One replica on a host: the replica core driven by TCP connections to its
 * peers and clients, a 10 ms tick, and its checkpoints on stable storage.
 * All protocol decisions are the core's; this only moves bytes and files.
 */
import { mkdirSync } from "node:fs";
import type { KeyCertificate, KeyLease, Testbed } from "@smw/wiring";
import type { DecodedPartitions } from "../kv/kv-snapshot.js";
import { PeerConnections } from "../net/peer-connections.js";
import { KeyRing, type SignatureScheme, type Signer } from "../replica/key-ring.js";
import { HOST_MAX_REPLY_BYTES } from "../replica/messages.js";
import { quorumsFor } from "../replica/quorums.js";
import { type ReplicaAction, ReplicaCore, type StartingState } from "../replica/replica-core.js";
import {
  olderCheckpointFiles,
  readCheckpointFile,
  type StoredCheckpoint,
  type StoredCheckpointRead,
} from "../storage/checkpoint-file.js";
import { MAX_OLDER_CHECKPOINTS } from "../storage/checkpoint-retention.js";
import { CheckpointWriter } from "../storage/checkpoint-writer.js";
import { RecoveryTimeline } from "./recovery-timeline.js";
import { RejectionSummary } from "./rejection-summary.js";
import { formatStateNote } from "./state-notes.js";

const TICK_MS = 10;

export interface ReplicaServerOptions {
  testbed: Testbed;
  hostId: string;
  scheme: SignatureScheme;
  signer: Signer;
  certificate: KeyCertificate;
  boardKeys: Map<string, string>;
  clientKeys: Map<string, string>;
  /** After a rejuvenation: trust nothing stored, recover from peers first. */
  recovering: boolean;
  /** The board released the host in a cold start (see `StartingState.coldStart`). */
  coldStart?: boolean;
  /** Keys revoked so far, as the board told the host agent. */
  revokedKeys?: ReadonlyArray<{ host: string; before: number }>;
  /**
   * When the host agent asked for the start (`performance.now()`), its certificate just come:
   * the replica's clock, and its recovery timeline, count from then, so that the timeline adds up
   * to the T_transfer the board measures (default: the construction).
   */
  startAskedAtMs?: number;
  /**
   * The newest stored checkpoint, read already (`readStoredCheckpoint`): the replica process reads
   * it while its host waits for the certificate, so that reading it is not part of T_transfer.
   */
  storedCheckpoint?: StoredCheckpointAndParts;
  /** Replicas silent for rejuvenation at once; default the testbed's k (0: a service without rejuvenation). */
  k?: number;
  log?: (line: string) => void;
  onAction?: (action: ReplicaAction) => void;
  /** Rewrites what the core wants done before it is done: the test rig's Byzantine replicas. */
  rewrite?: (actions: ReplicaAction[]) => ReplicaAction[];
  /**
   * Leases on its own key where no board issues them (`leaseWithBoardKey`, as the certificate was
   * made): one at start and four a lease while it runs.
   */
  selfLease?: { lease: (epoch: number) => KeyLease; everyMs: number };
}

export class ReplicaServer {
  readonly core: ReplicaCore;
  private readonly net: PeerConnections;
  private timer: NodeJS.Timeout | undefined;
  private leaseTimer: NodeJS.Timeout | undefined;
  private readonly started: number;
  private timeline: RecoveryTimeline | undefined;
  /** When the constructor was done (the stored checkpoints read, the core built). */
  private readonly builtAtMs: number;
  private readonly stateDir: string;
  private readonly rejections: RejectionSummary;
  private readonly checkpoints: CheckpointWriter;

  constructor(private readonly options: ReplicaServerOptions) {
    this.started = options.startAskedAtMs ?? performance.now();
    const { testbed, hostId } = options;
    const host = testbed.hosts.find((h) => h.id === hostId);
    if (host === undefined) throw new RangeError(`${testbed.file}: no host ${hostId}`);
    this.stateDir = host.stateDir;
    this.rejections = new RejectionSummary((line) => this.log(line));
    mkdirSync(this.stateDir, { recursive: true });
    const { read: stored, decoded } =
      options.storedCheckpoint ?? readStoredCheckpoint(this.stateDir);
    // The partitions of the checkpoint just read and checked are not written again.
    this.checkpoints = new CheckpointWriter(
      this.stateDir,
      (seq, error) => this.log(`checkpoint ${seq} not written: ${error.message}`),
      undefined,
      "stored" in stored ? stored.stored : undefined,
      host.replica.checkpointInterval,
    );
    const start: StartingState = {
      recovering: options.recovering,
      ...(options.revokedKeys ? { revokedKeys: options.revokedKeys } : {}),
    };
    if ("checkpoint" in stored) start.checkpoint = stored.checkpoint;
    else if ("error" in stored)
      this.log(formatStateNote({ kind: "checkpoint-rejected", why: stored.error }));
    if (options.coldStart === true) {
      start.coldStart = true;
      const olderCheckpoints: StoredCheckpoint[] = [];
      // Below the newest only: files with higher numbers in their names (junk, or a state a cold
      // start went back on) must not crowd the genuine older ones out.
      const newestSeq = "checkpoint" in stored ? stored.checkpoint.seq : Number.POSITIVE_INFINITY;
      const below = olderCheckpointFiles(this.stateDir).filter(
        (f) => f.seq !== undefined && f.seq < newestSeq,
      );
      for (const { name } of below.slice(0, MAX_OLDER_CHECKPOINTS)) {
        const older = readCheckpointFile(this.stateDir, name, decoded);
        if ("checkpoint" in older) olderCheckpoints.push(older.checkpoint);
        else if ("error" in older)
          this.log(formatStateNote({ kind: "checkpoint-rejected", why: older.error }));
      }
      start.olderCheckpoints = olderCheckpoints;
    }
    const ids = testbed.hosts.map((h) => h.id);
    this.core = new ReplicaCore(
      {
        ids,
        self: hostId,
        quorums: quorumsFor(
          ids.length,
          testbed.rejuvenation.kPrime,
          options.k ?? testbed.rejuvenation.k,
        ),
        checkpointInterval: host.replica.checkpointInterval,
        batchMax: host.replica.batchMax,
        maxInFlight: host.replica.batchesInFlight,
        viewChangeTimeoutMs: host.replica.viewChangeTimeoutMs,
        statusIntervalMs: 100,
        maxReplyBytes: HOST_MAX_REPLY_BYTES,
        rejuvenationGroups: testbed.rejuvenation.groups,
      },
      new KeyRing(options.scheme, options.boardKeys, options.clientKeys),
      options.signer,
      options.certificate,
      start,
    );
    const peers: Record<string, { host: string; port: number }> = {};
    for (const h of testbed.hosts) if (h.id !== hostId) peers[h.id] = h.address;
    this.net = new PeerConnections({
      self: hostId,
      listen: host.address,
      peers,
      // Replies go only to a connection that proved, with the client's key, who it is.
      verifyClient: (client, signed, proof) => {
        const key = options.clientKeys.get(client);
        return key !== undefined && options.scheme.verify(key, signed, proof);
      },
    });
    this.net.on("message", (from, payload) => {
      const actions =
        from.role === "replica"
          ? this.core.onMessage(payload, this.now())
          : this.core.onClientMessage(from.id, payload, this.now());
      this.apply(actions);
    });
    this.net.on("problem", (description) => this.log(`network: ${description}`));
    this.builtAtMs = this.now();
  }

  private now(): number {
    return performance.now() - this.started;
  }

  private log(line: string): void {
    this.options.log?.(`${this.options.hostId}: ${line}`);
  }

  async start(): Promise<void> {
    await this.net.start();
    this.timeline = new RecoveryTimeline(0, this.builtAtMs, this.now());
    this.apply(this.core.start(this.now()));
    const tick = () => {
      this.apply(this.core.tick(this.now()));
      this.rejections.flush(this.now());
      this.timer = setTimeout(tick, TICK_MS);
    };
    this.timer = setTimeout(tick, TICK_MS);
    const self = this.options.selfLease;
    if (self !== undefined) {
      const renew = () => this.installLease(self.lease(this.epoch));
      renew();
      this.leaseTimer = setInterval(renew, self.everyMs);
      this.leaseTimer.unref();
    }
  }

  prepareShutdown(): void {
    this.apply(this.core.prepareShutdown(this.now()));
  }

  /** The board says these hosts' rejuvenation began: their current keys are revoked. */
  revokeKeys(hosts: readonly string[], before: number): void {
    this.apply(this.core.revokeKeys(hosts, before, this.now()));
  }

  installKey(certificate: KeyCertificate, signer: Signer): void {
    this.apply(this.core.installKey(certificate, signer, this.now()));
  }

  /** The board vouches for the replica's current key until `lease.notAfterMs`: clients hear of it. */
  installLease(lease: KeyLease): void {
    this.apply(this.core.installLease(lease, this.now()));
    const held = this.core.currentLease;
    if (held === undefined || held.epoch !== lease.epoch) {
      if (this.refusedLeaseEpoch !== lease.epoch)
        this.log(
          lease.epoch === this.epoch
            ? `a lease on key epoch ${lease.epoch} not taken: not signed by this host's board, or for another host`
            : `a lease on key epoch ${lease.epoch} not taken: this replica's key epoch is ${this.epoch}`,
        );
      this.refusedLeaseEpoch = lease.epoch;
    } else if (held.epoch !== this.loggedLeaseEpoch) {
      // Once per key: a lease comes four times a lease.
      this.loggedLeaseEpoch = held.epoch;
      this.log(`key epoch ${held.epoch} leased by board ${held.board}; clients hear of each lease`);
    }
  }

  private loggedLeaseEpoch: number | undefined;
  private refusedLeaseEpoch: number | undefined;

  /** The key epoch the replica signs under now. */
  get epoch(): number {
    return this.core.currentEpoch;
  }

  /** What this replica did since it started, in one line: the figures a load test asks about. */
  summary(): string {
    const c = this.core.counters;
    const get = (name: string) => c.get(name) ?? 0;
    const batches = get("batches.proposed");
    const requests = get("requests.proposed");
    const net = this.net.counters();
    const seconds = (performance.now() - this.started) / 1000;
    return (
      `stopping after ${seconds.toFixed(1)} s: executed up to ${this.core.executedUpTo}, ` +
      // Each view change stalls ordering for a moment: a rolling restart shows its reasons here.
      `in view ${this.core.currentView} (view changes started ${get("view-change.started")}: ` +
      `for a hand-off ${get("view-change.handoff")}, for an amnesic peer ${get("view-change.for-amnesic")}, ` +
      `on a timeout ${get("view-change.timeout")}), ` +
      `proposed ${batches} batches (${batches > 0 ? (requests / batches).toFixed(1) : "0"} requests each, ` +
      `${get("batches.null")} of them null), ` +
      // Normal-case messages signed because a receiver had no session at its key epoch yet.
      `normal-case messages sealed with MACs ${get("sealed.mac")}, signed ${get("sealed.signature")}, ` +
      `replies with MACs ${get("replies.mac")}, signed ${get("replies.signed")}, ` +
      `${get("reads.answered")} reads answered (${get("client.over-allowance")} client messages dropped over a client's allowance), ` +
      // Requests of peers beyond what one peer is answered (`answer-allowance.ts`): a peer that
      // asks at network speed shows here.
      `${get("rejected.fetch-over-allowance")} state requests and ${get("status.over-allowance")} STATUS over a peer's allowance, ` +
      `frames in ${net.framesIn} out ${net.framesOut}, ` +
      `bytes in ${net.bytesIn} out ${net.bytesOut}, dropped ${net.droppedFrames}, ` +
      // Connections that sent more than a turn's worth of frames at once (`framed-socket.ts`):
      // a client or peer flooding shows here.
      `${net.turnsYielded} turns yielded to other connections, ` +
      `${net.inputHolds} holds of a client's connection (in debt), ` +
      `${net.framesTooLarge} frames too large to send`
    );
  }

  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    if (this.leaseTimer) clearInterval(this.leaseTimer);
    this.timer = undefined;
    this.rejections.flush(this.now(), true);
    this.log(this.summary());
    await this.net.close();
    await this.checkpoints.flushed();
  }

  private apply(wanted: ReplicaAction[]): void {
    const actions = this.options.rewrite?.(wanted) ?? wanted;
    for (const a of actions) {
      switch (a.type) {
        case "send":
          this.net.sendToReplica(a.to, a.message);
          break;
        case "broadcast":
          for (const h of this.options.testbed.hosts)
            if (h.id !== this.options.hostId) this.net.sendToReplica(h.id, a.message);
          break;
        case "reply":
          this.net.sendToClient(a.client, a.message);
          break;
        case "hold-client":
          this.net.holdClient(a.client, a.untilMs - this.now());
          break;
        case "checkpoint":
          this.checkpoints.save(a);
          break;
        case "problem":
          this.rejections.note(a.kind, a.from, a.detail, this.now(), a.senderProven);
          break;
        case "view":
          this.log(`view ${a.view}, primary ${a.primary}`);
          break;
        case "transferred":
          this.log(
            formatStateNote({
              kind: "transferred",
              seq: a.seq,
              partitions: a.partitions,
              sizeBytes: a.bytes,
            }),
          );
          break;
        case "recovered":
          this.log(formatStateNote({ kind: "recovered", seq: a.seq }));
          break;
        default:
          break;
      }
      const steps = this.timeline?.note(a, this.now());
      if (steps !== undefined) this.log(steps);
      this.options.onAction?.(a);
    }
  }
}

/** The newest checkpoint stored in `stateDir`, with its decoded partitions (a cold start's older ones share them). */
export interface StoredCheckpointAndParts {
  read: StoredCheckpointRead;
  decoded: DecodedPartitions;
}

export function readStoredCheckpoint(stateDir: string): StoredCheckpointAndParts {
  const decoded: DecodedPartitions = new Map();
  return { read: readCheckpointFile(stateDir, undefined, decoded), decoded };
}
