/**
 * Catching up and recovering: a replica behind its peers (or rejuvenated) fetches a stable
 * checkpoint by state transfer, then the batches executed since from the EXECUTED reports of
 * k'+1 peers, and is recovered once it has what its peers had when it asked; it serves the same
 * to others.
 */
import type { KvSnapshot } from "../kv/kv-snapshot.js";
import type { KvStore } from "../kv/kv-store.js";
import { FANOUT, PARTITION_COUNT, PIECE_BYTES } from "../kv/partition-tree.js";
import { addCheckpointVote, makeStable } from "./checkpoints.js";
import { ClientTable, clientsPage } from "./client-table.js";
import {
  batchDigest,
  type ClientTableEntry,
  type ExecutedEntry,
  type PartitionData,
  type ReplicaBody,
  type SeqDigest,
} from "./messages.js";
import { executeReady, notePrePrepared, propose, release, slotAt } from "./normal-case.js";
import { statusNow, wantedCheckpoint } from "./peer-status.js";
import type { ReplicaState } from "./replica-state.js";
import { StateTransfer } from "./state-transfer.js";

/** k'+1 replicas vouch for a checkpoint this replica has not reached: fetch it. */
export function behind(r: ReplicaState, target: SeqDigest, vouchers: string[]): void {
  if (vouchers.length === 0) return;
  // A cold start's replica takes its first state from its first view (`settleColdStart`).
  if (r.coldStart) return;
  if (r.transfer !== undefined && !r.transfer.finished && r.transfer.target.seq >= target.seq)
    return;
  // A recovering replica whose stored checkpoint is the vouched one needs no transfer.
  if (
    r.mode === "recovering" &&
    r.lastExecuted === target.seq &&
    r.stateDigest() === target.digest
  ) {
    installState(r, target, r.store, r.clients.list());
    return;
  }
  if (r.mode !== "recovering" && target.seq <= r.lastExecuted) return;
  r.count("state-transfer.started");
  r.out.push({ type: "transfer-started", seq: target.seq });
  r.transfer = new StateTransfer(
    target,
    r.store.snapshot(),
    vouchers,
    r.nowMs,
    transferRetryMs(r.config.statusIntervalMs),
    r.config.maxReplyBytes,
  );
  applyTransferStep(r, r.transfer.start());
}

/** How long a state transfer waits for a voucher's answer before it asks the next. */
export function transferRetryMs(statusIntervalMs: number): number {
  return Math.max(2 * statusIntervalMs, 50);
}

/**
 * The transfer's clock: a peer silent for too long is replaced by the next. A transfer a replica
 * in the normal case has overtaken (it executed past the target meanwhile, from its peers' log)
 * ends instead: its state would be dropped on arrival, and a target its vouchers have since
 * dropped would be asked for again and again, as long as the replica runs.
 */
export function transferTick(r: ReplicaState, nowMs: number): void {
  if (r.transfer === undefined) return;
  if (r.mode !== "recovering" && r.transfer.target.seq <= r.lastExecuted) {
    r.count("state-transfer.overtaken");
    r.transfer = undefined;
    return;
  }
  applyTransferStep(r, r.transfer.tick(nowMs));
}

export function applyTransferStep(
  r: ReplicaState,
  step: ReturnType<StateTransfer["start"]>,
  from = "?",
): void {
  if (step.rejected) r.problem("bad-transfer-reply", from, step.rejected);
  if (step.stale) r.count("state-transfer.stale-replies");
  if (step.waiting) r.count("state-transfer.waiting");
  for (const { to, body } of step.send) {
    if (body.type === "FETCH_PARTS" && body.offset !== undefined)
      r.count("state-transfer.pieces-asked");
    r.send(to, body);
  }
  if (step.done && r.transfer) {
    const target = r.transfer.target;
    r.transfer = undefined;
    if (r.mode !== "recovering" && target.seq <= r.lastExecuted) return;
    r.out.push({
      type: "transferred",
      seq: target.seq,
      partitions: step.done.partitionsFetched,
      bytes: step.done.bytesFetched,
    });
    installState(r, target, step.done.store, step.done.clients);
  }
}

