/**
 * The properties a simulated run must keep, checked as it goes:
 *  - agreement: no two correct replicas execute different batches at the same
 *    sequence number, nor compute different checkpoint digests;
 *  - linearizability: the completed client operations are explained by one
 *    order that respects real time. The order the correct replicas executed
 *    in is the witness; every completed operation must be in it, return what
 *    a plain key-value model returns at its place in it, and come after every
 *    operation that completed before it was invoked. A read answered without
 *    ordering takes its place right after a batch: the first, from the one
 *    whose state its answers agreed on, that comes after everything that
 *    completed before it was invoked and whose state gives its result.
 */
import { compareKeys } from "../kv/key-order.js";
import { type KvOperation, type KvResult, scanAnswer } from "../kv/kv-operation.js";
import { canonicalJson } from "../replica/canonical.js";
import type { ClientRequest } from "../replica/messages.js";

export interface CompletedOperation {
  client: string;
  ts: number;
  op: KvOperation;
  result: KvResult;
  invokedMs: number;
  completedMs: number;
  /** An unordered read: the sequence number of the batch whose state its answers agreed on. */
  readAtSeq?: number;
}

/** What a correct replica's answer to an unordered read said: `result` in every state from `since` to `seq`. */
interface ReadClaim {
  era: number;
  since: number;
  seq: number;
  result: KvResult;
}

export class HistoryChecker {
  /** seq -> the batch the first correct replica executed there. */
  private readonly outcomes = new Map<number, { outcome: string; by: string }>();
  private readonly executed = new Map<
    number,
    { digest: string; requests: readonly ClientRequest[]; by: string }
  >();
  private readonly checkpoints = new Map<number, { digest: string; by: string }>();
  private readonly completed: CompletedOperation[] = [];
  readonly violations: string[] = [];
  /** What the era before a cold start executed and checkpointed, until the replicas agree where to start. */
  private before:
    | {
        executed: Map<number, { digest: string; requests: readonly ClientRequest[]; by: string }>;
        outcomes: Map<number, { outcome: string; by: string }>;
        checkpoints: Map<number, { digest: string; by: string }>;
      }
    | undefined;
  /** The checkpoint the last cold start started from. */
  private coldStartFrom: { seq: number; digest: string; by: string } | undefined;
  /**
   * Every checkpoint a correct replica took as its cold-start state in this era, by sequence
   * number. A Byzantine primary may show two NEW_VIEWs for one view, and correct replicas then
   * settle on different genuine checkpoints: the era starts from the one its first execution
   * follows (`startAtFirstExecution`).
   */
  private readonly coldStartCandidates = new Map<
    number,
    { seq: number; digest: string; by: string }
  >();
  /** Whether a correct replica executed anything since the last cold start began. */
  private executedThisEra = false;
  /** Requests executed only after that checkpoint, before the cold start: lost with it. */
  private readonly lost = new Set<string>();
  lostCount = 0;
  /** Cold starts begun: sequence numbers after a cold start's checkpoint are executed afresh. */
  private era = 0;
  /** Per unordered read ("client#ts"): what correct replicas answered it. */
  private readonly readClaims = new Map<string, ReadClaim[]>();
  /** The highest sequence number a correct replica executed in this era (or went back to). */
  private highestExecuted = 0;
  /** Per completed operation ("client#ts"): `highestExecuted` when it completed. */
  private readonly highestAtCompletion = new Map<string, number>();
  /** Per era after the first: the checkpoint its cold start went back to. */
  private readonly coldStartSeqs: number[] = [];

  onExecuted(
    replica: string,
    seq: number,
    digest: string,
    requests: readonly ClientRequest[],
    results: ReadonlyArray<KvResult | undefined> = [],
  ): void {
    this.startAtFirstExecution(seq);
    // Agreement on what was executed, not only on its digest: each request's result too.
    const outcome = canonicalJson(results.map((r) => r ?? null));
    const seen = this.outcomes.get(seq);
    if (seen === undefined) this.outcomes.set(seq, { outcome, by: replica });
    else if (seen.outcome !== outcome)
      this.violations.push(
        `agreement: ${replica} got results ${outcome.slice(0, 80)} at seq ${seq}, ${seen.by} got ${seen.outcome.slice(0, 80)}`,
      );
    this.highestExecuted = Math.max(this.highestExecuted, seq);
    const first = this.executed.get(seq);
    if (first === undefined) this.executed.set(seq, { digest, requests, by: replica });
    else if (first.digest !== digest)
      this.violations.push(
        `agreement: ${replica} executed batch ${digest.slice(0, 12)} at seq ${seq}, ${first.by} executed ${first.digest.slice(0, 12)}`,
      );
  }

