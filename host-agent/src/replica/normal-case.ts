/**
 * PBFT's normal case: client requests and their per-request timers, PRE_PREPARE, PREPARE and
 * COMMIT with batching, and execution in sequence order.
 */
import type { KvResult } from "../kv/kv-operation.js";
import { agreedExecuted, maybeRecovered } from "./catch-up.js";
import { takeCheckpoint } from "./checkpoints.js";
import {
  batchDigest,
  batchOrigin,
  type ClientRequest,
  type ReplicaBody,
  type ReplicaEnvelope,
  requestBytesAtMost,
  requestDigest,
  requestFreshnessBytes,
} from "./messages.js";
import { noteProgress, progressTimeoutMs } from "./progress-timeout.js";
import type { ReplicaState, Slot } from "./replica-state.js";
import {
  afterHolders,
  holdBack,
  isWeak,
  keepNewestUnproposed,
  mayPropose,
  sendHold,
  startTiming,
  storedHolders,
} from "./request-holds.js";
import { startViewChange, takeFixedBody } from "./view-change.js";

/**
 * Whether a request names a client on the list: the one check of a request that rests on its
 * bytes alone, so every correct replica reaches the same verdict on it. Whether its client sent
 * it is for `isFresh` to say, or for k' + 1 others (SAFETY.md, "Where a request comes from").
 */
export function fromKnownClient(r: ReplicaState, request: ClientRequest): boolean {
  if (r.ring.hasClient(request.client)) return true;
  r.problem("unknown-client", request.client, "a request from a client not on the list");
  return false;
}

/**
 * Whether the client sent this copy to this replica since the replica started: its MAC checks
 * under the client's session with this replica's current half, which is made at every start
 * (SAFETY.md, "Where a request comes from"). The connection is no proof: the network may replay
 * an old copy into it. A copy without one that checks brings the client this replica's half.
 */
export function isFresh(
  r: ReplicaState,
  client: string,
  message: { request: ClientRequest; mac?: string },
): boolean {
  const sessions = r.clientSessions;
  if (sessions === undefined) return false;
  if (
    message.mac !== undefined &&
    sessions.check(client, requestFreshnessBytes(message.request), message.mac) === "ok"
  )
    return true;
  r.count("requests.not-fresh");
  const half = sessions.prompt(client, r.signer, r.nowMs);
  if (half !== undefined) r.out.push({ type: "reply", client, message: half });
  return false;
}

/**
 * A request from its client's own connection (the only way requests reach `onRequest`); `fresh`:
 * sent to this replica since it started (`isFresh`). Only a fresh copy is held, proposed or
 * voted for; a stale one at most fetches the result of its execution, which is the client's.
 */
export function onRequest(r: ReplicaState, request: ClientRequest, fresh: boolean): void {
  if (!fromKnownClient(r, request)) return;
  const digest = requestDigest(request);
  if (!fresh) {
    const last = r.clients.last(request.client);
    if (
      last !== undefined &&
      request.ts === last.ts &&
      r.recoveredReported &&
      r.mode !== "recovering"
    )
      sendReply(r, request.client, last);
    return;
  }
  if (!r.fromClient.has(digest)) {
    r.fromClient.add(digest);
    voteAwaiting(r, digest);
  }
  const last = r.clients.last(request.client);
  if (last !== undefined && request.ts <= last.ts) {
    // The result again, but only from a state known good: a replica recovering, or settling a
    // cold start by transfer, still holds the client table its disk had, which may record an
    // execution the service went back on (the simulation, seed 2684: a reply from it completed a
    // request with the result of an execution a cold start lost).
    if (request.ts === last.ts && r.recoveredReported && r.mode !== "recovering")
      sendReply(r, request.client, last);
    return;
  }
  if (r.pending.has(digest)) return;
  hold(r, digest, request);
  if (!keepNewestUnproposed(r, digest, request)) return;
  if (r.isPrimary) {
    if (mayPropose(r, digest, request)) {
      r.queued.push(digest);
      startTiming(r, digest);
    } else holdBack(r, digest);
  } else {
    // A backup times a request once it is proposed, or once enough replicas hold it for the
    // primary to propose it (`request-holds.ts`); a suspect's is announced at once.
    if (r.proposedIn.get(digest) === r.view) startTiming(r, digest);
    if (r.suspects.has(request.client) && r.mode === "normal") {
      sendHold(r, digest, request);
      afterHolders(r, digest, request.client);
    }
  }
  propose(r);
}

