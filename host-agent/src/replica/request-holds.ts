/**
 * A client that sends its requests to too few replicas (SAFETY.md, "A client that sends to too
 * few replicas"). A backup votes for a request only once its client sent it there, or on k' + 1
 * words; so a request the primary alone holds stalls its batch until a view change, and one the
 * primary never got would wait at the backups until their timers fire. What keeps such a
 * client from costing a view change per request:
 *
 * - `HOLD` (signed): a backup that holds a request from its client says so to all, at once for
 *   a suspected client, after half a view-change timeout for any request still not proposed.
 * - 2k' holders other than the primary (so k' correct ones, whose PREPAREs attest the request
 *   to the rest) are what the primary needs to propose a request it has no copy of, or a
 *   suspect's; a backup that counts 2k' relays the HOLDs it counted to the primary, so a correct
 *   primary counts them too, and only then times the request.
 * - A backup times a request once it is proposed, or once it counted 2k' holders: never on its
 *   arrival alone, so a request given to too few replicas starts no timer anywhere.
 * - Suspects: a VIEW_CHANGE names the clients whose request it waited for in a slot of the view
 *   it leaves (the primary proposed what they did not send here); a client named by k' + 1
 *   VIEW_CHANGEs of a NEW_VIEW, one of them correct, is suspected from that view on.
 */
import type { ClientRequest } from "./messages.js";
import { requestDigest } from "./messages.js";
import { armSuspicion, fromKnownClient, hold, propose, release } from "./normal-case.js";
import type { ReplicaState } from "./replica-state.js";

/** At most this many HOLDs (sent or relayed) go out per status interval, oldest requests first. */
const MAX_HOLDS_PER_INTERVAL = 64;

/** Replicas other than the current primary known to hold the request from its client. */
export function holders(r: ReplicaState, digest: string, client: string): number {
  const primary = r.primaryOf(r.view);
  let n = 0;
  for (const [from, held] of r.holds.get(client) ?? [])
    if (held.digest === digest && from !== primary) n++;
  if (r.config.self !== primary && r.pending.has(digest) && r.fromClient.has(digest)) n++;
  return n;
}

/** 2k' holders besides the primary: k' of them correct, whose PREPAREs attest the request. */
export function enoughHolders(r: ReplicaState, digest: string, client: string): boolean {
  return holders(r, digest, client) >= 2 * r.config.quorums.kPrime;
}

/** Whether the primary may propose this request now. */
export function mayPropose(r: ReplicaState, digest: string, request: ClientRequest): boolean {
  if (!r.suspects.has(request.client) && r.fromClient.has(digest)) return true;
  return enoughHolders(r, digest, request.client);
}

/** The request's timer starts now, unless it runs already. */
export function startTiming(r: ReplicaState, digest: string): void {
  if (!r.pending.has(digest) || r.pendingSinceMs.has(digest)) return;
  r.pendingSinceMs.set(digest, r.nowMs);
  if (r.progressDeadlineMs === undefined && r.mode === "normal") armSuspicion(r);
}

/** The primary keeps one request per suspected client back, until enough replicas hold it. */
export function holdBack(r: ReplicaState, digest: string, request: ClientRequest): void {
  const prior = r.heldBack.get(request.client);
  if (prior !== undefined && prior !== digest) {
    const older = r.pending.get(prior);
    if (older !== undefined && older.ts > request.ts) {
      release(r, digest);
      return;
    }
    release(r, prior);
  }
  r.heldBack.set(request.client, digest);
  r.pendingSinceMs.delete(digest);
  r.count("requests.held-back");
}

export function sendHold(r: ReplicaState, digest: string, request: ClientRequest): void {
  r.holdSentAtMs.set(digest, r.nowMs);
  r.count("holds.sent");
  r.broadcast({ type: "HOLD", request });
}

/** The HOLDs counted for a request go to the primary as they were signed. */
function relayHolds(r: ReplicaState, digest: string, client: string): void {
  const primary = r.primaryOf(r.view);
  if (primary === r.config.self || r.mode !== "normal") return;
  const lastMs = r.holdsRelayedAtMs.get(digest);
  if (lastMs !== undefined && r.nowMs - lastMs < r.config.viewChangeTimeoutMs / 2) return;
  r.holdsRelayedAtMs.set(digest, r.nowMs);
  for (const [from, held] of r.holds.get(client) ?? [])
    if (held.digest === digest && from !== primary)
      r.out.push({ type: "send", to: primary, message: held.wire });
  r.count("holds.relayed");
}

