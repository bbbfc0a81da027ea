/**
 * The new primary's decision procedure (Castro's PBFT without forwarded
 * certificates, with hybrid quorums): from the VIEW_CHANGE messages of at
 * least a quorum of replicas, choose the checkpoint the new view starts
 * from and, for every sequence number above it, the batch that may already
 * have committed somewhere or the null batch. Pure: backups run the same
 * procedure on the messages the new primary forwards and must agree.
 *
 * Only each sender's own signed statement is needed, never a certificate of
 * other replicas' signatures, so a replica that has since changed its key
 * epoch invalidates nothing.
 */
import { type BatchBody, batchDigest, type ReplicaBody, type SeqDigest } from "./messages.js";
import type { Quorums } from "./quorums.js";

export type ViewChangeBody = Extract<ReplicaBody, { type: "VIEW_CHANGE" }>;

export interface NewViewDecision {
  checkpoint: SeqDigest;
  proposals: SeqDigest[];
  /**
   * The requests of the non-null proposals whose bodies the VIEW_CHANGEs carried, by digest. The
   * decision is on digests alone; a replica takes other bodies from its own store or fetches them
   * (`batch-fetch.ts`). One of the k' + 1 senders that vouched for a batch (A2) is correct and
   * keeps its body while it is above the stable checkpoint.
   */
  batches: Map<string, BatchBody>;
}

/**
 * Why a VIEW_CHANGE cannot be taken into account, or undefined if it can: one entry per
 * prepared sequence number, above its stable checkpoint, from a view before the new one; every
 * body it carries the one its digest names, byte for byte (a body is what a new view would
 * execute, and a digest is what a quorum agreed on); and a key epoch for each of the n replicas.
 */
export function viewChangeFault(body: ViewChangeBody, n: number): string | undefined {
  if (body.keyEpochs.length !== n) return `${body.keyEpochs.length} key epochs for ${n} replicas`;
  const seqs = new Set<number>();
  for (const p of body.prepared) {
    if (seqs.has(p.seq)) return `seq ${p.seq} prepared twice`;
    if (p.seq <= body.stable.seq) return `seq ${p.seq} prepared below its stable checkpoint`;
    if (p.view >= body.newView) return `seq ${p.seq} prepared in view ${p.view}, not before`;
    seqs.add(p.seq);
  }
  const wrong = body.batches.find((b) => batchDigest(b.origin, b.requests) !== b.digest);
  return wrong === undefined ? undefined : `a body that is not batch ${wrong.digest.slice(0, 12)}`;
}

/**
 * A cold start's view change: every VIEW_CHANGE is from a replica in no view since it was
 * restarted (marked `coldStart`), its checkpoints what its disk holds. A view is formed either
 * from such messages only or from none: once any correct replica has executed a batch after a
 * cold start, a quorum of replicas has entered a view and marks no VIEW_CHANGE again, and the
 * others (n - q correct ones plus k' compromised) are fewer than a quorum. So a view decided from
 * marked messages only comes before anything was executed in the new era, and every replica
 * entering it takes its checkpoint as its state (`cold-start.ts`); a mixed set is refused.
 */
export function isColdStartSet(viewChanges: readonly ViewChangeBody[]): boolean {
  return viewChanges.length > 0 && viewChanges.every((vc) => vc.coldStart === true);
}

export function isMixedSet(viewChanges: readonly ViewChangeBody[]): boolean {
  const marked = viewChanges.filter((vc) => vc.coldStart === true).length;
  return marked > 0 && marked < viewChanges.length;
}

/** The decision, or undefined when these messages do not decide yet (wait for more). */
export function decideNewView(
  viewChanges: readonly ViewChangeBody[],
  quorums: Quorums,
  logWindow: number,
  nullDigest: string,
): NewViewDecision | undefined {
  const { quorum, weak } = quorums;
  if (viewChanges.length < quorum) return undefined;

  // The checkpoint: the highest (h, d) that a quorum is not beyond and that
  // k'+1 senders (so at least one correct replica) hold; k'+k+1 in a cold start (what a disk
  // holds after a fail-safe: up to k' compromised hosts and k being rejuvenated may have written).
  const cold = isColdStartSet(viewChanges);
  const holders = cold ? quorums.kPrime + quorums.k + 1 : weak;
  const reports = new Map<string, { seq: number; digest: string; count: number }>();
  for (const vc of viewChanges) {
    const seen = new Set<string>();
    for (const c of [vc.stable, ...vc.checkpoints]) {
      const key = `${c.seq}:${c.digest}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const r = reports.get(key) ?? { seq: c.seq, digest: c.digest, count: 0 };
      r.count++;
      reports.set(key, r);
    }
  }
  let checkpoint: SeqDigest | undefined;
  for (const r of reports.values()) {
    if (r.count < holders) continue;
    // A quorum not beyond it, so that what it prepared above is known; a cold start's senders
    // prepared nothing since they restarted, and up to k' + k of their "stable" ones are lies.
    if (!cold && viewChanges.filter((vc) => vc.stable.seq <= r.seq).length < quorum) continue;
    if (checkpoint === undefined || r.seq > checkpoint.seq)
      checkpoint = { seq: r.seq, digest: r.digest };
  }
  if (checkpoint === undefined) return undefined;
  const h = checkpoint.seq;

  if (cold) return { checkpoint, proposals: [], batches: new Map() };
  let maxSeq = h;
  for (const vc of viewChanges)
    for (const p of vc.prepared) if (p.seq > maxSeq && p.seq <= h + logWindow) maxSeq = p.seq;

  const batches = new Map<string, BatchBody>();
  for (const vc of viewChanges) for (const b of vc.batches) batches.set(b.digest, b);

  const proposals: SeqDigest[] = [];
  for (let seq = h + 1; seq <= maxSeq; seq++) {
    const preparedAt = viewChanges.map((vc) => vc.prepared.find((p) => p.seq === seq));
    const below = viewChanges.map((vc) => vc.stable.seq < seq);
    let chosen: { view: number; digest: string } | undefined;
    for (const candidate of preparedAt) {
      if (candidate === undefined) continue;
      // A1: a quorum did not prepare anything that contradicts the candidate.
      let consistent = 0;
      for (let i = 0; i < viewChanges.length; i++) {
        const p = preparedAt[i];
        if (!below[i]) continue;
        if (
          p === undefined ||
          p.view < candidate.view ||
          (p.view === candidate.view && p.digest === candidate.digest)
        )
          consistent++;
      }
      if (consistent < quorum) continue;
      // A2: k'+1 senders saw it pre-prepared in that view or later.
      const vouched = viewChanges.filter((vc) =>
        vc.prePrepared.some(
          (q) => q.seq === seq && q.digest === candidate.digest && q.view >= candidate.view,
        ),
      ).length;
      if (vouched < weak) continue;
      if (chosen === undefined || candidate.view > chosen.view) chosen = candidate;
    }
    if (chosen !== undefined) {
      proposals.push({ seq, digest: chosen.digest });
      continue;
    }
    const nothingPrepared = preparedAt.filter((p, i) => below[i] && p === undefined).length;
    if (nothingPrepared >= quorum) proposals.push({ seq, digest: nullDigest });
    else return undefined;
  }
  const used = new Map<string, BatchBody>();
  for (const p of proposals) {
    const b = batches.get(p.digest);
    if (b !== undefined) used.set(p.digest, b);
  }
  return { checkpoint, proposals, batches: used };
}