/** A request known, not executed yet; its timer is its callers' to start (`startTiming`). */
export function hold(r: ReplicaState, digest: string, request: ClientRequest): void {
  r.pending.set(digest, request);
  if (!r.receivedAtMs.has(digest)) r.receivedAtMs.set(digest, r.nowMs);
}

export function release(r: ReplicaState, digest: string): void {
  r.pending.delete(digest);
  r.pendingSinceMs.delete(digest);
  r.receivedAtMs.delete(digest);
  r.proposedIn.delete(digest);
  r.holdSentAtMs.delete(digest);
  r.holdSent.delete(digest);
  r.holdersResends.delete(digest);
  r.holdsRelayedAtMs.delete(digest);
}

/**
 * The primary is suspected when the request that has waited longest has waited a timeout, or
 * a slot of this view has waited that long for a request its client did not send here (it may
 * hold none of this replica's pending requests, and stall every one behind it all the same).
 */
export function armSuspicion(r: ReplicaState): void {
  let oldest = Number.POSITIVE_INFINITY;
  for (const since of r.pendingSinceMs.values()) oldest = Math.min(oldest, since);
  for (const [seq, since] of [...r.awaitingSinceMs]) {
    const slot = r.slots.get(seq);
    if (slot?.awaiting === undefined || slot.view !== r.view || seq <= r.lastExecuted)
      r.awaitingSinceMs.delete(seq);
    else oldest = Math.min(oldest, since);
  }
  r.progressDeadlineMs =
    oldest === Number.POSITIVE_INFINITY ? undefined : oldest + progressTimeoutMs(r);
}

function sendReply(
  r: ReplicaState,
  client: string,
  executed: { ts: number; op?: string; result: KvResult; seq: number; batch?: string },
): void {
  const { ts, op, result, seq, batch } = executed;
  // An entry from a checkpoint written before replies named the request: no client could take it.
  if (op === undefined) return;
  const body: ReplicaBody = {
    type: "REPLY",
    view: r.view,
    client,
    ts,
    seq,
    ...(batch !== undefined ? { batch } : {}),
    op,
    result,
  };
  r.count(r.clientSessions?.hasSession(client) === true ? "replies.mac" : "replies.signed");
  const messages = r.clientSessions?.seal(client, body, r.signer) ?? [r.seal(body)];
  for (const message of messages) r.out.push({ type: "reply", client, message });
}

function inWindow(r: ReplicaState, seq: number): boolean {
  return seq > r.stable.seq && seq <= r.stable.seq + 2 * r.config.checkpointInterval;
}

export function slotAt(r: ReplicaState, seq: number, view: number): Slot {
  let slot = r.slots.get(seq);
  if (slot === undefined || slot.view < view) {
    slot = {
      view,
      prepares: new Map(),
      commits: new Map(),
      prepared: false,
      committed: false,
      sinceMs: r.nowMs,
    };
    r.slots.set(seq, slot);
  }
  return slot;
}

/**
 * A batch holds requests up to this many bytes (as `requestBytesAtMost` counts them), and always
 * its first: writes of up to 1 MiB each, eight to a batch, made PRE_PREPAREs larger than a frame
 * may be, which are not sent (`frameOrRefuse`), and the slot stalled until a view change.
 */
export const MAX_BATCH_BYTES = 2 * 1024 * 1024;

