/**
 * View changes: suspecting the primary or handing off, VIEW_CHANGE, forming a view from a quorum
 * of them (NEW_VIEW), and entering a view only with its NEW_VIEW. The decision itself, pure, is
 * in `new-view-decision.ts`.
 */
import { endAmnesiaIfFresh, freshForSelf, holdsEveryKey, keyEpochs } from "./amnesia.js";
import {
  askForBatches,
  bodiesWithin,
  bodyBytesAtMost,
  missBatch,
  takeBatches,
  viewChangeBodyBudget,
} from "./batch-fetch.js";
import { behind } from "./catch-up.js";
import { settleColdStart } from "./cold-start.js";
import { queryKey, sendMissingKeys } from "./keys.js";
import {
  type BatchBody,
  batchDigest,
  MAX_PASSED_OVER,
  MAX_SUSPECTS,
  parseEnvelope,
  type ReplicaBody,
  type ReplicaEnvelope,
  requestDigest,
  type SeqDigest,
  type ViewSeqDigest,
} from "./messages.js";
import {
  decideNewView,
  isColdStartSet,
  isMixedSet,
  type ViewChangeBody,
  viewChangeFault,
} from "./new-view-decision.js";
import {
  armSuspicion,
  checkPrepared,
  executeReady,
  fromKnownClient,
  notePrePrepared,
  propose,
  slotAt,
} from "./normal-case.js";
import { noteViewChangeStarted, progressTimeoutMs } from "./progress-timeout.js";
import {
  type EnteredView,
  type ReplicaState,
  VIEWS_REMEMBERED_PER_REPLICA,
} from "./replica-state.js";
import {
  enoughHolders,
  holdBack,
  mayPropose,
  noteSuspects,
  pruneAtNewView,
  relayHoldersToNewPrimary,
  startTiming,
  suspectsToName,
} from "./request-holds.js";

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

/** The group the boards rejuvenate `host` with, and the group rejuvenated just before it. */
export function groupAndGroupBefore(
  r: ReplicaState,
  host: string,
): { group: readonly string[]; before: readonly string[] } {
  const { ids } = r.config;
  const k = Math.max(1, r.config.quorums.k);
  const groups =
    r.config.rejuvenationGroups ??
    Array.from({ length: Math.ceil(ids.length / k) }, (_, g) => ids.slice(g * k, g * k + k));
  const g = groups.findIndex((members) => members.includes(host));
  if (g < 0) return { group: [host], before: [] };
  return {
    group: groups[g] ?? [host],
    before: groups[(g - 1 + groups.length) % groups.length] ?? [],
  };
}

/**
 * The first view after `view` whose primary is in the group rejuvenated just before `host`'s (in
 * the boards' order) and passes `usable`: such a primary keeps its place for a whole period
 * instead of going down with the next group, which would cost one more view change.
 */
export function viewLedByGroupBefore(
  r: ReplicaState,
  view: number,
  host: string,
  usable: (id: string) => boolean,
): number | undefined {
  const { ids } = r.config;
  const n = ids.length;
  const { before } = groupAndGroupBefore(r, host);
  for (let step = 1; step <= n; step++) {
    const primary = ids[(view + step) % n] as string;
    if (primary !== host && before.includes(primary) && usable(primary)) return view + step;
  }
  return undefined;
}

/**
 * The view `primary`'s planned hand-off goes to (see `viewLedByGroupBefore`): read off the
 * departing primary's group at every replica, so that all ask for the same view. (Read off each
 * one's own group, followers asked for views above the primary's; each such one then refused the
 * view the others formed, as below its own VIEW_CHANGE, until a later view passed its own.)
 */
function handOffView(r: ReplicaState, view: number, primary: string): number {
  return viewLedByGroupBefore(r, view, primary, () => true) ?? view + 1;
}

/** Exponential back-off: each further view waits twice as long for its NEW_VIEW (at most 64×). */
export function viewChangeWaitMs(r: ReplicaState): number {
  const backoff = Math.min(2 ** Math.min(Math.max(r.viewChangeAttempts - 1, 0), 6), 64);
  return r.config.viewChangeTimeoutMs * backoff;
}