  onCheckpoint(replica: string, seq: number, digest: string): void {
    const first = this.checkpoints.get(seq);
    if (first === undefined) this.checkpoints.set(seq, { digest, by: replica });
    else if (first.digest !== digest)
      this.violations.push(
        `agreement: ${replica} has checkpoint ${digest.slice(0, 12)} at seq ${seq}, ${first.by} has ${first.digest.slice(0, 12)}`,
      );
  }

  /**
   * Every replica was restarted at once (a cold start): what was executed until now counts only
   * up to the checkpoint they agree to start from (`onColdStartCheckpoint`); from there on,
   * sequence numbers are executed afresh.
   */
  beginColdStart(): void {
    this.era++;
    this.before = {
      executed: new Map(this.executed),
      outcomes: new Map(this.outcomes),
      checkpoints: new Map(this.checkpoints),
    };
    this.executed.clear();
    this.outcomes.clear();
    this.checkpoints.clear();
    this.coldStartFrom = undefined;
    this.coldStartCandidates.clear();
    this.executedThisEra = false;
  }

  /**
   * The state a correct replica took in a cold start. Either a checkpoint a correct replica
   * computed before the cold start (the first view after it, or a later one decided from
   * cold-start VIEW_CHANGEs only, before anything was executed in the new era: it may move the
   * starting point), or one computed since (a replica that joined late).
   */
  onColdStartCheckpoint(replica: string, seq: number, digest: string): void {
    const before = this.before;
    if (before === undefined) return;
    const from = this.coldStartFrom;
    if (from !== undefined && this.checkpoints.get(seq)?.digest === digest && seq >= from.seq)
      return; // one taken since the cold start
    const known = before.checkpoints.get(seq);
    if (seq > 0 && known?.digest !== digest) {
      this.violations.push(
        `cold start: ${replica} started from checkpoint ${seq} (${digest.slice(0, 12)}), which no correct replica computed${known === undefined ? "" : ` (${known.by} had ${known.digest.slice(0, 12)})`}`,
      );
      return;
    }
    if (from !== undefined && from.seq === seq && from.digest === digest) return;
    if (from !== undefined && [...this.executed.keys()].some((s) => s > from.seq)) {
      this.violations.push(
        `cold start: ${replica} went back to checkpoint ${seq} after the service executed past ${from.seq} since the cold start`,
      );
      return;
    }
    // The starting point (again: nothing was executed since the last one).
    this.coldStartCandidates.set(seq, { seq, digest, by: replica });
    this.startFrom({ seq, digest, by: replica });
  }

  /**
   * The era's first execution follows its starting point. Where correct replicas settled on
   * different checkpoints (a Byzantine primary's two NEW_VIEWs for one view), the one it follows
   * is where the era started, whichever was reported last.
   */
  private startAtFirstExecution(seq: number): void {
    if (this.era === 0 || this.executedThisEra) return;
    this.executedThisEra = true;
    const from = this.coldStartFrom;
    if (from === undefined || seq === from.seq + 1) return;
    const followed = this.coldStartCandidates.get(seq - 1);
    if (followed !== undefined) this.startFrom(followed);
  }

  /** The witness keeps what was executed up to `start`; what came after it is lost. */
  private startFrom(start: { seq: number; digest: string; by: string }): void {
    const before = this.before;
    if (before === undefined) return;
    const { seq } = start;
    this.coldStartFrom = start;
    this.coldStartSeqs[this.era] = seq;
    this.highestExecuted = seq;
    this.executed.clear();
    this.outcomes.clear();
    this.checkpoints.clear();
    this.lost.clear();
    this.lostCount = 0;
    for (const [s, e] of before.executed) {
      if (s <= seq) this.executed.set(s, e);
      else
        for (const r of e.requests) {
          this.lost.add(`${r.client}#${r.ts}`);
          this.lostCount++;
        }
    }
    for (const [s, o] of before.outcomes) if (s <= seq) this.outcomes.set(s, o);
    for (const [s, c] of before.checkpoints) if (s <= seq) this.checkpoints.set(s, c);
  }