/** The primary proposes batches while its window allows. */
export function propose(r: ReplicaState): void {
  if (!r.isPrimary || r.handingOff || r.amnesic) return;
  while (
    (r.queued.length > 0 || r.nextSeq <= r.padUntil) &&
    // Null batches padding to the checkpoint a recovering replica waits for go out all at once
    // (they cost nothing to execute); client batches keep to the window.
    (mayOpenSlot(r) || (r.queued.length === 0 && r.nextSeq <= r.padUntil)) &&
    inWindow(r, r.nextSeq)
  ) {
    const requests: ClientRequest[] = [];
    // Requests proposed on their holders' word (`isWeak`) share a batch only while 2k' replicas
    // this primary knows of hold them all; the others wait their turn.
    const deferred: string[] = [];
    let weakHolders: Set<string> | undefined;
    let batchBytes = 0;
    while (r.queued.length > 0 && requests.length < r.config.batchMax) {
      const d = r.queued.shift() as string;
      const p = r.pending.get(d);
      if (p === undefined) continue;
      const bytes = requestBytesAtMost(p);
      if (requests.length > 0 && batchBytes + bytes > MAX_BATCH_BYTES) {
        // Full in bytes: this one opens the next batch.
        deferred.push(d);
        break;
      }
      if (isWeak(r, d, p)) {
        const holders = storedHolders(r, d, p.client);
        if (weakHolders !== undefined) {
          const common = new Set([...weakHolders].filter((h) => holders.has(h)));
          if (common.size < 2 * r.config.quorums.kPrime) {
            deferred.push(d);
            continue;
          }
          weakHolders = common;
        } else weakHolders = holders;
      }
      requests.push(p);
      batchBytes += bytes;
      r.proposedIn.set(d, r.view);
    }
    r.queued.unshift(...deferred);
    if (requests.length === 0 && r.nextSeq > r.padUntil) return;
    const seq = r.nextSeq++;
    r.count("batches.proposed");
    if (requests.length === 0) r.count("batches.null");
    r.counters.set(
      "requests.proposed",
      (r.counters.get("requests.proposed") ?? 0) + requests.length,
    );
    const origin = requests.length === 0 ? "" : batchOrigin(r.config.self, r.epoch);
    const digest = batchDigest(origin, requests);
    const body: ReplicaBody = { type: "PRE_PREPARE", view: r.view, seq, digest, origin, requests };
    const message = r.broadcast(body);
    const slot = slotAt(r, seq, r.view);
    slot.digest = digest;
    slot.origin = origin;
    slot.requests = requests;
    slot.prePrepare = message;
    notePrePrepared(r, seq, digest, origin, requests);
  }
}

/**
 * Batch size adapting to load: with no batch in flight, whatever waits goes at once; with one in
 * flight, another opens only once a quarter of a full batch waits, up to the window. Under light
 * load the requests that come meanwhile wait for the batch ahead and go together (each batch
 * costs every replica the same frames whatever it holds: at n = 4 with eight clients, a window
 * always open made batches of 1.6 requests, one that waits 2.4, and 15% more throughput); under
 * heavy load batches fill and several are in flight.
 */
function mayOpenSlot(r: ReplicaState): boolean {
  const inFlight = r.nextSeq - 1 - r.lastExecuted;
  if (inFlight === 0) return true;
  return (
    inFlight < r.config.maxInFlight &&
    r.queued.length >= Math.max(2, Math.ceil(r.config.batchMax / 4))
  );
}

export function notePrePrepared(
  r: ReplicaState,
  seq: number,
  digest: string,
  origin: string,
  requests: ClientRequest[],
): void {
  let byDigest = r.prePreparedInfo.get(seq);
  if (byDigest === undefined) {
    byDigest = new Map();
    r.prePreparedInfo.set(seq, byDigest);
  }
  byDigest.set(digest, Math.max(byDigest.get(digest) ?? 0, r.view));
  r.batchesByDigest.set(digest, { origin, requests });
}

