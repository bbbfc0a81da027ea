/**
 * STATUS: what each replica tells its peers every status interval (view, executed, stable,
 * prepared, amnesic), and what it does on hearing that a peer lags behind or is ahead: the
 * progress tracking of the protocol.
 */
import { refreshViewFor, viewFreshFor } from "./amnesia.js";
import { maybeRecovered } from "./catch-up.js";
import { relayKeys } from "./keys.js";
import { LARGE_MESSAGE_BYTES, LargeResends } from "./large-resends.js";
import { type ExecutedEntry, type ReplicaBody, requestBytesAtMost } from "./messages.js";
import { propose } from "./normal-case.js";
import type { ReplicaState } from "./replica-state.js";
import { ownViewChange } from "./view-change.js";

function maxPreparedSeq(r: ReplicaState): number {
  let max = r.lastExecuted;
  for (const seq of r.prePreparedInfo.keys()) if (seq > max) max = seq;
  return max;
}

export function broadcastStatus(r: ReplicaState): void {
  r.nextStatusMs = r.nowMs + r.config.statusIntervalMs;
  r.broadcast(statusBody(r));
}

function statusBody(r: ReplicaState): ReplicaBody {
  return {
    type: "STATUS",
    view: r.view,
    lastExecuted: r.lastExecuted,
    stableSeq: r.stable.seq,
    // A cold start's replica before its first view reports what its disk holds: no measure of
    // the service's progress (it may be a state that never was), so it counts as recovering.
    recovering: r.mode === "recovering" || r.coldStart,
    maxPrepared: maxPreparedSeq(r),
    wantCheckpoint: r.recoveredReported ? 0 : wantedCheckpoint(r),
    amnesic: r.amnesic,
    ...(r.recoveredReported ? {} : { catchingUp: true as const }),
  };
}

/**
 * A recovering replica's next step waits on what it tells its peers (the checkpoint it wants
 * padded to) or on what they tell it (their executed and stable numbers, counted afresh once its
 * state is installed): it says so at once rather than at its next status tick, and its peers
 * answer at once, at most twice per status interval each.
 */
export function statusNow(r: ReplicaState): void {
  if (!r.recoveredReported) broadcastStatus(r);
}

function answerCatchingUp(r: ReplicaState, from: string): void {
  const last = r.statusAnsweredAtMs.get(from);
  if (last !== undefined && r.nowMs - last < r.config.statusIntervalMs / 2) return;
  r.statusAnsweredAtMs.set(from, r.nowMs);
  r.send(from, statusBody(r));
}

/** The stable checkpoint this recovering replica waits for before it calls itself recovered. */
export function wantedCheckpoint(r: ReplicaState): number {
  const C = r.config.checkpointInterval;
  const horizon =
    !r.amnesic && r.amnesiaHorizon > r.stable.seq ? Math.ceil(r.amnesiaHorizon / C) * C : 0;
  return Math.max(r.catchUpTarget?.checkpoint ?? 0, horizon);
}

