/**
 * Writes a replica's checkpoints to stable storage in the background, one at a time, in the
 * order taken: a checkpoint taken while one is being written waits, and replaces any other that
 * was waiting (only the newest matters on disk; a cold start's step back is newest too). The
 * ordering path never waits for a disk. Each writes only the partitions that changed since what
 * is on disk (`stored`: the partitions of the checkpoint read at start, then of those written).
 */
import { type StoredCheckpoint, writeCheckpointFileInBackground } from "./checkpoint-file.js";
import { StoredPartitions } from "./partition-segments.js";

export class CheckpointWriter {
  private writing: Promise<void> | undefined;
  private waiting: StoredCheckpoint | undefined;

  constructor(
    private readonly dir: string,
    private readonly onError: (seq: number, error: Error) => void,
    private readonly write = writeCheckpointFileInBackground,
    private readonly stored = new StoredPartitions(),
    /** The replica's checkpoint interval, which the older checkpoints kept are spaced by. */
    private readonly intervalSeqs?: number,
  ) {}

  /** Queues `cp` to be written; returns at once. */
  save(cp: StoredCheckpoint): void {
    this.waiting = cp;
    if (this.writing === undefined) this.writing = this.drain();
  }

  /** Resolves once nothing is waiting or being written. */
  async flushed(): Promise<void> {
    while (this.writing !== undefined) await this.writing;
  }

  private async drain(): Promise<void> {
    while (this.waiting !== undefined) {
      const cp = this.waiting;
      this.waiting = undefined;
      try {
        await this.write(this.dir, cp, this.stored, this.intervalSeqs);
      } catch (error) {
        this.onError(cp.seq, error as Error);
      }
    }
    this.writing = undefined;
  }
}