export function onPrePrepare(
  r: ReplicaState,
  from: string,
  body: Extract<ReplicaBody, { type: "PRE_PREPARE" }>,
  envelope: ReplicaEnvelope,
): void {
  if (r.mode !== "normal" || body.view !== r.view) return;
  if (from !== r.primary) {
    r.problem("bad-pre-prepare", from, "a PRE_PREPARE from a replica that is not the primary");
    return;
  }
  if (!inWindow(r, body.seq) || body.seq <= r.lastExecuted) return;
  const slot = slotAt(r, body.seq, body.view);
  if (slot.digest !== undefined) {
    if (slot.digest !== body.digest) {
      r.problem(
        "bad-pre-prepare",
        from,
        `two PRE_PREPAREs for seq ${body.seq} in view ${body.view}`,
      );
      suspectPrimary(r);
    } else if (slot.requests === undefined) {
      // A batch the NEW_VIEW fixed whose body this replica is still fetching: the primary's
      // PRE_PREPARE, sent again, carries it.
      const { digest, origin, requests } = body;
      if (takeFixedBody(r, body.seq, { digest, origin, requests })) {
        r.count("batches.from-pre-prepare");
        executeReady(r);
      }
    }
    return;
  }
  if (
    body.requests.length > r.config.batchMax ||
    batchDigest(body.origin, body.requests) !== body.digest ||
    !body.requests.every((req) => fromKnownClient(r, req))
  ) {
    r.problem("bad-pre-prepare", from, `PRE_PREPARE ${body.seq}: batch does not check out`);
    suspectPrimary(r);
    return;
  }
  if (body.requests.length > 0 && body.origin !== batchOrigin(from, envelope.epoch)) {
    // A batch is taken from a PRE_PREPARE only as proposed afresh, under the primary's own
    // current key: one made before a cold start (an older epoch) never reaches a vote again, so
    // no batch of the new era has the digest of one executed in the era before (SAFETY.md, "A
    // cold start"). Batches a NEW_VIEW re-proposes keep their origin, and come with the NEW_VIEW;
    // a correct primary may retransmit their PRE_PREPARE, so this alone is no reason to suspect.
    r.problem(
      "bad-pre-prepare",
      from,
      `PRE_PREPARE ${body.seq}: batch origin ${body.origin} is not the primary at its current epoch`,
    );
    return;
  }
  slot.digest = body.digest;
  slot.origin = body.origin;
  slot.requests = body.requests;
  slot.prePrepare = envelope.wire;
  const digests = body.requests.map((req) => requestDigest(req));
  for (const d of digests) {
    // Proposed: whoever holds it times it now, a suspect's request included.
    r.proposedIn.set(d, body.view);
    startTiming(r, d);
  }
  const awaiting = new Set(digests.filter((d) => !r.fromClient.has(d)));
  if (awaiting.size > 0) {
    // No vote for a request its client has not sent this replica since it started: the batch
    // may carry one that was executed and then lost in a cold start, which any replica that saw
    // it could propose again (SAFETY.md, "Where a request comes from"). The client sends every
    // request to every replica, so this is normally a matter of which arrives first; until
    // then the slot is watched, and prepares from the PREPAREs of others.
    slot.awaiting = awaiting;
    r.awaitingSinceMs.set(body.seq, r.nowMs);
    if (r.progressDeadlineMs === undefined) armSuspicion(r);
    r.count("votes.awaiting-client");
    checkPrepared(r, body.seq);
    return;
  }
  vote(r, body.seq, slot);
}

/** A backup's PREPARE for a batch it found valid, every request of it from its own client. */
function vote(r: ReplicaState, seq: number, slot: Slot): void {
  if (slot.digest === undefined || slot.requests === undefined || slot.origin === undefined) return;
  notePrePrepared(r, seq, slot.digest, slot.origin, slot.requests);
  if (r.progressDeadlineMs === undefined) armSuspicion(r);
  if (!r.mayVote()) {
    // It watches the slot (it may execute from others' votes) but casts no vote of its own.
    r.count("votes.withheld");
    checkPrepared(r, seq);
    return;
  }
  slot.sentPrepare = r.broadcast({ type: "PREPARE", view: slot.view, seq, digest: slot.digest });
  slot.prepares.set(r.config.self, slot.digest);
  checkPrepared(r, seq);
}