export function onStatus(
  r: ReplicaState,
  from: string,
  body: Extract<ReplicaBody, { type: "STATUS" }>,
): void {
  r.peerViews.set(from, body.view);
  r.peerStatusAtMs.set(from, r.nowMs);
  // What a STATUS makes this replica send (its log, checkpoints, votes, a NEW_VIEW) is rationed
  // per peer: a peer sending STATUS at network speed, each saying it is far behind, would
  // otherwise get up to a log's worth of EXECUTED, or a NEW_VIEW, for every few bytes it sent.
  const mayAnswer = r.statusAnswers.take(from, r.nowMs);
  if (!mayAnswer) r.count("status.over-allowance");
  if (body.catchingUp) answerCatchingUp(r, from);
  if (body.amnesic) {
    refreshViewFor(r, from);
    // In this view and still amnesic, though the view is fresh for it here: it entered another
    // NEW_VIEW for the view (an equivocating primary's). This one lets it vote again. (As to a
    // peer behind: at once, then once per view-change timeout, so that a replica that only
    // claims this gets no more than one that claims an older view.)
    if (mayAnswer && body.view === r.view && r.mode === "normal" && viewFreshFor(r, from))
      resendNewView(r, from);
  }
  if (!body.recovering) {
    r.peerExecuted.set(from, body.lastExecuted);
    r.peerStable.set(from, body.stableSeq);
    r.peerPrepared.set(from, body.maxPrepared);
  }
  // A recovering peer waits for a checkpoint: an idle primary fills the gap with null batches.
  const C = r.config.checkpointInterval;
  if (
    body.wantCheckpoint > r.stable.seq &&
    body.wantCheckpoint <= r.stable.seq + 2 * C &&
    body.wantCheckpoint % C === 0
  ) {
    r.padUntil = Math.max(r.padUntil, body.wantCheckpoint);
    propose(r);
  }
  maybeRecovered(r);
  // Nothing to vouch for or relay: no state yet, or (a cold start's) only what its disk held.
  if (r.mode === "recovering" || r.coldStart || !mayAnswer) return;
  // A peer behind our stable checkpoint needs the checkpoint (it gathers k'+1 votes).
  if (body.stableSeq < r.stable.seq || body.recovering) {
    r.send(from, { type: "CHECKPOINT", seq: r.stable.seq, digest: r.stable.digest });
  }
  // Our votes for newer checkpoints may have been lost (a partition): the peer's stable
  // checkpoint is behind ours-to-be, so send them again (a duplicate is dropped unchecked).
  for (const cp of r.ownCheckpoints.values())
    if (cp.seq > r.stable.seq && cp.seq > body.stableSeq && body.lastExecuted >= cp.seq)
      r.send(from, { type: "CHECKPOINT", seq: cp.seq, digest: cp.digest });
  if (body.lastExecuted < r.lastExecuted) {
    const entries: ExecutedEntry[] = [];
    let bytes = 0;
    for (let s = body.lastExecuted + 1; s <= r.lastExecuted; s++) {
      const e = r.executedLog.get(s);
      // Executed moments ago: the peer is likely just behind in the pipeline, not stuck. Unless it
      // is catching up: without the newest batches it falls a checkpoint behind again, and fetches
      // a second state where the log would have done.
      const at = r.executedAtMs.get(s);
      if (e === undefined || at === undefined) break;
      if (!body.catchingUp && r.nowMs - at < r.config.statusIntervalMs) break;
      // Counted as JSON could write the requests at most: at 256 bytes a request, an EXECUTED of
      // writes of 1 MiB held thousands of megabytes, over any frame, and was never sent.
      let entryBytes = 256;
      for (const request of e.requests) entryBytes += requestBytesAtMost(request);
      bytes += entryBytes;
      if (entries.length > 0 && bytes > r.config.maxReplyBytes) break;
      // A large batch goes again to the same peer ever more rarely (`large-resends.ts`). Large
      // by its characters, at least a byte each (the bound above counts six).
      const leastBytes = (entryBytes - 256 * (e.requests.length + 1)) / 6;
      let resends = r.executedResends.get(s);
      if (resends === undefined && leastBytes >= LARGE_MESSAGE_BYTES) {
        resends = new LargeResends();
        r.executedResends.set(s, resends);
      }
      if (
        resends !== undefined &&
        !resends.take(from, leastBytes, r.config.statusIntervalMs, r.nowMs)
      ) {
        r.count("resends.large-spaced");
        break;
      }
      entries.push(e);
    }
    // Signed to a peer still recovering: it may not hold this replica's session half yet, and a
    // MAC'd report it cannot check is kept for later only up to 256 KiB (`awaiting-keys.ts`).
    if (entries.length > 0 && (body.catchingUp || body.recovering))
      r.sendSigned(from, { type: "EXECUTED", entries });
    else if (entries.length > 0) r.send(from, { type: "EXECUTED", entries });
  }
  if (body.view === r.view && r.mode === "normal" && body.lastExecuted >= r.stable.seq) {
    // Retransmit our part of whatever is still in flight: the network may have lost it. Not what
    // this replica executed already (the EXECUTED above carries that), nor to a peer behind its
    // stable checkpoint (it takes the checkpoint first): a STATUS claiming to have executed
    // nothing would otherwise get three messages for every slot of the log window.
    for (const [seq, slot] of r.slots) {
      if (seq <= body.lastExecuted || seq <= r.lastExecuted || slot.view !== r.view) continue;
      if (r.nowMs - slot.sinceMs < r.config.statusIntervalMs) continue;
      for (const m of [slot.prePrepare, slot.sentPrepare, slot.sentCommit]) {
        if (m === undefined) continue;
        // A large PRE_PREPARE goes again ever more rarely (`large-resends.ts`).
        slot.largeResends ??= new LargeResends();
        if (!slot.largeResends.take(from, m.length, r.config.statusIntervalMs, r.nowMs)) {
          r.count("resends.large-spaced");
          continue;
        }
        r.out.push({ type: "send", to: from, message: m });
      }
    }
  }
  if (body.view < r.view) resendNewView(r, from);
  else if (body.view === r.targetView && r.mode === "view-change") {
    const mine = ownViewChange(r);
    if (mine) r.out.push({ type: "send", to: from, message: mine.wire });
  }
}

/**
 * A peer in an older view gets this view's NEW_VIEW (signed by its primary, checkable by
 * anyone): from the primary at most once a status interval, from the others once per view-change
 * timeout, so that a primary withholding it cannot keep a peer out of the view. The primary
 * broadcast it as it formed the view, and a STATUS written before that copy arrived says nothing
 * new: nothing goes before a status interval into the view (as this replica entered it) from the
 * primary, two from the others. (Sent at
 * every such STATUS by everyone who had entered the view, a rolling benchmark's nine views had
 * 135 NEW_VIEWs received, 83 now.)
 */
function resendNewView(r: ReplicaState, to: string): void {
  if (r.newViewMessage === undefined) return;
  const last = r.newViewSentAtMs.get(to);
  const isPrimary = r.primaryOf(r.view) === r.config.self;
  const { statusIntervalMs, viewChangeTimeoutMs } = r.config;
  const waitMs =
    last === undefined
      ? (isPrimary ? 1 : 2) * statusIntervalMs - (r.nowMs - r.viewEnteredAtMs)
      : (isPrimary ? statusIntervalMs : viewChangeTimeoutMs) - (r.nowMs - last);
  if (waitMs > 0) return;
  r.newViewSentAtMs.set(to, r.nowMs);
  // With the keys to check it: a peer that has just started may lack one that only its holder
  // would send it (a Byzantine primary or VIEW_CHANGE sender of this view never does).
  relayKeys(r, to);
  r.out.push({ type: "send", to, message: r.newViewMessage });
}