export function startViewChange(r: ReplicaState, newView: number): void {
  if (newView <= r.view && r.mode !== "view-change") return;
  if (r.mode === "view-change" && newView <= r.targetView) return;
  if (!r.mayChangeView()) {
    // One of the k silent ones for view changes: the others change views without it, and it
    // follows their NEW_VIEW.
    r.count("view-change.withheld");
    if (r.mode === "normal") r.progressDeadlineMs = r.nowMs + progressTimeoutMs(r);
    return;
  }
  r.count("view-change.started");
  // Not already changing views (a recovering replica stays "recovering" while it does): each step
  // up to a higher view is the same stall.
  if (r.targetView <= r.view) noteViewChangeStarted(r);
  // Leaving a view it asked for without entering it (it timed out, its primary sent a NEW_VIEW
  // that does not follow, or k' + 1 peers took it along to a higher one): passed over. The list
  // tells of this view change alone: one that ended without a view entered (a cold start's or a
  // repair's state transfer) must not pass its views to the next.
  if (r.mode !== "view-change") r.viewsPassedOver.length = 0;
  else if (newView > r.targetView && !r.viewsPassedOver.includes(r.targetView)) {
    r.viewsPassedOver.push(r.targetView);
    if (r.viewsPassedOver.length > MAX_PASSED_OVER) r.viewsPassedOver.shift();
  }
  r.mode = r.mode === "recovering" ? "recovering" : "view-change";
  r.targetView = newView;
  r.viewChangeAttempts++;
  r.viewChangeDeadlineMs = r.nowMs + viewChangeWaitMs(r);
  r.progressDeadlineMs = undefined;
  sendViewChange(r, newView);
}

function sendViewChange(r: ReplicaState, newView: number): void {
  r.highestViewChangeSent = Math.max(r.highestViewChangeSent, newView);
  const message = r.broadcast(viewChangeBody(r, newView));
  const own = parseEnvelope(message);
  // Its own VIEW_CHANGE parses as its peers would parse it; one that does not is a bug here.
  if (own === undefined) throw new Error(`own VIEW_CHANGE for view ${newView} does not parse`);
  recordViewChange(r, own);
}

/**
 * A key learned while changing views: the VIEW_CHANGE already sent does not hold it, so a
 * replica that key's owner could have lost its memory cannot trust a view formed from it. Sent
 * again, holding every key known now.
 */
export function refreshOwnViewChange(r: ReplicaState): void {
  if (r.mode !== "view-change" || !r.mayChangeView()) return;
  const mine = ownViewChange(r)?.body as ViewChangeBody | undefined;
  if (mine !== undefined && holdsEveryKey(r, mine.keyEpochs)) return;
  r.count("view-change.refreshed");
  // Views passed over before the key was learned say nothing of the primaries' part in a view
  // for its owner, who may have lost its memory since.
  r.viewsPassedOver.length = 0;
  sendViewChange(r, r.targetView);
}

/**
 * Whether the view this replica is changing to had its chance and failed, so that going on to
 * another is of use (PBFT's rule: the timer runs only once a quorum asked for the view).
 * - Not while k' + 1 peers say (in their STATUS) they are in it or past it: a view at least this
 *   high formed, and its NEW_VIEW, sent on to a replica whose STATUS shows an older view, is on
 *   its way. Going higher, this replica would refuse it as below its own VIEW_CHANGE.
 * - Not while fewer than a quorum, itself included, asked for it or for a higher view: alone, it
 *   would only climb away from the view its peers are in, one timeout after another, and stay out
 *   of theirs until a later view passed its own. It waits; k' + 1 peers asking for a higher view
 *   take it along (`onViewChange`).
 */
export function viewChangeFailed(r: ReplicaState): boolean {
  const { self, quorums, viewChangeTimeoutMs } = r.config;
  // Only STATUS heard within the last timeout: a peer that has since gone down (or whose host is
  // being rejuvenated) must not hold this replica back with what it said before. And only a view
  // this replica would enter (a cold start's may ask below a VIEW_CHANGE it sent before).
  const entered = Math.max(r.targetView, r.highestViewChangeSent);
  let there = 0;
  for (const [peer, view] of r.peerViews) {
    const heardMs = r.peerStatusAtMs.get(peer) ?? Number.NEGATIVE_INFINITY;
    if (peer !== self && view >= entered && r.nowMs - heardMs <= viewChangeTimeoutMs) there++;
  }
  if (there >= quorums.weak) return false;
  let asked = 1;
  for (const [from, byView] of r.viewChanges)
    if (from !== self && byView.size > 0 && Math.max(...byView.keys()) >= r.targetView) asked++;
  return asked >= quorums.quorum;
}

