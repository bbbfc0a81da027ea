/**
 * The pool of media worker threads that hash and restore images. Started once (a board starts
 * it with its daemon), kept for the life of the process, and shared: starting a worker thread
 * costs its creator milliseconds of main-thread time (measured: timer lateness up to 10 ms per
 * thread started), which a board cannot pay mid-period. One thread per core but one, which the
 * board's event loop keeps; each at a lower priority (`yieldToTheBoard`).
 *
 * Jobs queue and go to the first idle thread. Idle threads do not keep the process alive; a
 * thread that dies fails its job and is replaced, but one that dies before it ran (a broken
 * install) fails every job with its reason instead of being restarted in a loop.
 */
import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { MediaError } from "./media-error.js";
import type { MediaJob, MediaJobReply, MediaJobRequest } from "./media-worker.js";
import { RestoreFailure } from "./restore-io.js";

interface Pending {
  id: number;
  job: MediaJob;
  onProgress?: (done: number, total: number) => void;
  resolve: (result: unknown) => void;
  reject: (error: Error) => void;
  /** What `onProgress` threw: the job runs to its end, then fails with it. */
  progressError?: Error;
}

interface Slot {
  worker: Worker;
  running?: Pending;
  /** The thread loaded its code and said so. */
  online: boolean;
  /** The nice value the thread set itself to, once online (none: not Linux, or not allowed). */
  nice?: number;
}

export class MediaWorkers {
  private static sharedPool: MediaWorkers | undefined;

  /** The process's pool, started on first use. */
  static shared(): MediaWorkers {
    MediaWorkers.sharedPool ??= new MediaWorkers();
    return MediaWorkers.sharedPool;
  }

  readonly threads: number;
  private readonly slots: Slot[] = [];
  private readonly queue: Pending[] = [];
  private nextId = 1;
  private started = 0;
  private closed = false;
  /** Why a thread could not start: then no thread is started again, and every job fails. */
  private broken: string | undefined;

  constructor(
    threads = Math.max(1, availableParallelism() - 1),
    private readonly scriptPath = mediaWorkerPath(),
  ) {
    this.threads = threads;
    for (let i = 0; i < threads; i++) this.slots.push(this.start());
  }

  /** Threads started since the pool was made (replacements included). */
  get threadsStarted(): number {
    return this.started;
  }

  /** The thread ids of the pool's workers (a thread replaced gets a new id). */
  threadIds(): number[] {
    return this.slots.map((slot) => slot.worker.threadId);
  }

  /**
   * The nice value of each thread that is online and set one (`yieldToTheBoard`); a thread still
   * starting, or one that could not, is left out.
   */
  niceValues(): number[] {
    return this.slots.flatMap((slot) => (slot.nice === undefined ? [] : [slot.nice]));
  }

  /** Runs `job` on the first idle thread; `onProgress` hears a restore's chunks as they go. */
  run<Result>(job: MediaJob, onProgress?: (done: number, total: number) => void): Promise<Result> {
    if (this.closed) return Promise.reject(new MediaError("the media workers are closed"));
    if (this.broken !== undefined)
      return Promise.reject(new Error(`the media workers cannot start: ${this.broken}`));
    return new Promise<Result>((resolve, reject) => {
      const pending: Pending = {
        id: this.nextId++,
        job,
        resolve: resolve as (result: unknown) => void,
        reject,
      };
      if (onProgress !== undefined) pending.onProgress = onProgress;
      this.queue.push(pending);
      this.dispatch();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const pending of this.queue.splice(0))
      pending.reject(new MediaError("the media workers were closed"));
    await Promise.all(this.slots.map((slot) => slot.worker.terminate()));
    if (MediaWorkers.sharedPool === this) MediaWorkers.sharedPool = undefined;
  }

  private start(): Slot {
    // The parent's flags are for the parent (--input-type, -e, an inspector port).
    const worker = new Worker(this.scriptPath, { execArgv: [] });
    this.started++;
    worker.unref();
    const slot: Slot = { worker, online: false };
    worker.on("message", (reply: MediaJobReply) => {
      if ("ready" in reply) {
        slot.online = true;
        if (reply.nice !== undefined) slot.nice = reply.nice;
        return;
      }
      const pending = slot.running;
      if (pending === undefined || reply.id !== pending.id) return;
      if ("progress" in reply) {
        try {
          pending.onProgress?.(reply.progress.done, reply.progress.total);
        } catch (error) {
          pending.progressError ??= error as Error;
        }
        return;
      }
      this.finish(slot);
      if (pending.progressError !== undefined) pending.reject(pending.progressError);
      else if ("result" in reply) pending.resolve(reply.result);
      else
        pending.reject(reply.media ? new MediaError(reply.error) : new RestoreFailure(reply.error));
    });
    worker.on("error", (error) => this.lost(slot, error.message));
    worker.on("exit", () => this.lost(slot, "the worker stopped"));
    return slot;
  }

  private finish(slot: Slot): void {
    slot.running = undefined;
    slot.worker.unref();
    this.dispatch();
  }

  private lost(slot: Slot, why: string): void {
    const index = this.slots.indexOf(slot);
    if (index < 0) return;
    const pending = slot.running;
    slot.running = undefined;
    if (this.closed || this.broken !== undefined) return;
    if (!slot.online) {
      // A thread that dies before it runs would die again: no restart loop.
      this.broken = why;
      for (const waiting of [pending, ...this.queue.splice(0)])
        waiting?.reject(new Error(`the media workers cannot start: ${why}`));
      return;
    }
    this.slots[index] = this.start();
    pending?.reject(new Error(`a media worker failed: ${why}`));
    this.dispatch();
  }

  private dispatch(): void {
    for (const slot of this.slots) {
      if (slot.running !== undefined) continue;
      const pending = this.queue.shift();
      if (pending === undefined) return;
      slot.running = pending;
      // A thread with a job keeps the process alive until the job is answered.
      slot.worker.ref();
      slot.worker.postMessage({ id: pending.id, job: pending.job } satisfies MediaJobRequest);
    }
  }
}

/**
 * The compiled worker beside this module; tests run the TypeScript sources, where the worker is
 * taken from the build output instead.
 */
export function mediaWorkerPath(): string {
  const here = fileURLToPath(new URL("./media-worker.js", import.meta.url));
  if (existsSync(here)) return here;
  const built = here.replace(/([\\/])src([\\/]media[\\/][\w-]+\.js)$/, "$1dist$2");
  if (existsSync(built)) return built;
  throw new MediaError(`the worker ${here} is missing; build smw first (npm run build)`);
}
