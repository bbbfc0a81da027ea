/**
 * Batch bodies a new view needs and a replica lacks. A VIEW_CHANGE carries the bodies of what its
 * sender prepared only within a budget, so that no VIEW_CHANGE, nor the NEW_VIEW carrying a
 * quorum of them, is larger than a frame (with every body, two prepared writes of 1 MiB made them
 * so: such a message is never sent, and that view could not form). The new view is decided on
 * digests alone; a replica takes a body it lacks from its own store, or asks for it (FETCH_BATCH)
 * the senders whose VIEW_CHANGEs named the digest at that number, one at a time, the next after
 * each status interval. A BATCH is taken only if its body has the digest asked for, so anyone may
 * answer and nothing need be signed for it to be believed. One of the k' + 1 senders vouching
 * for a re-proposed batch (A2) is correct and keeps the body while it is above its stable
 * checkpoint (`makeStable`).
 */
import {
  type BatchBody,
  batchDigest,
  MAX_MESSAGE_BYTES,
  type ReplicaBody,
  requestBytesAtMost,
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
    let size = 256;
    for (const request of body.requests) size += requestBytesAtMost(request);
    // In order, and none past the first that does not fit: a new view's first numbers are the
    // ones it needs first.
    if (bytes + size > budgetBytes) break;
    bytes += size;
    bodies.push({ digest: p.digest, origin: body.origin, requests: body.requests });
  }
  return bodies;
}

/** A NEW_VIEW fixed `digest` at `seq` and this replica lacks its body: ask `holders`, in turn. */
export function fetchBatch(
  r: ReplicaState,
  seq: number,
  digest: string,
  holders: readonly string[],
): void {
  const others = holders.filter((h) => h !== r.config.self);
  if (others.length === 0) others.push(...r.peers());
  const entry = { digest, holders: others, asked: 0, askedAtMs: r.nowMs };
  r.missingBatches.set(seq, entry);
  r.count("batches.missing");
  ask(r, seq, entry);
}

function ask(
  r: ReplicaState,
  seq: number,
  entry: { digest: string; holders: string[]; asked: number; askedAtMs: number },
): void {
  const to = entry.holders[entry.asked % entry.holders.length] as string;
  entry.asked++;
  entry.askedAtMs = r.nowMs;
  r.count("batches.fetch-asked");
  r.send(to, { type: "FETCH_BATCH", seq, digest: entry.digest });
}

/**
 * Every status interval: drops what is no longer wanted (executed since, from peers' reports, or
 * the slot left behind by a later view or a state installed), and asks the next holder for the
 * rest.
 */
export function retryBatchFetches(r: ReplicaState): void {
  for (const [seq, entry] of [...r.missingBatches]) {
    const slot = r.slots.get(seq);
    if (seq <= r.lastExecuted || slot?.digest !== entry.digest || slot.requests !== undefined) {
      r.missingBatches.delete(seq);
      continue;
    }
    if (r.nowMs - entry.askedAtMs >= r.config.statusIntervalMs) ask(r, seq, entry);
  }
}

/** A peer asks for a body: given if held here, within the asker's allowance of fetch answers. */
export function serveBatch(
  r: ReplicaState,
  from: string,
  body: Extract<ReplicaBody, { type: "FETCH_BATCH" }>,
): void {
  const batch = r.batchesByDigest.get(body.digest);
  // Nothing to give: the asker turns to its next holder.
  if (batch === undefined) return;
  if (!r.fetchAnswers.take(from, r.nowMs)) {
    r.problem("fetch-over-allowance", from, `FETCH_BATCH ${body.seq}`);
    return;
  }
  r.send(from, {
    type: "BATCH",
    seq: body.seq,
    batch: { digest: body.digest, origin: batch.origin, requests: batch.requests },
  });
}

/**
 * A body for a number this replica is missing: the batch, if it is the one asked for, byte for
 * byte; undefined otherwise (late, never asked for, or not that batch).
 */
export function takeBatch(
  r: ReplicaState,
  from: string,
  body: Extract<ReplicaBody, { type: "BATCH" }>,
): BatchBody | undefined {
  const entry = r.missingBatches.get(body.seq);
  if (entry === undefined || entry.digest !== body.batch.digest) return undefined;
  if (batchDigest(body.batch.origin, body.batch.requests) !== body.batch.digest) {
    r.problem("bad-batch", from, `BATCH ${body.seq}: its body is not batch ${entry.digest}`);
    // From the holder last asked: the next one at once, so that a Byzantine holder costs no
    // whole status interval. Not for anyone else's, or each lie would have a correct holder send
    // the body again.
    if (from === entry.holders[(entry.asked - 1) % entry.holders.length]) ask(r, body.seq, entry);
    return undefined;
  }
  r.missingBatches.delete(body.seq);
  r.count("batches.fetched");
  return body.batch;
}
