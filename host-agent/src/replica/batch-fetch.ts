/**
 * Batch bodies a new view needs and a replica lacks. A VIEW_CHANGE carries the bodies of what its
 * sender prepared only within a budget, so that no VIEW_CHANGE, nor the NEW_VIEW carrying a
 * quorum of them, is larger than a frame (with every body, two prepared writes of 1 MiB made them
 * so: such a message is never sent, and that view could not form). The new view is decided on
 * digests alone; a replica takes a body it lacks from its own store, or asks for it (FETCH_BATCH)
 * the senders whose VIEW_CHANGEs named the digest at that number, one at a time, the next after
 * each status interval; what it asks of one holder goes in one request. A BATCH is taken only if its body has the digest asked for, so anyone may
 * answer and nothing need be signed for it to be believed. One of the k' + 1 senders vouching
 * for a re-proposed batch (A2) is correct and keeps the body while it is above its stable
 * checkpoint (`makeStable`).
 */
import {
  type BatchBody,
  batchDigest,
  MAX_BATCHES_FETCHED,
  MAX_MESSAGE_BYTES,
  type ReplicaBody,
  requestBytesAtMost,
  type SeqDigest,
  type ViewSeqDigest,
} from "./messages.js";
import type { ReplicaState } from "./replica-state.js";

/**
 * The bodies one VIEW_CHANGE carries by default, in bytes as `requestBytesAtMost` counts them: a
 * NEW_VIEW carries up to n VIEW_CHANGEs as text, where JSON may write each character twice
 * (`"` as `\"`), so n of them stay within half a frame, the rest left for their other fields.
 */
export function viewChangeBodyBudget(n: number): number {
  return Math.floor(MAX_MESSAGE_BYTES / (4 * Math.max(1, n)));
}

/** A body's bytes as a message could write it at most (`requestBytesAtMost`, and its fields). */
export function bodyBytesAtMost(body: { requests: BatchBody["requests"] }): number {
  let bytes = 256;
  for (const request of body.requests) bytes += requestBytesAtMost(request);
  return bytes;
}

/** The bodies a VIEW_CHANGE carries: of `prepared`, in sequence order, while they fit `budgetBytes`. */
export function bodiesWithin(
  prepared: readonly ViewSeqDigest[],
  bodyOf: (digest: string) => { origin: string; requests: BatchBody["requests"] } | undefined,
  budgetBytes: number,
): BatchBody[] {
  const bodies: BatchBody[] = [];
  let bytes = 0;
  for (const p of [...prepared].sort((a, b) => a.seq - b.seq)) {
    const body = bodyOf(p.digest);
    if (body === undefined) continue;
    const size = bodyBytesAtMost(body);
    // In order, and none past the first that does not fit: a new view's first numbers are the
    // ones it needs first.
    if (bytes + size > budgetBytes) break;
    bytes += size;
    bodies.push({ digest: p.digest, origin: body.origin, requests: body.requests });
  }
  return bodies;
}

/**
 * A NEW_VIEW fixed `digest` at `seq` and this replica lacks its body: it asks `holders` in turn
 * (`askForBatches`), then every other peer. A VIEW_CHANGE names a batch its sender executed
 * without its body, and those that named it may all be gone or silent (a primary that executed
 * it alone handed off and was reset, a Byzantine one among them) while a peer whose VIEW_CHANGE
 * came too late to be counted holds it; any peer may answer, since a body is taken only if it
 * has the digest.
 */
export function missBatch(
  r: ReplicaState,
  seq: number,
  digest: string,
  holders: readonly string[],
): void {
  const others = holders.filter((h) => h !== r.config.self);
  const named = others.length;
  for (const peer of r.peers()) if (!others.includes(peer)) others.push(peer);
  // Each replica starts at another of the named holders, so that a silent one first in the list
  // does not cost every replica a status interval.
  const asked = Math.max(0, r.config.ids.indexOf(r.config.self)) % Math.max(1, named);
  r.missingBatches.set(seq, { digest, holders: others, asked, askedAtMs: r.nowMs });
  r.count("batches.missing");
}

