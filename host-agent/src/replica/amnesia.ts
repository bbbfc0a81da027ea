/**
 * A replica that lost its memory (rejuvenated, or restarted after a crash) votes again only in
 * a view fresh for it, and its peers help such a view form (SAFETY.md, "A replica that lost its
 * memory"). Whether it may vote at all: `ReplicaState.mayVote` and `mayChangeView`.
 */
import type { ReplicaEnvelope, SeqDigest } from "./messages.js";
import type { ViewChangeBody } from "./new-view-decision.js";
import type { ReplicaState } from "./replica-state.js";
import { groupAndGroupBefore, startViewChange, viewLedByGroupBefore } from "./view-change.js";

export function keyEpochs(r: ReplicaState): number[] {
  return r.config.ids.map((id) => r.ring.keyOf(id)?.epoch ?? 0);
}

/** A VIEW_CHANGE's key epochs are at least those this replica holds, for every replica. */
export function holdsEveryKey(r: ReplicaState, epochs: readonly number[]): boolean {
  return r.config.ids.every((id, i) => (epochs[i] ?? -1) >= (r.ring.keyOf(id)?.epoch ?? 0));
}

/**
 * A peer says it lost its memory and waits for a view formed after its new key. If the current
 * view's NEW_VIEW does not hold that key in every VIEW_CHANGE behind it, change views once more
 * (once per key epoch and view: the peer's claim cannot make it change views again and again).
 */
export function refreshViewFor(r: ReplicaState, peer: string): void {
  const epoch = r.ring.keyOf(peer)?.epoch;
  if (epoch === undefined || viewFreshFor(r, peer)) return;
  if (r.mode !== "normal" || !r.mayChangeView()) return;
  const mark = `${epoch}@${r.view}`;
  if (r.refreshedFor.get(peer) === mark) return;
  r.refreshedFor.set(peer, mark);
  r.count("view-change.for-amnesic");
  // Every correct replica must pick the same view: one that asked for a higher view than the
  // others form refuses theirs (below its own VIEW_CHANGE) until a later view passes its own. So
  // the choice reads only what they share: the testbed's groups and the NEW_VIEWs they entered,
  // never when each learned a key or which peers' STATUS last said they were amnesic.
  // Not the peer's own group (rejuvenated with it, so amnesic too). Not a primary whose view
  // (the current one included) was not fresh for the peer although k' + 1 of its VIEW_CHANGEs,
  // so a correct one, held the peer's key: a correct primary holding the key takes no
  // VIEW_CHANGE that lacks it, and a Byzantine one whose turn kept coming back (its group is the
  // one before the peer's) would have the service change views for ever. A view formed before the
  // key existed (a hand-off's, as the peer went down) is no one's fault: its primary, of the group
  // before the peer's, leads the fresh view too, and the next group's shutdown hands nothing off.
  const i = r.config.ids.indexOf(peer);
  const failed = new Set<string>();
  for (const entered of r.viewsEntered) {
    if ((entered.minEpochs[i] ?? -1) < epoch && (entered.vouchedEpochs[i] ?? -1) >= epoch)
      failed.add(entered.primary);
    // And a primary whose view k' + 1 senders holding the key passed over: a silent one forms no
    // view to show it at fault, and would otherwise take its turn again and again.
    for (const passed of entered.passedOver)
      if ((passed.vouchedEpochs[i] ?? -1) >= epoch) failed.add(passed.primary);
  }
  const { group } = groupAndGroupBefore(r, peer);
  const usable = (id: string) => !group.includes(id) && !failed.has(id);
  // Led by the group rejuvenated before the peer's, the fresh view also outlasts the next
  // group's shutdown: led by the next group, it would be handed off again moments later.
  let target = viewLedByGroupBefore(r, r.view, peer, usable);
  const n = r.config.ids.length;
  for (let step = 1; step <= n && target === undefined; step++)
    if (usable(r.primaryOf(r.view + step))) target = r.view + step;
  startViewChange(r, target ?? r.view + 1);
}

/** Every VIEW_CHANGE behind the current view held the peer's current key (as known here). */
export function viewFreshFor(r: ReplicaState, peer: string): boolean {
  const epoch = r.ring.keyOf(peer)?.epoch;
  const i = r.config.ids.indexOf(peer);
  return epoch !== undefined && (r.viewKeyEpochs[i] ?? -1) >= epoch;
}

export function endAmnesiaIfFresh(
  r: ReplicaState,
  viewChanges: readonly ReplicaEnvelope[],
  checkpointSeq: number,
  proposals: readonly SeqDigest[],
): void {
  if (!r.amnesic || !freshForSelf(r, viewChanges)) return;
  // Every VIEW_CHANGE behind this view was written after its sender held this replica's new
  // key, so after it lost its memory; none is its own. It votes again from this view on.
  r.amnesic = false;
  r.amnesiaHorizon = Math.max(checkpointSeq, ...proposals.map((p) => p.seq));
  r.count("amnesia.ended");
}

export function freshForSelf(r: ReplicaState, viewChanges: readonly ReplicaEnvelope[]): boolean {
  const i = r.config.ids.indexOf(r.config.self);
  return viewChanges.every(
    (vc) =>
      vc.from !== r.config.self && ((vc.body as ViewChangeBody).keyEpochs[i] ?? -1) >= r.epoch,
  );
}