function installState(
  r: ReplicaState,
  target: SeqDigest,
  store: KvStore,
  clients: ClientTableEntry[],
): void {
  const wasRecovering = r.mode === "recovering";
  if (wasRecovering) {
    // Nothing from before is trusted: not the stored sequence number, not its checkpoints.
    r.ownCheckpoints.clear();
    r.slots.clear();
    r.executedLog.clear();
    r.preparedInfo.clear();
    r.prePreparedInfo.clear();
    r.stable = { seq: -1, digest: "" };
    r.nextSeq = target.seq + 1;
  }
  r.store = store;
  r.readSince.reset(target.seq);
  r.clients = ClientTable.from(clients);
  r.lastExecuted = target.seq;
  if (r.nextSeq <= target.seq) r.nextSeq = target.seq + 1;
  const snapshot = store.snapshot();
  r.ownCheckpoints.set(target.seq, {
    seq: target.seq,
    digest: target.digest,
    snapshot,
    clients,
  });
  r.out.push({
    type: "checkpoint",
    seq: target.seq,
    digest: target.digest,
    snapshot,
    clients,
  });
  for (const s of [...r.slots.keys()]) if (s <= target.seq) r.slots.delete(s);
  // What the current view's NEW_VIEW fixed above the state: as entering the view set it.
  for (const [seq, batch] of r.viewProposals) {
    if (seq <= target.seq || r.slots.get(seq)?.digest !== undefined) continue;
    const slot = slotAt(r, seq, r.view);
    slot.digest = batch.digest;
    slot.origin = batch.origin;
    slot.requests = batch.requests;
    notePrePrepared(r, seq, batch.digest, batch.origin, batch.requests);
  }
  // And those whose bodies it is still fetching (`batch-fetch.ts`): their digests are fixed too.
  for (const [seq, missing] of r.missingBatches) {
    if (seq <= target.seq || r.slots.get(seq)?.digest !== undefined) continue;
    slotAt(r, seq, r.view).digest = missing.digest;
  }
  // Nor does a primary propose anew at a number its NEW_VIEW fixed (two PRE_PREPAREs there).
  for (const seq of [...r.viewProposals.keys(), ...r.missingBatches.keys()])
    if (seq >= r.nextSeq) r.nextSeq = seq + 1;
  for (const [d, req] of [...r.pending]) if (req.ts <= r.clients.lastTs(req.client)) release(r, d);
  if (r.mode === "recovering") {
    r.mode = "normal";
    r.catchUpTarget = undefined;
    // Only what peers report from now on counts towards having caught up: ask them now.
    r.peerExecuted.clear();
    r.peerStable.clear();
    r.peerPrepared.clear();
  }
  addCheckpointVote(r, target.seq, target.digest, r.config.self);
  if (target.seq > r.stable.seq) makeStable(r, target.seq, target.digest);
  executeReady(r);
  // Asked once the state is stable here: a STATUS sent while the stable number was still -1
  // did not parse at its peers, and the recovery waited for the next status tick.
  if (wasRecovering) statusNow(r);
}

/** k'+1 peers (so one correct one) in our view report having executed more than we have. */
export function peersAhead(r: ReplicaState): boolean {
  let ahead = 0;
  for (const [peer, executed] of r.peerExecuted)
    if (executed > r.lastExecuted && r.peerViews.get(peer) === r.view) ahead++;
  return ahead >= r.config.quorums.weak;
}

/** Recovered: state installed and caught up with what k'+1 peers have executed. */
export function maybeRecovered(r: ReplicaState): void {
  // A cold start's replica has no state of the service's until its first view gives it one.
  if (r.recoveredReported || r.mode === "recovering" || r.coldStart) return;
  // Voting again, and nothing it forgot is left uncovered by a stable checkpoint.
  if (!r.mayChangeView()) {
    const want = wantedCheckpoint(r);
    if (want > r.padUntil) {
      r.padUntil = want;
      propose(r);
      statusNow(r);
    }
    return;
  } // The (k'+1)-th highest report: at least one correct replica is that far.
  const kth = (m: Map<string, number>) =>
    [...m.values()].sort((a, b) => b - a)[r.config.quorums.weak - 1];
  // Heard from a quorum's worth of peers, so not only from a minority cut off with it.
  if (r.catchUpTarget === undefined) {
    if (r.peerExecuted.size < r.config.quorums.quorum - 1) return;
    // After a cold start: whatever any of them had prepared may have committed somewhere, and
    // this replica has forgotten it: recovered only once a stable checkpoint covers it (the
    // primary pads with null batches if it is idle). A Byzantine peer can only make it wait up
    // to the log window. A rejuvenated replica has this already: every vote it forgot is at or
    // below the horizon of the fresh view it votes in, which its stable checkpoint covers
    // (`mayChangeView`; SAFETY.md, "A replica that lost its memory"), and it remembers every
    // vote since; waiting for its peers' prepared numbers too cost it a checkpoint interval more.
    const C = r.config.checkpointInterval;
    const prepared = r.startedAmnesic
      ? 0
      : Math.min(Math.max(0, ...r.peerPrepared.values()), r.stable.seq + 2 * C);
    r.catchUpTarget = {
      executed: kth(r.peerExecuted) ?? 0,
      stable: kth(r.peerStable) ?? 0,
      checkpoint: prepared > r.stable.seq ? Math.ceil(prepared / C) * C : 0,
    };
    // Should this replica be (or become) the primary, it pads for itself too.
    r.padUntil = Math.max(r.padUntil, r.catchUpTarget.checkpoint);
    propose(r);
    if (r.catchUpTarget.checkpoint > r.stable.seq) statusNow(r);
  }
  const target = r.catchUpTarget;
  if (
    r.lastExecuted < target.executed ||
    r.stable.seq < target.stable ||
    r.stable.seq < target.checkpoint
  )
    return;
  r.recoveredReported = true;
  r.out.push({ type: "recovered", seq: r.stable.seq, digest: r.stable.digest });
}