/**
 * The view to try when the one this replica is changing to did not form: the least view above
 * it that could still form, from what the others' latest VIEW_CHANGEs ask for (a replica never
 * goes back to a lower view): a quorum of replicas not already past it, its primary among them.
 * Stepping one view at a time, replicas that got ahead in a partition and those behind can
 * keep a constant gap forever once their timeouts reach the same cap.
 */
export function nextFormableView(r: ReplicaState): number {
  const { ids, self, quorums } = r.config;
  const asked = new Map<string, number>();
  for (const [from, byView] of r.viewChanges)
    if (from !== self && byView.size > 0) asked.set(from, Math.max(...byView.keys()));
  const next = r.targetView + 1;
  for (let w = next; w < next + 4 * ids.length; w++) {
    let able = 1;
    for (const [, target] of asked) if (target <= w) able++;
    const primary = r.primaryOf(w);
    const primaryAsked = asked.get(primary);
    const primaryAble = primary === self || (primaryAsked !== undefined && primaryAsked <= w);
    if (able >= quorums.quorum && primaryAble) return w;
  }
  return next;
}

function suspectsField(r: ReplicaState): { suspects?: string[] } {
  const suspects = suspectsToName(r).slice(0, MAX_SUSPECTS);
  return suspects.length > 0 ? { suspects } : {};
}

function passedOverField(r: ReplicaState, newView: number): { passedOver?: number[] } {
  const passedOver = r.viewsPassedOver.filter((w) => w < newView);
  return passedOver.length > 0 ? { passedOver } : {};
}

function viewChangeBody(r: ReplicaState, newView: number): ViewChangeBody {
  const checkpoints: SeqDigest[] = [];
  for (const cp of r.ownCheckpoints.values())
    if (cp.seq > r.stable.seq) checkpoints.push({ seq: cp.seq, digest: cp.digest });
  const prepared = [...r.preparedInfo.values()].filter((p) => p.seq > r.stable.seq);
  const prePrepared: ViewSeqDigest[] = [];
  for (const [seq, byDigest] of r.prePreparedInfo)
    if (seq > r.stable.seq)
      for (const [digest, view] of byDigest) prePrepared.push({ seq, view, digest });
  // Bodies only of batches this replica has not executed: one it executed committed, so k' + 1
  // correct replicas held it, and a replica that lacks it fetches it of any peer (`missBatch`).
  // (With every body, the rolling benchmark's VIEW_CHANGEs averaged 23 KB and its NEW_VIEWs
  // 110 KB, parsed by every replica at each rejuvenation; 9 KB and 39 KB now.)
  const batches = bodiesWithin(
    prepared.filter((p) => p.seq > r.lastExecuted),
    (digest) => r.batchesByDigest.get(digest),
    r.config.viewChangeBodyBytes ?? viewChangeBodyBudget(r.config.ids.length),
  );
  return {
    type: "VIEW_CHANGE",
    newView,
    stable: { ...r.stable },
    checkpoints,
    prepared,
    prePrepared,
    batches,
    keyEpochs: keyEpochs(r),
    ...(r.coldStart ? { coldStart: true as const } : {}),
    ...suspectsField(r),
    ...passedOverField(r, newView),
  };
}

export function onViewChange(r: ReplicaState, envelope: ReplicaEnvelope): void {
  const body = envelope.body as ViewChangeBody;
  if (body.newView <= r.view) return;
  if (body.newView > r.view + VIEW_WINDOW) {
    r.problem("view-out-of-window", envelope.from, `VIEW_CHANGE to ${body.newView}`);
    return;
  }
  const n = r.config.ids.length;
  // Bodies within the budget every correct replica keeps to (`bodiesWithin`): a Byzantine
  // replica's, with megabytes of bodies of batches it made up, would make every NEW_VIEW formed
  // with it too large to send.
  const budget = r.config.viewChangeBodyBytes ?? viewChangeBodyBudget(n);
  let bodyBytes = 0;
  for (const b of body.batches) bodyBytes += bodyBytesAtMost(b);
  if (bodyBytes > budget) {
    r.problem(
      "bad-view-change",
      envelope.from,
      `VIEW_CHANGE to ${body.newView}: bodies of ${bodyBytes} bytes, over ${budget}`,
    );
    return;
  }
  const fault = viewChangeFault(body, n);
  if (fault !== undefined) {
    r.problem("bad-view-change", envelope.from, `VIEW_CHANGE to ${body.newView}: ${fault}`);
    return;
  }
  recordViewChange(r, envelope);
  // k'+1 replicas want a newer view: at least one correct one does, join it.
  const senders = new Set<string>();
  let least = Number.POSITIVE_INFINITY;
  const above = r.mode === "view-change" ? r.targetView : r.view;
  for (const [from, byView] of r.viewChanges)
    for (const view of byView.keys())
      if (view > above) {
        senders.add(from);
        least = Math.min(least, view);
      }
  if (senders.size >= r.config.quorums.weak && r.mode !== "recovering") startViewChange(r, least);
}