/** A request just came from its client: vote in the slots that waited for it. */
function voteAwaiting(r: ReplicaState, digest: string): void {
  for (const [seq, slot] of r.slots) {
    if (slot.awaiting === undefined || !slot.awaiting.delete(digest)) continue;
    if (slot.awaiting.size > 0) continue;
    delete slot.awaiting;
    if (
      r.mode !== "normal" ||
      slot.view !== r.view ||
      seq <= r.lastExecuted ||
      slot.sentPrepare !== undefined
    )
      continue;
    r.count("votes.after-client");
    vote(r, seq, slot);
  }
}

/** A primary caught lying: move on without waiting for the timeout. */
function suspectPrimary(r: ReplicaState): void {
  if (r.mode === "normal") startViewChange(r, r.view + 1);
}

export function onPrepare(
  r: ReplicaState,
  from: string,
  body: { view: number; seq: number; digest: string },
): void {
  if (r.mode !== "normal" || body.view !== r.view || !inWindow(r, body.seq)) return;
  if (from === r.primary) return; // the primary's vote is its PRE_PREPARE
  const slot = slotAt(r, body.seq, body.view);
  if (slot.view !== body.view) return;
  slot.prepares.set(from, body.digest);
  checkPrepared(r, body.seq);
}

export function onCommit(
  r: ReplicaState,
  from: string,
  body: { view: number; seq: number; digest: string },
): void {
  if (r.mode !== "normal" || body.view !== r.view || !inWindow(r, body.seq)) return;
  const slot = slotAt(r, body.seq, body.view);
  if (slot.view !== body.view) return;
  slot.commits.set(from, body.digest);
  checkCommitted(r, body.seq);
}

/** The primary's PRE_PREPARE and the backups' PREPAREs for this slot's batch: k' + 1 or more. */
function attested(r: ReplicaState, slot: Slot): boolean {
  if (r.mode !== "normal" || slot.view !== r.view || slot.sentPrepare !== undefined) return false;
  if (slot.prePrepare === undefined || slot.digest === undefined) return false;
  // The primary's PRE_PREPARE and the backups' PREPAREs (a revoked host's were dropped).
  return 1 + matching(slot.prepares, slot.digest) >= r.config.quorums.kPrime + 1;
}

export function matching(votes: Map<string, string>, digest: string): number {
  let n = 0;
  for (const d of votes.values()) if (d === digest) n++;
  return n;
}

export function checkPrepared(r: ReplicaState, seq: number): void {
  const slot = r.slots.get(seq);
  if (slot === undefined || slot.prepared || slot.digest === undefined) return;
  // The primary's PRE_PREPARE is one of the certificate's words: not once its key was revoked.
  if (slot.primaryRevoked) return;
  if (slot.awaiting !== undefined && attested(r, slot)) {
    // k' + 1 others vouch for the batch (the primary by its PRE_PREPARE, backups by their
    // PREPAREs): one of them is correct and had its requests from their clients, or had k' + 1
    // such words itself, and so on back to one that had them from the clients (SAFETY.md,
    // "Where a request comes from"). A client that sent its request to the primary and k'
    // backups alone no longer leaves the others unable to vote.
    delete slot.awaiting;
    r.count("votes.attested");
    vote(r, seq, slot);
    return;
  }
  // q - 1 PREPAREs from backups plus the primary's PRE_PREPARE.
  if (matching(slot.prepares, slot.digest) < r.config.quorums.quorum - 1) return;
  // Not without the body (a NEW_VIEW's batch still being fetched, `batch-fetch.ts`): a replica
  // that COMMITs holds the body and says so in its next VIEW_CHANGE (pre-prepared), so that the
  // quorum committing a batch are k' + 1 vouchers for it (A2) and can give it to the rest. Its
  // PREPARE needed the digest alone; `onBatch` comes back here.
  if (slot.requests === undefined || slot.origin === undefined) {
    r.count("commit.awaiting-body");
    return;
  }
  slot.prepared = true;
  delete slot.awaiting;
  // Prepared on q - 1 PREPAREs, more than k': one from a correct replica whose clients sent it
  // the requests, as good a reason as its own, whether or not this one voted (it may have been
  // waiting, or not allowed to). Its VIEW_CHANGE names the batch pre-prepared.
  notePrePrepared(r, seq, slot.digest, slot.origin, slot.requests);
  r.preparedInfo.set(seq, { seq, view: slot.view, digest: slot.digest });
  if (!r.mayVote()) {
    checkCommitted(r, seq);
    return;
  }
  slot.sentCommit = r.broadcast({ type: "COMMIT", view: slot.view, seq, digest: slot.digest });
  slot.commits.set(r.config.self, slot.digest);
  checkCommitted(r, seq);
}

