/**
 * Since when a read's result has held: for each partition, the last batch that wrote in it. A
 * READ_REPLY names the interval [since, seq] over which its result is the result of every state
 * (SAFETY.md, "Reads without ordering"), so that answers from replicas at different sequence
 * numbers still match when nothing the read reads changed between them.
 *
 * Coarse on purpose, always on the safe side: a partition holds many keys, a scan is taken to
 * read them all, a failed cas counts as a write, and a state taken whole (a checkpoint, a state
 * transfer) counts as written at its sequence number everywhere: nothing is known of what came
 * before it.
 */
import type { KvOperation } from "../kv/kv-operation.js";
import { PARTITION_COUNT, partitionOf } from "../kv/partition-tree.js";

export class ReadSince {
  /** Per partition: the last sequence number whose batch wrote in it (or the base). */
  private readonly lastWriteSeq = new Float64Array(PARTITION_COUNT);
  /** The last sequence number whose batch wrote anything (what a scan reads). */
  private lastAnyWriteSeq: number;

  constructor(baseSeq: number) {
    this.lastWriteSeq.fill(baseSeq);
    this.lastAnyWriteSeq = baseSeq;
  }

  /** The state was replaced whole by the state after `seq`. */
  reset(baseSeq: number): void {
    this.lastWriteSeq.fill(baseSeq);
    this.lastAnyWriteSeq = baseSeq;
  }

  /** Batch `seq` executed `op`. */
  noteExecuted(op: KvOperation, seq: number): void {
    if (op.op === "get" || op.op === "scan") return;
    const p = partitionOf(op.key);
    if (seq > (this.lastWriteSeq[p] as number)) this.lastWriteSeq[p] = seq;
    if (seq > this.lastAnyWriteSeq) this.lastAnyWriteSeq = seq;
  }

  /** The sequence number since which `op`'s result has been the same (a read-only op). */
  since(op: KvOperation): number {
    if (op.op === "get") return this.lastWriteSeq[partitionOf(op.key)] as number;
    return this.lastAnyWriteSeq;
  }
}