function recordViewChange(r: ReplicaState, envelope: ReplicaEnvelope): void {
  const body = envelope.body as ViewChangeBody;
  let byView = r.viewChanges.get(envelope.from);
  if (byView === undefined) {
    byView = new Map();
    r.viewChanges.set(envelope.from, byView);
  }
  byView.set(body.newView, envelope);
  if (byView.size > VIEW_CHANGES_PER_PEER) byView.delete(Math.min(...byView.keys()));
  if (r.primaryOf(body.newView) === r.config.self) tryNewView(r, body.newView);
}

/** The VIEW_CHANGEs for `view`, one per replica. */
function viewChangesFor(r: ReplicaState, view: number): ReplicaEnvelope[] {
  const found: ReplicaEnvelope[] = [];
  for (const byView of r.viewChanges.values()) {
    const vc = byView.get(view);
    if (vc !== undefined) found.push(vc);
  }
  return found;
}

/** This replica's VIEW_CHANGE for the view it is changing to. */
export function ownViewChange(r: ReplicaState): ReplicaEnvelope | undefined {
  return r.viewChanges.get(r.config.self)?.get(r.targetView);
}

export function nullDigest(): string {
  return batchDigest("", []);
}

function tryNewView(r: ReplicaState, view: number): void {
  if (r.sentNewView.has(view) || view < r.view) return;
  if (r.mode === "view-change" && view !== r.targetView) return;
  // Only VIEW_CHANGEs holding every key this primary holds: then the view is fresh for any
  // replica that lost its memory before its current key, and it may vote in it.
  // And only those signed under keys that still count (a departing primary's, for one, is
  // revoked as its host's rejuvenation begins).
  const usable = viewChangesFor(r, view).filter((vc) => {
    const { keyEpochs } = vc.body as ViewChangeBody;
    if (holdsEveryKey(r, keyEpochs)) return r.ring.counts(vc.from, vc.epoch);
    sendMissingKeys(r, vc.from, keyEpochs);
    return false;
  });
  // A cold start's VIEW_CHANGEs and the others never make one view (`isColdStartSet`): the
  // kind this primary's own is of, or, for a primary that lost its memory, the kind a quorum is of.
  const marked = (vc: ReplicaEnvelope) => (vc.body as ViewChangeBody).coldStart === true;
  const own = usable.find((vc) => vc.from === r.config.self);
  const coldKind =
    own !== undefined ? marked(own) : usable.filter(marked).length >= r.config.quorums.quorum;
  const forView = usable.filter((vc) => marked(vc) === coldKind);
  // A primary that lost its memory writes no VIEW_CHANGE, but it may still form its view from
  // a quorum of others' fresh for it: that is the view in which it votes again (otherwise
  // every view it is primary of would fail while it waits, one in n).
  if (r.mayChangeView()) {
    if (!forView.some((vc) => vc.from === r.config.self)) return;
  } else if (r.mode !== "normal" || !freshForSelf(r, forView)) return;
  const envelopes = forView.sort((a, b) => (a.from < b.from ? -1 : 1));
  const decision = decideNewView(
    envelopes.map((e) => e.body as ViewChangeBody),
    r.config.quorums,
    2 * r.config.checkpointInterval,
    nullDigest(),
  );
  if (decision === undefined) return;
  r.sentNewView.add(view);
  endAmnesiaIfFresh(r, envelopes, decision.checkpoint.seq, decision.proposals);
  const message = r.broadcast({
    type: "NEW_VIEW",
    view,
    viewChanges: envelopes.map((e) => e.wire.toString("utf8")),
    checkpoint: decision.checkpoint,
    proposals: decision.proposals,
  });
  r.newViewMessage = message;
  startView(r, view, decision, envelopes);
}

