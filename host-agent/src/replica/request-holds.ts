/**
 * A client that sends its requests to too few replicas (SAFETY.md, "A client that sends to too
 * few replicas"). A backup votes for a request only once its client sent it there, or on k' + 1
 * words; so a request the primary alone holds stalls its batch until a view change, and one the
 * primary never got would wait at the backups until their timers fire. What keeps such a
 * client from costing a view change per request:
 *
 * - `HOLD` (signed): a replica that may vote and holds a request from its client says so to all,
 *   at once for a suspected client's request not yet proposed, and for any request not executed
 *   half a view-change timeout after it came; again every half timeout.
 * - 2k' holders other than the primary (so k' correct ones, whose PREPAREs attest the request
 *   to the rest) are what the primary needs to propose a request it has no copy of, or a
 *   suspect's; such requests share a batch only while 2k' stored holders hold them all
 *   (`isWeak`). A backup that counts 2k' sends the primary those HOLDs as signed (`HOLDERS`),
 *   which the primary takes on their own, stored or not: what a backup counted, a correct
 *   primary counts.
 * - A backup times a request once it is proposed, or once it counted 2k' holders and sent them
 *   on: never on its arrival alone, so a request given to too few replicas starts no timer. It
 *   times a slot waiting for a request's copy from its client too (`armSuspicion`).
 * - Suspects: a VIEW_CHANGE names the clients whose request it waited for in a slot of the view
 *   it leaves (the primary proposed what they did not send here), no others; a client named by k' + 1
 *   VIEW_CHANGEs of a NEW_VIEW, one of them correct, is suspected from that view on, for
 *   `SUSPICION_TIMEOUTS` view-change timeouts the first time and twice as long each time after.
 */
import { LARGE_MESSAGE_BYTES, resendWaitMs } from "./large-resends.js";
import type { ClientRequest, ReplicaBody, ReplicaEnvelope } from "./messages.js";
import {
  holdOf,
  holdSignedBytes,
  parseEnvelope,
  requestBytesAtMost,
  requestDigest,
} from "./messages.js";
import { armSuspicion, fromKnownClient, hold, propose, release } from "./normal-case.js";
import type { ReplicaState } from "./replica-state.js";

/** At most this many HOLDs (sent or relayed) go out per status interval, oldest requests first. */
const MAX_HOLDS_PER_INTERVAL = 64;

/** Replicas other than the current primary known to hold the request from its client. */
export function holders(r: ReplicaState, digest: string, client: string): number {
  return holdWires(r, digest, client).length;
}

/**
 * The signed HOLDs of the request this replica knows, its own included, none the primary's. Only
 * those under their sender's current key: the primary checks each one it is sent under that key
 * (`onHolders`), so a backup counting one its sender has since replaced (rejuvenated) would time
 * a request no correct primary can propose, and blame it.
 */
function holdWires(r: ReplicaState, digest: string, client: string): Buffer[] {
  const primary = r.primaryOf(r.view);
  const wires: Buffer[] = [];
  for (const [from, held] of r.holds.get(client) ?? [])
    if (
      held.digest === digest &&
      from !== primary &&
      from !== r.config.self &&
      r.ring.checkEpoch(from, held.epoch) === "ok"
    )
      wires.push(held.wire);
  const own = r.holdSent.get(digest);
  if (r.config.self !== primary && own !== undefined) wires.push(own);
  return wires;
}

/** 2k' holders besides the primary: k' of them correct, whose PREPAREs attest the request. */
export function enoughHolders(r: ReplicaState, digest: string, client: string): boolean {
  return holders(r, digest, client) >= 2 * r.config.quorums.kPrime;
}

/**
 * Proposed on the word of holders rather than on the primary's own copy from its client: such
 * requests share a batch only while 2k' stored holders hold them all (`propose`), so that k'
 * correct holders hold every request of the batch (the others' clients sent them to every
 * replica) and can PREPARE it.
 */
export function isWeak(r: ReplicaState, digest: string, request: ClientRequest): boolean {
  return r.suspects.has(request.client) || !r.fromClient.has(digest);
}

/** Whether the primary may propose this request now. */
export function mayPropose(r: ReplicaState, digest: string, request: ClientRequest): boolean {
  return !isWeak(r, digest, request) || enoughHolders(r, digest, request.client);
}

/** The request's timer starts now, unless it runs already. */
export function startTiming(r: ReplicaState, digest: string): void {
  if (!r.pending.has(digest) || r.pendingSinceMs.has(digest)) return;
  r.pendingSinceMs.set(digest, r.nowMs);
  if (r.progressDeadlineMs === undefined && r.mode === "normal") armSuspicion(r);
}