export function onExecuted(r: ReplicaState, from: string, entries: ExecutedEntry[]): void {
  for (const entry of entries) {
    if (entry.seq <= r.lastExecuted || entry.seq > r.lastExecuted + 4 * r.config.checkpointInterval)
      continue;
    if (batchDigest(entry.origin, entry.requests) !== entry.digest) {
      r.problem("bad-transfer-reply", from, `EXECUTED ${entry.seq}: digest does not match`);
      continue;
    }
    let byDigest = r.executedReports.get(entry.seq);
    if (byDigest === undefined) {
      byDigest = new Map();
      r.executedReports.set(entry.seq, byDigest);
    }
    for (const voters of byDigest.values()) voters.delete(from);
    let voters = byDigest.get(entry.digest);
    if (voters === undefined) {
      voters = new Set();
      byDigest.set(entry.digest, voters);
    }
    voters.add(from);
    r.reportedBatches.set(entry.digest, entry);
  }
  if (r.mode !== "recovering") executeReady(r);
}

/** A batch k'+1 peers say they executed at seq (one of them is correct). */
export function agreedExecuted(r: ReplicaState, seq: number): ExecutedEntry | undefined {
  if (r.mode === "recovering") return undefined;
  const byDigest = r.executedReports.get(seq);
  if (byDigest === undefined) return undefined;
  for (const [digest, voters] of byDigest)
    if (voters.size >= r.config.quorums.weak) {
      const entry = r.reportedBatches.get(digest);
      if (entry !== undefined) return entry;
    }
  return undefined;
}

/** Metas whose leaves a META carries at most: 64 leaf digests each, about 4 KiB. */
export const INLINE_METAS = 16;
/** Partition bytes a META carries at most, those of the metas whose leaves it carries. */
export const INLINE_PART_BYTES = 64 * 1024;

/**
 * What a META carries beyond its metas, for an asker whose own meta digests are `have`: the leaves
 * of (up to `INLINE_METAS` of) the metas that differ, and, while they fit in `INLINE_PART_BYTES`,
 * every partition under those metas (the asker keeps those whose leaves differ from its own). A
 * replica whose state differs in a few partitions then fetches it in one round trip, not three
 * (META, LEAVES, PARTS): on a loaded host each round trip waits for its peer's turn.
 */
function inlineDifference(
  s: KvSnapshot,
  metas: readonly string[],
  have: readonly string[],
): {
  leaves?: Array<{ meta: number; digests: string[] }>;
  parts?: PartitionData[];
} {
  if (have.length !== metas.length) return {};
  const differing: number[] = [];
  for (let i = 0; i < metas.length && differing.length < INLINE_METAS; i++)
    if (metas[i] !== have[i]) differing.push(i);
  if (differing.length === 0) return {};
  const leaves = differing.map((meta) => ({
    meta,
    digests: s.leafDigests(meta).map((d) => d.toString("hex")),
  }));
  const parts: Array<{ index: number; data: string }> = [];
  let bytes = 0;
  for (const meta of differing)
    for (let j = 0; j < FANOUT; j++) {
      // A partition larger than a piece goes piece by piece (`partsAnswer`), never whole.
      const size = s.partitionBytes(meta * FANOUT + j);
      bytes += size;
      if (bytes > INLINE_PART_BYTES || size > PIECE_BYTES) return { leaves, parts };
      const data = s.encodePartition(meta * FANOUT + j);
      parts.push({ index: meta * FANOUT + j, data: data.toString("base64") });
    }
  return { leaves, parts };
}