export function onNewView(
  r: ReplicaState,
  from: string,
  body: Extract<ReplicaBody, { type: "NEW_VIEW" }>,
  wire: Buffer,
): void {
  // Entered already (a replica fetching its state is in it too): a copy its peers sent on, when
  // its STATUS still showed an older view, has nothing new. Only an amnesic replica looks at
  // another NEW_VIEW for its view: if it is fresh for it, where the one it entered was not (an
  // equivocating primary showed it one that was not), it re-enters with it below. It cast no
  // vote in this view, so re-entering takes back nothing it said.
  const sameView = body.view === r.view && r.mode !== "view-change";
  if (body.view < r.view) return;
  if (sameView && (!r.amnesic || r.newViewMessage?.equals(wire))) return;
  if (sameView && !freshOnItsFace(r, body.viewChanges)) {
    // Read off the VIEW_CHANGEs before any signature is checked: the view's primary could
    // re-sign its own in endless variants, each of which would pass every check.
    r.count("new-view.not-fresh-here");
    return;
  }
  // A cold start's replica before its first view voted for nothing: its VIEW_CHANGEs (marked)
  // can only ever make a view with other marked ones, none of which can form once a view of the
  // new era has executed anything (`isColdStartSet`), so it may enter a lower view than it asked for.
  if (body.view < r.highestViewChangeSent && !r.coldStart) {
    r.count("new-view.below-own-view-change");
    // Said (and summarised like a refusal): a replica that asked for a view its peers never form
    // stays out of theirs, and its console should show why.
    r.problem(
      "below-own-view-change",
      from,
      `NEW_VIEW ${body.view}: this replica asked for view ${r.highestViewChangeSent}`,
    );
    return;
  }
  if (from !== r.primaryOf(body.view)) {
    r.problem("bad-new-view", from, `NEW_VIEW ${body.view} not from its primary`);
    return;
  }
  const senders = new Set<string>();
  const viewChanges: ReplicaEnvelope[] = [];
  let leftOut = 0;
  for (const text of body.viewChanges) {
    const vc = parseEnvelope(Buffer.from(text, "utf8"));
    const wellFormed =
      vc !== undefined &&
      vc.body.type === "VIEW_CHANGE" &&
      !senders.has(vc.from) &&
      r.config.ids.includes(vc.from) &&
      vc.body.newView === body.view &&
      viewChangeFault(vc.body, r.config.ids.length) === undefined;
    const verdict = wellFormed ? r.ring.checkReplica(vc.from, vc.epoch, vc.signed, vc.sig) : "";
    if (wellFormed && verdict === "unknown-epoch") {
      // Signed under a key this replica has not learned yet (it has just started): no fault of
      // the primary's. It asks for the key (its holder, and the primary, which holds it and
      // answers with every key it holds) and takes the NEW_VIEW again once the key is in.
      queryKey(r, vc.from);
      queryKey(r, from);
      r.newViewsAwaitingKeys.set(body.view, { from, body, wire });
      for (const v of r.newViewsAwaitingKeys.keys())
        if (r.newViewsAwaitingKeys.size > 4) r.newViewsAwaitingKeys.delete(v);
      r.count("new-view.awaiting-key");
      return;
    }
    if (wellFormed && (verdict === "revoked-key" || verdict === "stale-epoch")) {
      // Signed under a key that has since stopped counting here (its host is being
      // rejuvenated, or has been): it is left out, and the rest must still decide the same.
      r.count("new-view.left-out");
      leftOut++;
      continue;
    }
    if (verdict !== "ok" || vc === undefined) {
      r.problem("bad-new-view", from, `NEW_VIEW ${body.view}: a VIEW_CHANGE does not check out`);
      return;
    }
    senders.add(vc.from);
    viewChanges.push(vc);
  }
  if (isMixedSet(viewChanges.map((e) => e.body as ViewChangeBody))) {
    r.problem(
      "bad-new-view",
      from,
      `NEW_VIEW ${body.view}: cold-start VIEW_CHANGEs mixed with others`,
    );
    if (r.mode === "view-change" && r.targetView === body.view) startViewChange(r, body.view + 1);
    return;
  }
  const decision = decideNewView(
    viewChanges.map((e) => e.body as ViewChangeBody),
    r.config.quorums,
    2 * r.config.checkpointInterval,
    nullDigest(),
  );
  const same =
    decision !== undefined &&
    decision.checkpoint.seq === body.checkpoint.seq &&
    decision.checkpoint.digest === body.checkpoint.digest &&
    decision.proposals.length === body.proposals.length &&
    decision.proposals.every(
      (p, i) => p.seq === body.proposals[i]?.seq && p.digest === body.proposals[i]?.digest,
    );
  // Validity is decided before agreement, on the messages alone, so every correct replica
  // decides alike: a batch the new view re-proposes was pre-prepared by k' + 1 senders (A2), one
  // of them correct, which took its requests from their clients or on k' + 1 words; and it names
  // only clients on the list.
  const valid =
    decision !== undefined &&
    [...decision.batches.values()].every((b) => b.requests.every((req) => fromKnownClient(r, req)));
  if (decision === undefined && leftOut > 0) {
    // Too few left to decide from, through no fault of the primary's: keys revoked since it
    // formed the view (this replica's own former key among them, when it has just restarted).
    // Others that learned of the revocation cannot decide either: on to the next view, as for
    // a bad NEW_VIEW, but without blaming the primary.
    r.count("new-view.undecidable-here");
    if (r.mode === "view-change" && r.targetView === body.view) startViewChange(r, body.view + 1);
    return;
  }
  if (!same || !valid || decision === undefined) {
    r.problem("bad-new-view", from, `NEW_VIEW ${body.view}: its choices do not follow`);
    // The primary of the view this replica is changing to is faulty: on to the next one. A
    // bad NEW_VIEW for any other view moves nothing (one Byzantine replica cannot make a
    // correct one skip views).
    if (r.mode === "view-change" && r.targetView === body.view) startViewChange(r, body.view + 1);
    return;
  }
  if (sameView) {
    if (!freshForSelf(r, viewChanges)) return;
    forgetViewAboveExecuted(r);
  }
  endAmnesiaIfFresh(r, viewChanges, body.checkpoint.seq, body.proposals);
  r.newViewMessage = wire;
  startView(r, body.view, decision, viewChanges);
}