/**
 * Asks for the bodies at `seqs`, each of its next holder: one FETCH_BATCH per holder for all it
 * is asked for, since a holder answers a peer's requests within an allowance.
 */
export function askForBatches(r: ReplicaState, seqs: Iterable<number>): void {
  const byHolder = new Map<string, SeqDigest[]>();
  for (const seq of seqs) {
    const entry = r.missingBatches.get(seq);
    if (entry === undefined) continue;
    const to = entry.holders[entry.asked % entry.holders.length] as string;
    entry.asked++;
    entry.askedAtMs = r.nowMs;
    const wants = byHolder.get(to) ?? [];
    if (wants.length < MAX_BATCHES_FETCHED) wants.push({ seq, digest: entry.digest });
    byHolder.set(to, wants);
  }
  for (const [to, wants] of byHolder) {
    r.count("batches.fetch-asked");
    r.send(to, { type: "FETCH_BATCH", wants });
  }
}

/**
 * Every status interval: drops what is no longer wanted (executed since, from peers' reports, or
 * the slot left behind by a later view or a state installed), and asks the next holders for what
 * is still missing after an interval.
 */
export function retryBatchFetches(r: ReplicaState): void {
  const due: number[] = [];
  for (const [seq, entry] of [...r.missingBatches]) {
    const slot = r.slots.get(seq);
    if (seq <= r.lastExecuted || slot?.digest !== entry.digest || slot.requests !== undefined) {
      r.missingBatches.delete(seq);
      continue;
    }
    if (r.nowMs - entry.askedAtMs >= r.config.statusIntervalMs) due.push(seq);
  }
  askForBatches(r, due);
}

/**
 * A peer asks for bodies: those held here, within a reply's bytes (always the first held), one
 * answer of its allowance of fetch answers.
 */
export function serveBatch(
  r: ReplicaState,
  from: string,
  body: Extract<ReplicaBody, { type: "FETCH_BATCH" }>,
): void {
  const held = body.wants.filter((w) => r.batchesByDigest.has(w.digest));
  // Nothing to give: the asker turns to its next holders.
  if (held.length === 0) return;
  if (!r.fetchAnswers.take(from, r.nowMs)) {
    r.problem("fetch-over-allowance", from, `FETCH_BATCH of ${held.length}`);
    return;
  }
  const batches: Array<{ seq: number; batch: BatchBody }> = [];
  let bytes = 0;
  for (const { seq, digest } of held) {
    const { origin, requests } = r.batchesByDigest.get(digest) as BatchBody;
    bytes += 256;
    for (const request of requests) bytes += requestBytesAtMost(request);
    if (batches.length > 0 && bytes > r.config.maxReplyBytes) break;
    batches.push({ seq, batch: { digest, origin, requests } });
  }
  r.send(from, { type: "BATCH", batches });
}

/**
 * The bodies in a BATCH that this replica is missing, each the batch asked for, byte for byte;
 * others are left out (late, never asked for), and one that is not the batch its digest names is
 * refused.
 */
export function takeBatches(
  r: ReplicaState,
  from: string,
  body: Extract<ReplicaBody, { type: "BATCH" }>,
): Array<{ seq: number; batch: BatchBody }> {
  const taken: Array<{ seq: number; batch: BatchBody }> = [];
  const again: number[] = [];
  for (const { seq, batch } of body.batches) {
    const entry = r.missingBatches.get(seq);
    if (entry === undefined || entry.digest !== batch.digest) continue;
    if (batchDigest(batch.origin, batch.requests) !== batch.digest) {
      r.problem("bad-batch", from, `BATCH at ${seq}: its body is not batch ${entry.digest}`);
      // From the holder last asked: the next one at once, so that a Byzantine holder costs no
      // whole status interval. Not for anyone else's, or each lie would have a correct holder
      // send the body again.
      if (from === entry.holders[(entry.asked - 1) % entry.holders.length]) again.push(seq);
      continue;
    }
    r.missingBatches.delete(seq);
    r.count("batches.fetched");
    taken.push({ seq, batch });
  }
  askForBatches(r, again);
  return taken;
}