/**
 * One request per client held and not proposed in this view, its newest: a correct client sends
 * the next only once the last was executed (or given up), so older ones are junk that would be
 * kept, and announced, forever. Returns whether `digest` is the one kept.
 */
export function keepNewestUnproposed(
  r: ReplicaState,
  digest: string,
  request: ClientRequest,
): boolean {
  const prior = r.newestUnproposed.get(request.client);
  if (prior !== undefined && prior !== digest && r.proposedIn.get(prior) !== r.view) {
    const older = r.pending.get(prior);
    if (older !== undefined && older.ts > request.ts) {
      release(r, digest);
      return false;
    }
    if (older !== undefined) {
      release(r, prior);
      r.count("requests.superseded");
    }
  }
  r.newestUnproposed.set(request.client, digest);
  return true;
}

/**
 * Entering a view: requests executed since (a later one of their client's was) are let go, and
 * of each client's others only the newest is kept. Requests a Byzantine primary of the view
 * before showed one backup each, and a faulty client gave it, would otherwise stay there, and
 * be announced, for the rest of its life, ahead of a correct client's.
 */
export function pruneAtNewView(r: ReplicaState): void {
  const newest = new Map<string, { digest: string; ts: number }>();
  for (const [digest, request] of [...r.pending]) {
    if (request.ts <= r.clients.lastTs(request.client)) {
      release(r, digest);
      continue;
    }
    const kept = newest.get(request.client);
    if (kept === undefined || kept.ts < request.ts) {
      if (kept !== undefined) release(r, kept.digest);
      newest.set(request.client, { digest, ts: request.ts });
    } else release(r, digest);
  }
  r.newestUnproposed.clear();
  for (const [client, { digest }] of newest) r.newestUnproposed.set(client, digest);
}

/** The replicas other than the primary whose newest HOLD this replica stored is of the request. */
export function storedHolders(r: ReplicaState, digest: string, client: string): Set<string> {
  const primary = r.primaryOf(r.view);
  const found = new Set<string>();
  for (const [from, held] of r.holds.get(client) ?? [])
    if (held.digest === digest && from !== primary && r.ring.checkEpoch(from, held.epoch) === "ok")
      found.add(from);
  return found;
}

/** The primary keeps a suspect's request back, untimed, until enough replicas hold it. */
export function holdBack(r: ReplicaState, digest: string): void {
  r.pendingSinceMs.delete(digest);
  r.count("requests.held-back");
}

export function sendHold(r: ReplicaState, digest: string, request: ClientRequest): void {
  if (!r.mayVote()) return; // a holder must be able to PREPARE what it holds
  r.holdSentAtMs.set(digest, r.nowMs);
  r.count("holds.sent");
  r.holdSent.set(digest, r.broadcast(holdOf(request)));
}

/** The HOLDs counted for a request go to the primary with their signatures, in one message. */
function relayHolds(r: ReplicaState, digest: string, request: ClientRequest): void {
  const primary = r.primaryOf(r.view);
  if (primary === r.config.self || r.mode !== "normal") return;
  // Proposed in this view: the primary has it, and the request is timed already.
  if (r.proposedIn.get(digest) === r.view) return;
  const lastMs = r.holdsRelayedAtMs.get(digest);
  // It carries the request: a large one's goes again ever more rarely (`large-resends.ts`).
  // Large by its characters, at least a byte each (`requestBytesAtMost` counts six).
  const times = r.holdersResends.get(digest) ?? 0;
  const sizeBytes = (requestBytesAtMost(request) - 256) / 6;
  const waitMs = resendWaitMs(r.config.viewChangeTimeoutMs / 2, sizeBytes, times);
  if (lastMs !== undefined && r.nowMs - lastMs < waitMs) return;
  if (lastMs !== undefined && sizeBytes >= LARGE_MESSAGE_BYTES)
    r.holdersResends.set(digest, times + 1);
  r.holdsRelayedAtMs.set(digest, r.nowMs);
  const holds: Array<{ from: string; epoch: number; sig: string }> = [];
  for (const wire of holdWires(r, digest, request.client)) {
    const hold = parseEnvelope(wire);
    if (hold !== undefined) holds.push({ from: hold.from, epoch: hold.epoch, sig: hold.sig });
  }
  r.send(primary, { type: "HOLDERS", request, holds });
  r.count("holds.relayed");
}

/**
 * Entering a view: the new primary gets the HOLDERS of every request that enough replicas hold
 * at once, with the spacing of large ones started over. Spaced out per request across views, a
 * correct new primary without a copy could wait up to 32 timeouts for a large one while the
 * backups, timing it from the view's start, suspected it after one.
 */