/**
 * Remembers the view as its NEW_VIEW shows it: read off the VIEW_CHANGEs, not off what this
 * replica knew when it entered, so that every correct replica remembers the same.
 */
function rememberView(
  r: ReplicaState,
  view: number,
  viewChanges: readonly ReplicaEnvelope[],
): void {
  const bodies = viewChanges.map((vc) => vc.body as ViewChangeBody);
  const epochsOf = (i: number, of: readonly ViewChangeBody[]) =>
    of.map((b) => b.keyEpochs[i] ?? -1);
  // The (k' + 1)-th highest: an epoch at least one correct sender held. Any sender may write any
  // epoch; the highest alone would let one Byzantine replica mark correct primaries as failed.
  const vouched = (epochs: number[]) =>
    epochs.sort((a, b) => b - a)[r.config.quorums.weak - 1] ?? -1;
  const vouchedBy = (of: readonly ViewChangeBody[]) =>
    r.config.ids.map((_, i) => vouched(epochsOf(i, of)));
  // A view k' + 1 senders passed over, so a correct one among them: it asked for the view and
  // left it without entering it (no NEW_VIEW within its timeout, one that did not follow, or k' + 1
  // peers asking higher). A correct primary the network kept from one replica can be counted too:
  // that only takes it out of the candidates for a refresh.
  const passedOver: EnteredView["passedOver"] = [];
  const named = new Set(bodies.flatMap((b) => b.passedOver ?? []));
  for (const w of named) {
    const naming = bodies.filter((b) => b.passedOver?.includes(w));
    if (naming.length >= r.config.quorums.weak)
      passedOver.push({ primary: r.primaryOf(w), vouchedEpochs: vouchedBy(naming) });
  }
  r.viewsEntered.push({
    view,
    primary: r.primaryOf(view),
    minEpochs: r.config.ids.map((_, i) => Math.min(...epochsOf(i, bodies))),
    vouchedEpochs: vouchedBy(bodies),
    passedOver,
  });
  const most = VIEWS_REMEMBERED_PER_REPLICA * r.config.ids.length;
  if (r.viewsEntered.length > most) r.viewsEntered.splice(0, r.viewsEntered.length - most);
}

/** The VIEW_CHANGEs, as they say (unchecked), make the view fresh for this replica. */
function freshOnItsFace(r: ReplicaState, texts: readonly string[]): boolean {
  const viewChanges: ReplicaEnvelope[] = [];
  for (const text of texts) {
    const vc = parseEnvelope(Buffer.from(text, "utf8"));
    if (vc === undefined || vc.body.type !== "VIEW_CHANGE") return false;
    viewChanges.push(vc);
  }
  return freshForSelf(r, viewChanges);
}

/**
 * An amnesic replica re-enters its view with a second NEW_VIEW (fresh for it, where the first
 * was not: its primary equivocated). Every slot above what it executed goes, with the
 * certificates gathered there, and the first NEW_VIEW's batches are no longer reported as
 * pre-prepared in this view: commits for the first one's batch at a slot must never stand for
 * the batch the second fixes there. Peers' retransmissions and EXECUTED reports bring back what
 * the view really committed.
 */