  checkpointDigest(seq: number): string | undefined {
    return this.checkpoints.get(seq)?.digest;
  }

  onCompleted(op: CompletedOperation): void {
    this.completed.push(op);
    this.highestAtCompletion.set(`${op.client}#${op.ts}`, this.highestExecuted);
  }

  /** A correct replica answered an unordered read: `result` in every state from `since` to `seq`. */
  onReadAnswered(
    client: string,
    ts: number,
    answer: { since: number; seq: number; result: KvResult },
  ): void {
    const key = `${client}#${ts}`;
    const claims = this.readClaims.get(key) ?? [];
    claims.push({ era: this.era, ...answer });
    this.readClaims.set(key, claims);
  }

  /** Whether a cold start after `era` went back below `seq`: the state there was lost with it. */
  private lostAfter(era: number, seq: number): boolean {
    for (let e = era + 1; e <= this.era; e++) if ((this.coldStartSeqs[e] ?? 0) < seq) return true;
    return false;
  }

  /**
   * An unordered read whose agreed state a later cold start went back before: lost with it
   * (answers in flight across a cold start may come from either era).
   */
  private readLost(key: string, seq: number): boolean {
    const claims = this.readClaims.get(key);
    if (claims === undefined || claims.length === 0) return this.lostAfter(this.era, seq);
    return claims.some((c) => this.lostAfter(c.era, seq));
  }

  get completedCount(): number {
    return this.completed.length;
  }

  /**
   * What each correct replica claimed in its answer to a read, checked at both ends of its
   * interval against the order executed (a state a later cold start went back before is not
   * checked): a `since` later than the write before it would show here.
   */
  private checkReadClaims(
    key: string,
    op: KvOperation,
    boundaries: ReadonlyArray<{ model: Map<string, string> }>,
  ): void {
    for (const claim of this.readClaims.get(key) ?? []) {
      if (this.lostAfter(claim.era, claim.seq)) continue;
      const claimed = canonicalJson(claim.result);
      for (const at of [claim.since, claim.seq]) {
        const state = boundaries[at];
        if (state === undefined) continue;
        const gives = canonicalJson(applyModel(new Map(state.model), op));
        if (gives !== claimed) {
          this.violations.push(
            `read answer: a correct replica answered ${key} ${canonicalJson(op)} with ${claimed} over seq ${claim.since} to ${claim.seq}; the state at seq ${at} gives ${gives}`,
          );
          return;
        }
      }
    }
  }