export function relayHoldersToNewPrimary(r: ReplicaState): void {
  r.holdsRelayedAtMs.clear();
  r.holdersResends.clear();
  let sent = 0;
  for (const [digest, request] of r.pending) {
    if (sent >= MAX_HOLDS_PER_INTERVAL) return;
    if (!r.fromClient.has(digest) || !enoughHolders(r, digest, request.client)) continue;
    relayHolds(r, digest, request);
    sent++;
  }
}

/**
 * Every status interval, for each request held and not executed: its HOLD (at once for a
 * suspect's not proposed yet, after half a timeout for any other), again each half timeout;
 * and the HOLDs counted for it, to the primary, once they are enough. Requests executed since
 * (a later one of their client's was) are let go.
 */
export function sendDueHolds(r: ReplicaState): void {
  if (r.config.self === r.primaryOf(r.view)) return;
  const halfTimeoutMs = r.config.viewChangeTimeoutMs / 2;
  let sent = 0;
  for (const [digest, receivedMs] of [...r.receivedAtMs]) {
    if (sent >= MAX_HOLDS_PER_INTERVAL) return;
    const request = r.pending.get(digest);
    if (request === undefined || !r.fromClient.has(digest)) continue;
    if (request.ts <= r.clients.lastTs(request.client)) {
      release(r, digest);
      continue;
    }
    const suspectUnproposed = r.suspects.has(request.client) && r.proposedIn.get(digest) !== r.view;
    if (!suspectUnproposed && r.nowMs - receivedMs < halfTimeoutMs) continue;
    const lastMs = r.holdSentAtMs.get(digest);
    if (lastMs !== undefined && r.nowMs - lastMs < halfTimeoutMs) continue;
    sendHold(r, digest, request);
    afterHolders(r, digest, request.client);
    sent++;
  }
}

export function onHold(
  r: ReplicaState,
  from: string,
  hold: Extract<ReplicaBody, { type: "HOLD" }>,
  envelope: ReplicaEnvelope,
): void {
  const { client, ts, digest } = hold;
  if (!r.ring.hasClient(client)) {
    r.problem("unknown-client", client, "a HOLD of a request from a client not on the list");
    return;
  }
  if (ts <= r.clients.lastTs(client)) return;
  // Counted only as the primary will check it in a HOLDERS: signed over its canonical body. One
  // signed over other bytes of the same request would count here and not there, and this
  // replica, timing the request on 2k' holders, would blame a correct primary.
  if (!holdSignedBytes(hold)(from, envelope.epoch).equals(envelope.signed)) {
    r.problem("bad-holders", from, "a HOLD not signed over its canonical body");
    return;
  }
  const { wire } = envelope;
  let byFrom = r.holds.get(client);
  if (byFrom === undefined) {
    byFrom = new Map();
    r.holds.set(client, byFrom);
  }
  // The newest each sender holds, one per client and sender: bounded, whatever it sends. A
  // Byzantine sender may displace its own HOLD here and not elsewhere; the primary does not
  // depend on what it stored (`onHolders`).
  const prior = byFrom.get(from);
  if (prior !== undefined && prior.ts > ts) return;
  byFrom.set(from, { ts, digest, epoch: envelope.epoch, wire });
  r.count("holds.received");
  afterHolders(r, digest, client);
}

/**
 * At the primary: HOLDs a backup counted. Each must check under its sender's current key, be
 * for the request carried, and come from a distinct replica other than this one; 2k' such are
 * what `enoughHolders` asks for, whatever this replica stored of them.
 */
export function onHolders(
  r: ReplicaState,
  from: string,
  body: Extract<ReplicaBody, { type: "HOLDERS" }>,
): void {
  if (!r.isPrimary) return;
  // A correct backup sends at most one HOLD per replica other than the primary; a longer list
  // only asks for signature checks, and none is checked past the 2k' needed.
  if (body.holds.length > r.config.ids.length - 1) {
    r.problem(
      "bad-holders",
      from,
      `HOLDERS: ${body.holds.length} HOLDs, more than there are backups`,
    );
    return;
  }
  const { request } = body;
  if (!fromKnownClient(r, request) || request.ts <= r.clients.lastTs(request.client)) return;
  // Proposed or queued already: nothing to check (hashing a request of 1 MiB, 2k' signatures).
  const digest = requestDigest(request);
  if (r.proposedIn.get(digest) === r.view || r.queued.includes(digest)) return;
  const signedBytes = holdSignedBytes(holdOf(request));
  const senders = new Set<string>();
  for (const hold of body.holds) {
    if (senders.size >= 2 * r.config.quorums.kPrime) break;
    if (!r.config.ids.includes(hold.from) || hold.from === r.config.self) continue;
    if (senders.has(hold.from)) continue;
    const bytes = signedBytes(hold.from, hold.epoch);
    if (r.ring.checkReplica(hold.from, hold.epoch, bytes, hold.sig) !== "ok") continue;
    senders.add(hold.from);
  }
  if (senders.size < 2 * r.config.quorums.kPrime) return;
  r.count("holders.received");
  proposeHeld(r, digest, request);
}