function checkCommitted(r: ReplicaState, seq: number): void {
  const slot = r.slots.get(seq);
  if (slot === undefined || slot.committed || !slot.prepared || slot.digest === undefined) return;
  if (matching(slot.commits, slot.digest) < r.config.quorums.quorum) return;
  slot.committed = true;
  executeReady(r);
}

export function executeReady(r: ReplicaState): void {
  // A cold start's replica executes nothing on what its disk held: it may be a state that never
  // was, and its checkpoints would vouch for it. Its first view gives it a state.
  if (r.coldStart) return;
  for (;;) {
    const seq = r.lastExecuted + 1;
    const slot = r.slots.get(seq);
    if (
      slot?.committed &&
      slot.requests !== undefined &&
      slot.origin !== undefined &&
      slot.digest !== undefined
    ) {
      execute(r, seq, slot.view, slot.digest, slot.origin, slot.requests);
      continue;
    }
    const reported = agreedExecuted(r, seq);
    if (reported !== undefined) {
      r.count("executed.from-peers");
      execute(r, seq, reported.view, reported.digest, reported.origin, reported.requests);
      continue;
    }
    break;
  }
  if (r.mode === "normal") propose(r);
  maybeRecovered(r);
}

export function execute(
  r: ReplicaState,
  seq: number,
  view: number,
  digest: string,
  origin: string,
  requests: ClientRequest[],
): void {
  const results: Array<KvResult | undefined> = [];
  for (const request of requests) {
    release(r, requestDigest(request));
    // Nothing is checked again here: a committed batch is the client's on the word of the
    // replicas that voted for it, one of which had every request from its client (SAFETY.md,
    // "Where a request comes from"). A check that some replicas could pass and others not would
    // be the one way for correct replicas to execute different things.
    if (!r.ring.hasClient(request.client)) {
      // Refused before any vote (`onPrePrepare`, `onNewView`): only a bug could get here. The
      // list is the same everywhere, so every correct replica skips it alike.
      results.push(undefined);
      continue;
    }
    if (request.ts <= r.clients.lastTs(request.client)) {
      results.push(undefined);
      continue;
    }
    const result = r.store.apply(request.op);
    r.readSince.noteExecuted(request.op, seq);
    const op = requestDigest(request);
    r.clients.record(request.client, request.ts, op, result, seq, digest);
    results.push(result);
    sendReply(r, request.client, { ts: request.ts, op, result, seq, batch: digest });
  }
  if (results.some((result) => result !== undefined)) noteProgress(r);
  r.lastExecuted = seq;
  r.executedLog.set(seq, { seq, view, digest, origin, requests });
  r.executedAtMs.set(seq, r.nowMs);
  r.out.push({ type: "executed", seq, view, digest, requests, results });
  // The suspicion timer runs on for whatever is still pending: executing something else is
  // not progress for a request that has waited.
  armSuspicion(r);
  if (seq % r.config.checkpointInterval === 0) takeCheckpoint(r, seq);
}
