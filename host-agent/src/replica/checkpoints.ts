/**
 * Checkpoints every C sequence numbers, made stable by a quorum of matching CHECKPOINTs, and the
 * log below a stable checkpoint discarded.
 */
import { behind } from "./catch-up.js";
import { checkpointDigest } from "./client-table.js";
import { settleColdStart } from "./cold-start.js";
import { propose } from "./normal-case.js";
import type { ReplicaState } from "./replica-state.js";

export function takeCheckpoint(r: ReplicaState, seq: number): void {
  const snapshot = r.store.snapshot();
  const clients = r.clients.list();
  const digest = checkpointDigest(snapshot.root().toString("hex"), r.clients.digest());
  r.ownCheckpoints.set(seq, { seq, digest, snapshot, clients });
  r.out.push({ type: "checkpoint", seq, digest, snapshot, clients });
  r.broadcast({ type: "CHECKPOINT", seq, digest });
  addCheckpointVote(r, seq, digest, r.config.self);
}

/**
 * A replica that found no stored checkpoint writes its starting state (sequence number 0) as one,
 * as it writes every later checkpoint: it moves down to the older files and out as the next ones
 * are written. Without it, a cold start early in the service's life needed k' + k + 1 disks to
 * hold the first checkpoint: replicas that lagged behind it, or were wiped since, held nothing,
 * and no view ever formed (the simulation, seed 9146: three disks held 16, two held nothing).
 * The starting state is a state the service really was in, so it may be agreed on as any other
 * stored checkpoint is, by k' + k + 1 holders; it only ever loses to a higher one.
 */
export function storeStartingState(r: ReplicaState): void {
  if (!r.startedFromNothing || r.lastExecuted !== 0) return;
  const own = r.ownCheckpoints.get(0);
  if (own === undefined) return;
  r.out.push({ type: "checkpoint", ...own });
}

export function addCheckpointVote(
  r: ReplicaState,
  seq: number,
  digest: string,
  from: string,
): void {
  if (seq < r.stable.seq && r.mode !== "recovering") return;
  let byDigest = r.checkpointVotes.get(seq);
  if (byDigest === undefined) {
    byDigest = new Map();
    r.checkpointVotes.set(seq, byDigest);
  }
  // One vote per replica and sequence number: a later, different vote replaces it.
  for (const voters of byDigest.values()) voters.delete(from);
  // A vote under a current key: whatever it said under a revoked one is replaced.
  r.revokedCheckpointVoters.get(seq)?.delete(from);
  let voters = byDigest.get(digest);
  if (voters === undefined) {
    voters = new Set();
    byDigest.set(digest, voters);
  }
  voters.add(from);
  const { quorum, weak } = r.config.quorums;
  // Where k' + 1 decide, votes cast under a key revoked since do not count: with the next host
  // the adversary takes they would be k' + 1 Byzantine voices.
  const revoked = r.revokedCheckpointVoters.get(seq);
  const live = revoked === undefined ? voters : new Set([...voters].filter((v) => !revoked.has(v)));
  const vouchers = () => [...live].filter((v) => v !== r.config.self);
  if (r.coldStart) {
    // A cold start's replica that missed the first view: a checkpoint a quorum holds was taken in
    // the new era (replicas vote only once they have a state of it), so it is one to start from.
    if (voters.size >= quorum) {
      r.count("cold-start.settled-by-checkpoint");
      settleColdStart(r, { seq, digest }, vouchers());
    }
    return;
  }
  if (r.mode === "recovering") {
    // Its own stored state proves nothing: take the newest checkpoint k'+1 peers vouch for.
    if (live.size >= weak) behind(r, { seq, digest }, vouchers());
    return;
  }
  const own = r.ownCheckpoints.get(seq);
  if (own !== undefined && own.digest !== digest && voters.size >= quorum) {
    // A quorum's checkpoint differs from this replica's own at a sequence number it executed:
    // its state has diverged (a fault, a corrupted disk). It stops answering as if its state
    // were good, and fetches the quorum's state, as a rejuvenated replica does.
    r.count("state.diverged");
    r.problem(
      "diverged",
      r.config.self,
      `checkpoint ${seq}: own digest ${own.digest.slice(0, 12)}, a quorum has ${digest.slice(0, 12)}`,
    );
    r.mode = "recovering";
    behind(r, { seq, digest }, vouchers());
    return;
  }
  if (own?.digest === digest && voters.size >= quorum && seq > r.stable.seq)
    makeStable(r, seq, digest);
  else if (live.size >= weak && seq >= r.lastExecuted + r.config.checkpointInterval)
    // A whole interval behind: the log suffix peers keep may no longer reach back here.
    behind(r, { seq, digest }, vouchers());
}