function forgetViewAboveExecuted(r: ReplicaState): void {
  for (const seq of [...r.slots.keys()]) if (seq > r.lastExecuted) r.slots.delete(seq);
  for (const seq of [...r.awaitingSinceMs.keys()])
    if (seq > r.lastExecuted) r.awaitingSinceMs.delete(seq);
  for (const [seq, byDigest] of r.prePreparedInfo) {
    if (seq <= r.lastExecuted) continue;
    for (const [digest, view] of [...byDigest]) if (view === r.view) byDigest.delete(digest);
    if (byDigest.size === 0) r.prePreparedInfo.delete(seq);
  }
  r.count("view.re-entered");
}

function enterView(r: ReplicaState, view: number): void {
  r.view = view;
  r.targetView = view;
  if (r.mode !== "recovering") r.mode = "normal";
  r.viewChangeAttempts = 0;
  r.viewsPassedOver.length = 0;
  r.handingOff = false;
  r.newViewSentAtMs.clear();
  r.viewEnteredAtMs = r.nowMs;
  r.viewProposals.clear();
  r.missingBatches.clear();
  for (const [seq, slot] of [...r.slots])
    if (slot.view < view && !slot.committed) r.slots.delete(seq);
  for (const byView of r.viewChanges.values())
    for (const v of [...byView.keys()]) if (v <= view) byView.delete(v);
  // A new primary gets a whole timeout for every request it inherits that enough replicas hold
  // for it to propose; the others are timed once it proposes them (`request-holds.ts`).
  pruneAtNewView(r);
  for (const [d, req] of r.pending)
    if (enoughHolders(r, d, req.client)) r.pendingSinceMs.set(d, r.nowMs);
    else r.pendingSinceMs.delete(d);
  for (const d of [...r.proposedIn.keys()]) if (!r.pending.has(d)) r.proposedIn.delete(d);
  r.queued.length = 0;
  if (r.primaryOf(view) === r.config.self)
    for (const [digest, req] of r.pending) {
      if (req.ts <= r.clients.lastTs(req.client)) continue;
      if (mayPropose(r, digest, req)) {
        r.queued.push(digest);
        r.pendingSinceMs.set(digest, r.nowMs);
      } else holdBack(r, digest);
    }
  armSuspicion(r);
  relayHoldersToNewPrimary(r);
  r.out.push({ type: "view", view, primary: r.primaryOf(view) });
}

function startView(
  r: ReplicaState,
  view: number,
  decision: ReturnType<typeof decideNewView> & object,
  viewChanges: ReplicaEnvelope[],
): void {
  noteSuspects(
    r,
    viewChanges.map((vc) => (vc.body as ViewChangeBody).suspects ?? []),
  );
  enterView(r, view);
  rememberView(r, view, viewChanges);
  const { checkpoint, proposals, batches } = decision;
  const vouchersOf = () =>
    viewChanges
      .filter((vc) => {
        const b = vc.body as ViewChangeBody;
        return [b.stable, ...b.checkpoints].some(
          (c) => c.seq === checkpoint.seq && c.digest === checkpoint.digest,
        );
      })
      .map((vc) => vc.from)
      .filter((f) => f !== r.config.self);
  const coldView = isColdStartSet(viewChanges.map((vc) => vc.body as ViewChangeBody));
  if (r.coldStart || coldView) settleColdStart(r, checkpoint, vouchersOf());
  else if (checkpoint.seq > r.lastExecuted) behind(r, checkpoint, vouchersOf());
  let maxSeq = Math.max(checkpoint.seq, r.lastExecuted);
  const fixed: Array<{ seq: number; batch: BatchBody }> = [];
  for (const p of proposals) {
    maxSeq = Math.max(maxSeq, p.seq); // Executed here already, perhaps not elsewhere: take part again so the others complete it.
    const slot = slotAt(r, p.seq, view);
    slot.digest = p.digest;
    const executed = r.executedLog.get(p.seq);
    const known =
      p.digest === nullDigest()
        ? { origin: "", requests: [] }
        : (batches.get(p.digest) ??
          r.batchesByDigest.get(p.digest) ??
          (executed?.digest === p.digest ? executed : undefined));
    if (known !== undefined) {
      const batch = { digest: p.digest, origin: known.origin, requests: known.requests };
      placeBatch(r, p.seq, batch);
      fixed.push({ seq: p.seq, batch });
    } else missBatch(r, p.seq, p.digest, holdersOf(viewChanges, p));
    // A PREPARE needs the digest alone: the body is needed to execute.
    if (r.primaryOf(view) !== r.config.self && r.mayVote()) {
      slot.sentPrepare = r.broadcast({ type: "PREPARE", view, seq: p.seq, digest: p.digest });
      slot.prepares.set(r.config.self, p.digest);
    }
  }
  r.nextSeq = maxSeq + 1;
  askForBatches(r, r.missingBatches.keys());
  takeReproposed(
    r,
    fixed.map((f) => f.batch),
  );
  for (const p of proposals) checkPrepared(r, p.seq);
  propose(r);
}