export function serveFetch(r: ReplicaState, from: string, body: ReplicaBody): void {
  if (!("seq" in body)) return;
  // Beyond its allowance the asker gets nothing: a correct one retries as after a loss.
  if (!r.fetchAnswers.take(from, r.nowMs)) {
    r.problem("fetch-over-allowance", from, `${body.type} ${body.seq}`);
    return;
  }
  const cp = r.ownCheckpoints.get(body.seq);
  if (cp === undefined || r.mode === "recovering") {
    r.send(from, { type: "NO_CHECKPOINT", seq: body.seq });
    return;
  }
  const s = cp.snapshot;
  const pageBytes = r.config.clientsPageBytes ?? r.config.maxReplyBytes;
  if (body.type === "FETCH_META") {
    const metas = s.metaDigests().map((d) => d.toString("hex"));
    const clients = clientsPage(cp.clients, 0, pageBytes);
    r.send(from, {
      type: "META",
      seq: cp.seq,
      kvRoot: s.root().toString("hex"),
      clients,
      metas,
      ...(body.have !== undefined ? inlineDifference(s, metas, body.have) : {}),
      ...(clients.length < cp.clients.length ? { clientsTotal: cp.clients.length } : {}),
    });
  } else if (body.type === "FETCH_CLIENTS") {
    const clients = clientsPage(cp.clients, body.from, pageBytes);
    r.count("state-transfer.client-pages-served");
    r.send(from, { type: "CLIENTS", seq: cp.seq, from: body.from, clients });
  } else if (body.type === "FETCH_LEAVES") {
    const metas = body.metas.filter((m) => m < s.metaDigests().length).slice(0, 64);
    r.send(from, {
      type: "LEAVES",
      seq: cp.seq,
      leaves: metas.map((meta) => ({
        meta,
        digests: s.leafDigests(meta).map((d) => d.toString("hex")),
      })),
    });
  } else if (body.type === "FETCH_PARTS") {
    r.send(from, { type: "PARTS", seq: cp.seq, parts: partsAnswer(r, s, body) });
  }
}

/**
 * The partitions a FETCH_PARTS asks for, whole, within a reply's bytes; or pieces of a partition
 * longer than a piece (PIECE_BYTES), as many in a row as a reply's bytes hold: from the first,
 * with every piece's digest, when it comes first in the list; from `offset` when asked for.
 * Sent whole, a partition of a few
 * values of 1 MiB was larger than a frame, and refused: a client that wrote them under keys
 * chosen to share a partition left every later state transfer that needed it unable to finish.
 */
function partsAnswer(
  r: ReplicaState,
  s: KvSnapshot,
  body: Extract<ReplicaBody, { type: "FETCH_PARTS" }>,
): PartitionData[] {
  // Only the pieces sent are encoded; the digests of all are made once per checkpoint.
  const piece = (index: number, totalBytes: number, offset: number): PartitionData => ({
    index,
    data: s.encodePartitionSlice(index, offset, offset + PIECE_BYTES).toString("base64"),
    offset,
    totalBytes,
    ...(offset === 0
      ? { pieces: s.partitionPieceDigests(index).map((d) => d.toString("hex")) }
      : {}),
  });
  // What the asker allows, if less than a reply may carry (its first answers, its link unmeasured).
  const maxBytes = Math.min(r.config.maxReplyBytes, body.maxBytes ?? Number.POSITIVE_INFINITY);
  // The pieces from `offset` on, as many as a reply's bytes hold (at least one).
  const pieces = (index: number, totalBytes: number, offset: number): PartitionData[] => {
    const out: PartitionData[] = [];
    for (let at = offset; at < totalBytes; at += PIECE_BYTES) {
      if (out.length > 0 && at - offset + PIECE_BYTES > maxBytes) break;
      out.push(piece(index, totalBytes, at));
    }
    return out;
  };
  if (body.offset !== undefined) {
    const index = body.parts[0] as number;
    if (index >= PARTITION_COUNT || body.offset % PIECE_BYTES !== 0) return [];
    const totalBytes = s.partitionBytes(index);
    return totalBytes > PIECE_BYTES ? pieces(index, totalBytes, body.offset) : [];
  }
  const parts: PartitionData[] = [];
  let bytes = 0;
  for (const index of body.parts.slice(0, 256)) {
    if (index >= PARTITION_COUNT) continue;
    const size = s.partitionBytes(index);
    if (size > PIECE_BYTES) {
      if (parts.length === 0) parts.push(...pieces(index, size, 0));
      break;
    }
    if (parts.length > 0 && bytes + size > maxBytes) break;
    bytes += size;
    parts.push({ index, data: s.encodePartition(index).toString("base64") });
  }
  return parts;
}