/**
 * Every status interval, for each request held and not proposed in this view: its HOLD (at
 * once for a suspect's, after half a timeout for others), again each half timeout; and the
 * HOLDs counted for it, to the primary, while enough replicas hold it.
 */
export function sendDueHolds(r: ReplicaState): void {
  if (r.config.self === r.primaryOf(r.view)) return;
  const halfTimeoutMs = r.config.viewChangeTimeoutMs / 2;
  let sent = 0;
  for (const [digest, receivedMs] of r.receivedAtMs) {
    if (sent >= MAX_HOLDS_PER_INTERVAL) return;
    const request = r.pending.get(digest);
    if (request === undefined || !r.fromClient.has(digest)) continue;
    if (r.proposedIn.get(digest) === r.view) continue;
    if (!r.suspects.has(request.client) && r.nowMs - receivedMs < halfTimeoutMs) continue;
    const lastMs = r.holdSentAtMs.get(digest);
    if (lastMs !== undefined && r.nowMs - lastMs < halfTimeoutMs) continue;
    sendHold(r, digest, request);
    if (enoughHolders(r, digest, request.client)) relayHolds(r, digest, request.client);
    sent++;
  }
}

export function onHold(r: ReplicaState, from: string, request: ClientRequest, wire: Buffer): void {
  if (!fromKnownClient(r, request)) return;
  if (request.ts <= r.clients.lastTs(request.client)) return;
  const digest = requestDigest(request);
  let byFrom = r.holds.get(request.client);
  if (byFrom === undefined) {
    byFrom = new Map();
    r.holds.set(request.client, byFrom);
  }
  // The newest each sender holds, one per client and sender: bounded, whatever it sends.
  const prior = byFrom.get(from);
  if (prior !== undefined && prior.ts > request.ts) return;
  byFrom.set(from, { ts: request.ts, digest, request, wire });
  r.count("holds.received");
  afterHolders(r, digest, request);
}

/**
 * More replicas hold the request. With 2k': a backup relays their HOLDs to the primary and
 * times the request; the primary proposes it.
 */
export function afterHolders(r: ReplicaState, digest: string, request: ClientRequest): void {
  if (!enoughHolders(r, digest, request.client)) return;
  if (!r.isPrimary) {
    if (r.proposedIn.get(digest) !== r.view) relayHolds(r, digest, request.client);
    startTiming(r, digest);
    return;
  }
  if (r.handingOff || r.amnesic) return;
  if (r.proposedIn.get(digest) === r.view || r.queued.includes(digest)) return;
  if (!r.pending.has(digest)) {
    // No copy of its own (its client sent it to backups only): k' correct replicas hold it.
    hold(r, digest, request);
    r.count("requests.from-holds");
  }
  if (r.heldBack.get(request.client) === digest) r.heldBack.delete(request.client);
  r.queued.push(digest);
  startTiming(r, digest);
  propose(r);
}

/**
 * The clients a VIEW_CHANGE names: those suspected already, and those whose request it awaited
 * in a slot of this view for half a timeout: the primary proposed what they did not send here.
 */
export function suspectsToName(r: ReplicaState): string[] {
  const named = new Set(r.suspects);
  const halfTimeoutMs = r.config.viewChangeTimeoutMs / 2;
  for (const slot of r.slots.values()) {
    if (slot.awaiting === undefined || slot.view !== r.view || slot.requests === undefined)
      continue;
    if (r.nowMs - slot.sinceMs < halfTimeoutMs) continue;
    for (const req of slot.requests)
      if (slot.awaiting.has(requestDigest(req))) named.add(req.client);
  }
  return [...named].filter((c) => r.ring.hasClient(c)).sort();
}

/** Entering a view: a client named by k' + 1 of its VIEW_CHANGEs is suspected from now on. */
export function noteSuspects(r: ReplicaState, named: ReadonlyArray<readonly string[]>): void {
  const counts = new Map<string, number>();
  for (const list of named) for (const c of new Set(list)) counts.set(c, (counts.get(c) ?? 0) + 1);
  for (const [client, count] of counts) {
    if (count < r.config.quorums.kPrime + 1 || r.suspects.has(client)) continue;
    if (!r.ring.hasClient(client)) continue;
    r.suspects.add(client);
    r.count("clients.suspected");
  }
}