/**
 * The senders of `viewChanges` that named `p` prepared or pre-prepared: those that held its body
 * when they sent them, and so are asked for it.
 */
function holdersOf(viewChanges: readonly ReplicaEnvelope[], p: SeqDigest): string[] {
  return viewChanges
    .filter((vc) => {
      const b = vc.body as ViewChangeBody;
      const names = (x: SeqDigest) => x.seq === p.seq && x.digest === p.digest;
      return b.prepared.some(names) || b.prePrepared.some(names);
    })
    .map((vc) => vc.from);
}

/** The current view's NEW_VIEW fixed `batch` at `seq`, and its body is here. */
function placeBatch(r: ReplicaState, seq: number, batch: BatchBody): void {
  const { origin, requests } = batch;
  r.viewProposals.set(seq, batch);
  const slot = slotAt(r, seq, r.view);
  slot.origin = origin;
  slot.requests = requests;
  notePrePrepared(r, seq, batch.digest, origin, requests);
  if (r.primaryOf(r.view) === r.config.self)
    slot.prePrepare = r.seal({
      type: "PRE_PREPARE",
      view: r.view,
      seq,
      digest: batch.digest,
      origin,
      requests,
    });
}

/** Requests a NEW_VIEW re-proposed need no second proposal, and are timed in the new view. */
function takeReproposed(r: ReplicaState, batches: readonly BatchBody[]): void {
  const reproposed = new Set<string>();
  for (const b of batches)
    for (const req of b.requests) {
      const d = requestDigest(req);
      reproposed.add(d);
      r.proposedIn.set(d, r.view);
      startTiming(r, d);
    }
  for (let i = r.queued.length - 1; i >= 0; i--)
    if (reproposed.has(r.queued[i] as string)) r.queued.splice(i, 1);
}

/** Bodies this replica fetched for numbers the current view's NEW_VIEW fixed (`batch-fetch.ts`). */
export function onBatch(
  r: ReplicaState,
  from: string,
  body: Extract<ReplicaBody, { type: "BATCH" }>,
): void {
  const taken = takeBatches(r, from, body);
  for (const { seq, batch } of taken) takeFixedBody(r, seq, batch);
  if (taken.length > 0) executeReady(r);
}

/**
 * The body of a batch the current view's NEW_VIEW fixed at `seq`, once it hashes to the digest
 * fixed there: from a BATCH, or from the primary's PRE_PREPARE sent again (which carries the
 * batch under its first proposer's origin). Whether it was taken.
 */
export function takeFixedBody(r: ReplicaState, seq: number, batch: BatchBody): boolean {
  const slot = r.slots.get(seq);
  if (slot === undefined || slot.view !== r.view || slot.digest !== batch.digest) return false;
  if (slot.requests !== undefined) return false;
  if (batchDigest(batch.origin, batch.requests) !== batch.digest) return false;
  r.missingBatches.delete(seq);
  placeBatch(r, seq, batch);
  takeReproposed(r, [batch]);
  checkPrepared(r, seq);
  return true;
}

/** The host is about to be shut down: a primary hands off so the next view starts at once. */
export function handOff(r: ReplicaState): void {
  if (r.mode === "normal" && r.primary === r.config.self) {
    r.handingOff = true;
    r.broadcast({ type: "HANDOFF", view: r.view });
    startViewChange(r, handOffView(r, r.view, r.config.self));
  }
}

/** The primary announces it is about to go down: follow it to the view it hands off to. */
export function onHandoff(r: ReplicaState, from: string, view: number): void {
  if (view === r.view && from === r.primary && r.mode === "normal") {
    r.count("view-change.handoff");
    startViewChange(r, handOffView(r, r.view, from));
  }
}