export function onCheckpoint(
  r: ReplicaState,
  from: string,
  body: { seq: number; digest: string },
): void {
  if (body.seq % r.config.checkpointInterval !== 0 && body.seq !== 0) return;
  if (body.seq < r.stable.seq && r.mode !== "recovering") return;
  // Bound the votes kept for the future: a Byzantine peer may claim any number.
  if (body.seq > r.lastExecuted + 64 * r.config.checkpointInterval && r.checkpointVotes.size > 256)
    return;
  addCheckpointVote(r, body.seq, body.digest, from);
}

export function makeStable(r: ReplicaState, seq: number, digest: string): void {
  r.stable = { seq, digest };
  r.out.push({ type: "stable", seq, digest });
  for (const s of [...r.slots.keys()]) if (s <= seq) r.slots.delete(s);
  for (const s of [...r.preparedInfo.keys()]) if (s <= seq) r.preparedInfo.delete(s);
  for (const s of [...r.prePreparedInfo.keys()]) if (s <= seq) r.prePreparedInfo.delete(s); // The log suffix is kept one interval longer, for peers just behind the checkpoint.
  const keepFrom = seq - r.config.checkpointInterval;
  for (const s of [...r.executedLog.keys()])
    if (s <= keepFrom) {
      r.executedLog.delete(s);
      r.executedAtMs.delete(s);
    }
  // Its own keys: a state installed (a repair, a cold start) clears the log, not this.
  for (const s of [...r.executedResends.keys()]) if (s <= keepFrom) r.executedResends.delete(s);
  for (const s of [...r.executedReports.keys()]) if (s <= seq) r.executedReports.delete(s);
  for (const s of [...r.checkpointVotes.keys()]) if (s < seq) r.checkpointVotes.delete(s);
  for (const s of [...r.revokedCheckpointVoters.keys()])
    if (s < seq) r.revokedCheckpointVoters.delete(s);
  // Keep the stable checkpoint (peers may fetch it) and anything newer.
  for (const s of [...r.ownCheckpoints.keys()]) if (s < seq) r.ownCheckpoints.delete(s);
  // Bodies still needed: those of open slots, and of what this replica prepared or pre-prepared
  // above the stable checkpoint, even after a view change closed the slot: its VIEW_CHANGE names
  // them, and a new view that re-proposes one fetches its body from those that named it
  // (`batch-fetch.ts`).
  const live = new Set<string>();
  for (const slot of r.slots.values()) if (slot.digest) live.add(slot.digest);
  for (const p of r.preparedInfo.values()) live.add(p.digest);
  for (const byDigest of r.prePreparedInfo.values()) for (const d of byDigest.keys()) live.add(d);
  for (const digest of [...r.batchesByDigest.keys()])
    if (!live.has(digest)) r.batchesByDigest.delete(digest);
  for (const [digest, entry] of [...r.reportedBatches])
    if (entry.seq <= seq) r.reportedBatches.delete(digest);
  if (r.nextSeq <= seq) r.nextSeq = seq + 1;
  propose(r);
}