/**
 * More replicas hold the request. A backup holding it joins them once they and it make 2k';
 * with 2k' it sends their HOLDs to the primary, with the request, and times the request. The
 * primary proposes it: on its own copy here, on a backup's HOLDERS otherwise.
 */
export function afterHolders(r: ReplicaState, digest: string, client: string): void {
  const request = r.pending.get(digest);
  if (request === undefined || request.client !== client) return;
  if (r.isPrimary) {
    if (enoughHolders(r, digest, client)) proposeHeld(r, digest, request);
    return;
  }
  if (!r.fromClient.has(digest)) return;
  if (!r.holdSent.has(digest)) {
    // Others say they hold it, and with this one they are enough: it says so too, now.
    if (holders(r, digest, request.client) + 1 < 2 * r.config.quorums.kPrime) return;
    sendHold(r, digest, request);
    if (!r.holdSent.has(digest)) return;
  }
  if (!enoughHolders(r, digest, request.client)) return;
  relayHolds(r, digest, request);
  startTiming(r, digest);
}

function proposeHeld(r: ReplicaState, digest: string, request: ClientRequest): void {
  if (!r.isPrimary || r.handingOff || r.amnesic) return;
  if (r.proposedIn.get(digest) === r.view || r.queued.includes(digest)) return;
  if (!r.pending.has(digest)) {
    // No copy of its own (its client sent it to backups only): k' correct replicas hold it.
    hold(r, digest, request);
    if (!keepNewestUnproposed(r, digest, request)) return;
    r.count("requests.from-holds");
  }
  r.queued.push(digest);
  startTiming(r, digest);
  propose(r);
}

/**
 * The clients a VIEW_CHANGE names: those whose request it awaited in a slot of this view for half
 * a timeout (the primary proposed what they did not send here). Fresh evidence only, not the
 * clients it suspects already: suspicions are noted at different times (a replica that restarted
 * notes one later), and naming them would let one that has not lapsed yet, with one Byzantine
 * replica, renew at the others a suspicion that lapsed there. A suspect's requests stall no slot
 * (the primary keeps them back), so a suspicion is never renewed by its own workings either.
 */
export function suspectsToName(r: ReplicaState): string[] {
  const named = new Set<string>();
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

/**
 * A first suspicion lasts this many view-change timeouts, each later one of the same client twice
 * as long as the one before (up to 2^MAX_SUSPICION_DOUBLINGS times). A faulty client then costs
 * one stalled batch and view change per lapse, ever rarer; a correct client that Byzantine
 * primaries got named (each at the price of its view) goes back to the direct path.
 */
export const SUSPICION_TIMEOUTS = 32;
const MAX_SUSPICION_DOUBLINGS = 10;

/** Entering a view: a client named by k' + 1 of its VIEW_CHANGEs is suspected from now on. */
export function noteSuspects(r: ReplicaState, named: ReadonlyArray<readonly string[]>): void {
  const counts = new Map<string, number>();
  for (const list of named) for (const c of new Set(list)) counts.set(c, (counts.get(c) ?? 0) + 1);
  for (const [client, count] of counts) {
    if (count < r.config.quorums.kPrime + 1 || r.suspects.has(client)) continue;
    if (!r.ring.hasClient(client)) continue;
    const times = (r.timesSuspected.get(client) ?? 0) + 1;
    r.timesSuspected.set(client, times);
    r.suspects.add(client);
    r.suspectedUntilMs.set(
      client,
      r.nowMs +
        r.config.viewChangeTimeoutMs *
          (r.config.suspicionTimeouts ?? SUSPICION_TIMEOUTS) *
          2 ** Math.min(times - 1, MAX_SUSPICION_DOUBLINGS),
    );
    r.count("clients.suspected");
  }
}

/** Suspicions whose time is up lapse: the client's requests take the direct path again. */
export function expireSuspicions(r: ReplicaState): void {
  for (const [client, untilMs] of [...r.suspectedUntilMs])
    if (r.nowMs >= untilMs) {
      r.suspectedUntilMs.delete(client);
      r.suspects.delete(client);
      r.count("clients.suspicion-lapsed");
    }
}
