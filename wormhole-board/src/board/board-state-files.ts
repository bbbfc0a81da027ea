/**
 * What a board keeps in its state folder: its boot epoch, the latched
 * fail-safe state (so a restarted daemon comes back in it), the issue time of
 * the last operator request it acted on (so none is accepted twice, across
 * restarts too), the step records (JSON lines) and a status snapshot for
 * `smw status`.
 *
 * The epoch, the fail-safe state and the last operator request are written
 * atomically and synced: they must survive a crash. Records and the status snapshot are written in the
 * background, never with fsync, because an fsync on an SD card can stall for
 * hundreds of milliseconds and the event loop drives the timers.
 */
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  writeSync,
} from "node:fs";
import { appendFile, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import type { FailsafeState } from "../failsafe/failsafe-core.js";

export class BoardStateFiles {
  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  /** Set by `nextEpoch` when the epoch file was there but unreadable: what was wrong. */
  epochProblem: string | undefined;

  /**
   * Increments and returns the boot epoch: frames of earlier boots are replays. At least the
   * wall clock's seconds (`nowMs`), so that a damaged or lost epoch file still gives an epoch
   * above every earlier boot's while the clock has not gone back: from 1 again, the peers
   * would refuse every frame of this board as a replay for as many boots as it had had, and
   * fail safe on its silence.
   */
  nextEpoch(nowMs = Date.now()): number {
    const file = path.join(this.dir, "epoch");
    let last = 0;
    this.epochProblem = undefined;
    try {
      const text = readFileSync(file, "utf8").trim();
      last = Number(text);
      if (!/^\d+$/.test(text) || !Number.isSafeInteger(last)) {
        this.epochProblem = `${file} holds ${JSON.stringify(text.slice(0, 40))}, not a boot epoch`;
        last = 0;
      }
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // Missing: the first boot.
      if (code !== "ENOENT") this.epochProblem = `${file}: ${code ?? (error as Error).message}`;
    }
    const epoch = Math.max(last + 1, Math.floor(nowMs / 1000));
    this.writeAtomic("epoch", `${epoch}\n`);
    return epoch;
  }

  readFailsafe(): FailsafeState | undefined {
    try {
      const data = JSON.parse(readFileSync(path.join(this.dir, "failsafe.json"), "utf8"));
      if (data === null) return undefined;
      if (
        typeof data.reason === "string" &&
        typeof data.origin === "string" &&
        typeof data.sinceMs === "number"
      ) {
        return { reason: data.reason, origin: data.origin, sinceMs: data.sinceMs };
      }
      // Unreadable content: stay on the safe side.
      return { reason: "the latched fail-safe file is unreadable", origin: "?", sinceMs: 0 };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      return {
        reason: `the latched fail-safe file is unreadable (${(error as Error).message})`,
        origin: "?",
        sinceMs: 0,
      };
    }
  }

  /** Where the fail-safe state is latched. */
  get failsafeFile(): string {
    return path.join(this.dir, "failsafe.json");
  }

  writeFailsafe(state: FailsafeState | undefined): void {
    this.writeAtomic("failsafe.json", `${JSON.stringify(state ?? null)}\n`);
  }

  /** Where the `issuedAtMs` of the last operator request acted on is kept. */
  get operatorRequestFile(): string {
    return path.join(this.dir, "operator-request");
  }

  /** The `issuedAtMs` of the last operator request acted on (0: none; unreadable: infinity). */
  readLastOperatorRequest(): number {
    try {
      const value = Number(readFileSync(this.operatorRequestFile, "utf8").trim());
      return Number.isFinite(value) && value >= 0 ? value : Number.POSITIVE_INFINITY;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return 0;
      // Unreadable: accept nothing until an operator repairs it (refusing is the safe side).
      return Number.POSITIVE_INFINITY;
    }
  }

  writeLastOperatorRequest(issuedAtMs: number): void {
    this.writeAtomic("operator-request", `${issuedAtMs}\n`);
  }

  /** When this board last certified a key outside a rejuvenation (wall clock, ms), if ever. */
  readUnscheduledCertificate(): number | undefined {
    try {
      const value = Number(readFileSync(path.join(this.dir, "unscheduled-cert"), "utf8").trim());
      // Unreadable counts as issued: the cautious reading.
      return Number.isFinite(value) ? value : 0;
    } catch (error) {
      return (error as NodeJS.ErrnoException).code === "ENOENT" ? undefined : 0;
    }
  }

  writeUnscheduledCertificate(atMs: number): void {
    this.writeAtomic("unscheduled-cert", `${atMs}\n`);
  }

  /** The last key epoch this board certified (0: none); see `StepRunner.certify`. */
  readCertificateEpoch(): number {
    try {
      const value = Number(readFileSync(path.join(this.dir, "certificate-epoch"), "utf8").trim());
      return Number.isSafeInteger(value) && value >= 0 ? value : 0;
    } catch {
      return 0;
    }
  }

  writeCertificateEpoch(epoch: number): void {
    this.writeAtomic("certificate-epoch", `${epoch}\n`);
  }

  /** The highest boot epoch heard from each peer (see `ControlLink`). */
  readPeerEpochs(): Map<string, number> {
    try {
      const data = JSON.parse(readFileSync(path.join(this.dir, "peer-epochs.json"), "utf8"));
      const known = new Map<string, number>();
      for (const [peer, epoch] of Object.entries(data as Record<string, unknown>))
        if (Number.isSafeInteger(epoch)) known.set(peer, epoch as number);
      return known;
    } catch {
      // None yet, or unreadable: replays of earlier boots are then caught by what frames say.
      return new Map();
    }
  }

  private readonly peerEpochs = new Map<string, number>();

  writePeerEpoch(peer: string, epoch: number): void {
    if (this.peerEpochs.size === 0)
      for (const [p, e] of this.readPeerEpochs()) this.peerEpochs.set(p, e);
    this.peerEpochs.set(peer, epoch);
    this.writeAtomic(
      "peer-epochs.json",
      `${JSON.stringify(Object.fromEntries(this.peerEpochs))}\n`,
    );
  }

  private records: Promise<void> = Promise.resolve();
  private statusWriting = false;
  private statusPending: string | undefined;

  /** Appends a record in the background, in order. */
  appendRecord(record: unknown): void {
    const line = `${JSON.stringify(record)}\n`;
    this.records = this.records
      .then(() => appendFile(path.join(this.dir, "steps.jsonl"), line))
      .catch(() => {});
  }

  /** Replaces the status snapshot in the background; only the latest pending one is written. */
  writeStatus(status: unknown): void {
    this.statusPending = `${JSON.stringify(status, null, 1)}\n`;
    if (this.statusWriting) return;
    this.statusWriting = true;
    const target = path.join(this.dir, "status.json");
    const next = async (): Promise<void> => {
      const text = this.statusPending;
      this.statusPending = undefined;
      if (text === undefined) {
        this.statusWriting = false;
        return;
      }
      try {
        await writeFile(`${target}.tmp`, text, { mode: 0o600 });
        await rename(`${target}.tmp`, target);
      } catch {
        // A snapshot that could not be written is replaced by the next one.
      }
      return next();
    };
    void next();
  }

  /** Waits for the background writes (for an orderly stop, and tests). */
  async flush(): Promise<void> {
    await this.records;
    while (this.statusWriting) await new Promise((resolve) => setTimeout(resolve, 1));
  }

  readStatus(): unknown {
    return JSON.parse(readFileSync(path.join(this.dir, "status.json"), "utf8"));
  }

  private writeAtomic(name: string, text: string): void {
    const target = path.join(this.dir, name);
    const temporary = `${target}.tmp`;
    const fd = openSync(temporary, "w", 0o600);
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temporary, target);
  }
}