  /** The linearizability check over the whole history (run at the end). */
  checkLinearizable(): void {
    const position = new Map<string, number>();
    const modelResult = new Map<string, KvResult>();
    const model = new Map<string, string>();
    const lastTs = new Map<string, number>();
    const seqs = [...this.executed.keys()].sort((a, b) => a - b);
    const lostReads = new Set<string>();
    for (const op of this.completed) {
      if (op.readAtSeq === undefined) continue;
      const key = `${op.client}#${op.ts}`;
      if (this.readLost(key, op.readAtSeq)) lostReads.add(key);
    }
    // After each batch: where a read placed there sits in the order, and the model's state.
    const boundaries: { position: number; model: Map<string, string> }[] = [
      { position: -0.5, model: new Map() },
    ];
    let index = 0;
    let expected = 1;
    for (const seq of seqs) {
      if (seq !== expected) {
        this.violations.push(`history: no correct replica executed seq ${expected}`);
        return;
      }
      expected++;
      for (const r of (this.executed.get(seq) as { requests: readonly ClientRequest[] }).requests) {
        if (r.ts <= (lastTs.get(r.client) ?? 0)) continue;
        lastTs.set(r.client, r.ts);
        const key = `${r.client}#${r.ts}`;
        position.set(key, index++);
        modelResult.set(key, applyModel(model, r.op));
      }
      boundaries.push({ position: index - 0.5, model: new Map(model) });
    }
    const byInvoke = [...this.completed].sort((a, b) => a.invokedMs - b.invokedMs);
    const byComplete = [...this.completed].sort((a, b) => a.completedMs - b.completedMs);
    let c = 0;
    let latestBefore = -1;
    let latestOp: CompletedOperation | undefined;
    for (const op of byInvoke) {
      // Every operation that completed before this one was invoked must precede it.
      while (
        c < byComplete.length &&
        (byComplete[c] as CompletedOperation).completedMs < op.invokedMs
      ) {
        const done = byComplete[c++] as CompletedOperation;
        const p = position.get(`${done.client}#${done.ts}`) ?? -1;
        if (p > latestBefore) {
          latestBefore = p;
          latestOp = done;
        }
      }
      const key = `${op.client}#${op.ts}`;
      if (op.readAtSeq !== undefined && !lostReads.has(key)) {
        // An unordered read: the first batch from the one its answers agreed on, after all that
        // completed before it was invoked, whose state gives what it returned (invocation order
        // places every read that completed before this one first).
        const result = canonicalJson(op.result);
        // No later than any correct replica had executed when the read completed.
        const last = Math.min(boundaries.length - 1, this.highestAtCompletion.get(key) ?? 0);
        for (let s = op.readAtSeq; s <= last; s++) {
          const at = boundaries[s] as { position: number; model: Map<string, string> };
          if (at.position < latestBefore) continue;
          if (canonicalJson(applyModel(new Map(at.model), op.op)) !== result) continue;
          position.set(key, at.position);
          modelResult.set(key, op.result);
          break;
        }
        if (!position.has(key)) {
          const at = boundaries[op.readAtSeq];
          this.violations.push(
            at === undefined
              ? `linearizability: ${key} read the state at seq ${op.readAtSeq}, which no correct replica executed`
              : `linearizability: ${key} ${canonicalJson(op.op)} returned ${result}, which no state from seq ${op.readAtSeq} to ${last}, after everything that completed before it was invoked, gives (the state at seq ${op.readAtSeq} gives ${canonicalJson(applyModel(new Map(at.model), op.op))})`,
          );
        }
        this.checkReadClaims(key, op.op, boundaries);
        continue;
      }
      const p = position.get(key);
      if (p === undefined && (this.lost.has(key) || lostReads.has(key))) continue; // executed (or read) after the checkpoint a cold start went back to
      if (p === undefined) {
        this.violations.push(
          `linearizability: ${key} completed but no correct replica executed it`,
        );
        continue;
      }
      const want = modelResult.get(key) as KvResult;
      if (canonicalJson(want) !== canonicalJson(op.result))
        this.violations.push(
          `linearizability: ${key} ${canonicalJson(op.op)} returned ${canonicalJson(op.result)}, the model says ${canonicalJson(want)}`,
        );
      if (p < latestBefore && latestOp)
        this.violations.push(
          `linearizability: ${key} was ordered before ${latestOp.client}#${latestOp.ts}, which completed before it was invoked`,
        );
    }
  }
}

/** The key-value model: a plain map, independent of the store under test. */
export function applyModel(model: Map<string, string>, op: KvOperation): KvResult {
  switch (op.op) {
    case "get":
      return { op: "get", value: model.get(op.key) ?? null };
    case "put": {
      const previous = model.get(op.key) ?? null;
      model.set(op.key, op.value);
      return { op: "put", previous };
    }
    case "del": {
      const previous = model.get(op.key) ?? null;
      model.delete(op.key);
      return { op: "del", previous };
    }
    case "cas": {
      const current = model.get(op.key) ?? null;
      if (current !== op.expected) return { op: "cas", ok: false, current };
      model.set(op.key, op.value);
      return { op: "cas", ok: true, current: op.value };
    }
    case "scan": {
      const keys = [...model.keys()]
        .filter((k) => compareKeys(k, op.from) >= 0 && (op.to === "" || compareKeys(k, op.to) < 0))
        .sort(compareKeys)
        .slice(0, op.limit);
      return scanAnswer(keys, (i) => model.get(keys[i] as string) as string);
    }
  }
}
