/**
 * Runs the steps of Algorithm 1 for real: the reset, storage-mux and
 * write-protect lines, the image check and restore, and the host link. Each
 * step ends with an outcome for the recovery core, which judges its timing.
 */
import { type KeyObject, sign } from "node:crypto";
import {
  type Board,
  certificateSigningBytes,
  type HostToBoard,
  type KeyCertificate,
  type KeyLease,
  leaseSigningBytes,
  revokeMessages,
} from "@smw/wiring";
import type { BoardLines } from "../lines/board-lines.js";
import type { HostLinkPort } from "../link/host-link-port.js";
import type { Manifest } from "../media/manifest.js";
import { readVerifiedManifest } from "../media/manifest.js";
import { MediaError } from "../media/media-error.js";
import { restoreImage } from "../media/restore.js";
import { verifyImage } from "../media/verify.js";
import type { RecoveryStep, StepOutcome } from "./recovery-core.js";

export interface StepRunnerDeps {
  board: Board;
  lines: BoardLines;
  hostLink: HostLinkPort;
  operatorKey: KeyObject;
  signingKey: KeyObject;
  budgets: { tShutdownMs: number; tBootMs: number; tTransferMs: number };
  /**
   * Per host, the key epoch before which its keys are revoked (the start of its latest
   * rejuvenation this board saw): told to a host that boots, before its own certificate, so its
   * new replica never takes a key the others have revoked.
   */
  revokedKeys?: () => ReadonlyMap<string, number>;
  /**
   * The key epochs this board has issued, kept on disk: the last one (read at start), and each
   * new one written before its certificate leaves. A board without a real-time clock may boot
   * with its clock set back; its epochs still only go up.
   */
  certificateEpochs?: { last: number; issued(epoch: number): void };
  /** The board's clock (default: the wall clock). */
  now?: () => number;
  /**
   * The wall clock leases are stamped with (default: `Date.now`): the system clock NTP keeps, as
   * the clients' is, rather than the board's own clock, which runs on from its start at up to
   * `driftMaxPpm` and would drift from the clients' by the hour.
   */
  wallNow?: () => number;
  /** How long a lease on the host's key lasts (`KeyLease`); without it, none is issued. */
  keyLeaseMs?: number;
}

/**
 * The least a host is given to acknowledge PREPARE_SHUTDOWN once leases run: its agent's own
 * bound (it acknowledges after 300 ms whatever its replica did) and the host link's round trip.
 */
export const HAND_OFF_FLOOR_MS = 500;

export class StepRunner {
  private readonly manifests = new Map<"os" | "sm", Manifest>();
  private lastEpoch: number;
  private bootedKey: string | undefined;
  /** The key epoch this board renews leases on: its host's current key, while the host runs. */
  private leasedEpoch: number | undefined;
  /** The last lease's lapse on the wall clock it was stamped with (0: none issued in this run). */
  private lastNotAfterMs = 0;
  /** The same lapse on the board's clock: a lease after it was issued (0: none in this run). */
  private lastLapseBoardMs = 0;

  constructor(private readonly deps: StepRunnerDeps) {
    this.lastEpoch = deps.certificateEpochs?.last ?? 0;
  }

  async run(step: RecoveryStep, period: number, signal: AbortSignal): Promise<StepOutcome> {
    try {
      switch (step) {
        case "shutdown":
          return await this.shutdown(period, signal);
        case "checkOS":
          return await this.check("os");
        case "checkSM":
          return await this.check("sm");
        case "restoreOS":
          return await this.restore("os");
        case "restoreSM":
          return await this.restore("sm");
        case "boot":
          return await this.boot(period, signal);
        case "transfer":
          return await this.transfer(signal);
      }
    } catch (error) {
      return { ok: false, reason: (error as Error).message };
    }
  }

  /**
   * Tell the host (a primary hands off), allow it time to hand off (`ackWaitMs`), wait for the
   * last lease on its key to lapse, then hold it in reset. The adversary may leave a host only at
   * its reset, so no client counts a key whose host it left (SAFETY.md, "Key epochs": leases end
   * before the reset).
   * Cut short (a fail-safe, the daemon stopping), it resets nothing: the fail-safe policy decides
   * the lines then, and one without `hold-reset` leaves the host running.
   */
  private async shutdown(period: number, signal: AbortSignal): Promise<StepOutcome> {
    // A step that waited behind the start-up check and was cut short meanwhile does nothing.
    if (signal.aborted) return { ok: false, reason: "cut short before it began; nothing done" };
    this.stopLeases();
    const startedMs = this.now();
    this.deps.hostLink.send({ type: "PREPARE_SHUTDOWN", period });
    const ack = await this.deps.hostLink.waitFor(
      (m): m is Extract<HostToBoard, { type: "SHUTDOWN_ACK" }> =>
        m.type === "SHUTDOWN_ACK" && m.period === period,
      this.ackWaitMs(),
      signal,
    );
    const leaseWaitMs = await this.untilLeaseLapsed(signal);
    if (signal.aborted) return { ok: false, reason: "cut short before the reset; nothing reset" };
    this.deps.lines.set("reset", "active");
    this.deps.hostLink.flush();
    if (this.deps.lines.has("storage-mux")) this.deps.lines.set("storage-mux", "active");
    const acked =
      ack === undefined ? "no acknowledgement from the host; reset anyway" : "host acknowledged";
    return {
      ok: true,
      detail:
        leaseWaitMs > 0
          ? `${acked}; reset once its key's last lease lapsed, ${Math.round(this.now() - startedMs)} ms after the step began`
          : acked,
    };
  }

  /**
   * How long the host has to hand off: half the budget or, once this board has issued leases,
   * until the last one lapses if sooner, but never less than `HAND_OFF_FLOOR_MS`. The reset waits
   * for the lapse anyway, so a host that never acknowledges (a Byzantine one) costs no more than
   * the lease's remaining time or the floor; a correct one answers within the floor (its agent
   * acknowledges by itself after 300 ms), whatever was left of a short or stopped lease.
   */
  private ackWaitMs(): number {
    const halfBudgetMs = this.deps.budgets.tShutdownMs / 2;
    if (this.lastLapseBoardMs === 0) return halfBudgetMs;
    const leaseLeftMs = Math.max(
      this.lastNotAfterMs - this.wallNow(),
      this.lastLapseBoardMs - this.now(),
    );
    return Math.min(halfBudgetMs, Math.max(leaseLeftMs, HAND_OFF_FLOOR_MS));
  }

  /**
   * Waits until the last lease issued has lapsed, by the wall clock it was stamped with and by the
   * board's clock (a wall clock stepped forward meanwhile ends nothing early); how long it waited.
   * A lease covers instants before its `notAfterMs`: lapsed at it.
   */
  async untilLeaseLapsed(signal: AbortSignal): Promise<number> {
    const startedMs = this.now();
    let waited = false;
    for (;;) {
      const waitMs = Math.max(
        this.lastNotAfterMs - this.wallNow(),
        this.lastLapseBoardMs - this.now(),
      );
      if (waitMs <= 0 || signal.aborted) return waited ? this.now() - startedMs : 0;
      waited = true;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.ceil(waitMs));
        function done() {
          clearTimeout(timer);
          signal.removeEventListener("abort", done);
          resolve();
        }
        signal.addEventListener("abort", done, { once: true });
      });
    }
  }

  private wallNow(): number {
    return (this.deps.wallNow ?? Date.now)();
  }

  private now(): number {
    return (this.deps.now ?? Date.now)();
  }

  /** Reads and verifies both manifests ahead of time, so the first check does not pay for it. */
  warm(): void {
    for (const image of ["os", "sm"] as const) {
      try {
        this.manifest(image);
      } catch {
        // The check step will meet the problem and report it.
      }
    }
  }

  private manifest(image: "os" | "sm"): Manifest {
    const paths = this.deps.board.images[image];
    const manifest = readVerifiedManifest(paths.manifest, this.deps.operatorKey);
    this.manifests.set(image, manifest);
    return manifest;
  }

  private async check(image: "os" | "sm"): Promise<StepOutcome> {
    const manifest = this.manifest(image);
    const result = await verifyImage(this.deps.board.images[image].live, manifest, {
      what: `live ${image} image`,
    });
    return {
      ok: true,
      corrupted: !result.clean,
      detail: result.clean ? "clean" : `${result.badChunks.length} chunks corrupted`,
    };
  }

  private async restore(image: "os" | "sm"): Promise<StepOutcome> {
    const manifest = this.manifests.get(image) ?? this.manifest(image);
    const lines = this.deps.lines;
    const result = await restoreImage({
      livePath: this.deps.board.images[image].live,
      goldenPath: this.deps.board.images[image].golden,
      manifest,
      ...(lines.has("write-protect")
        ? {
            writeProtect: {
              lower: () => lines.set("write-protect", "inactive"),
              raise: () => lines.set("write-protect", "active"),
            },
          }
        : {}),
    });
    if (!result.clean)
      throw new MediaError(
        `the ${image} image is still corrupted after the restore (chunks ${result.stillBad.join(", ")})`,
      );
    return {
      ok: true,
      detail: `${result.chunksRestored} chunks restored, ${result.bytesWritten} bytes written`,
    };
  }

  /** Release reset (and the storage mux) and wait for the host agent to say it booted, with its new key. */
  private async boot(period: number, signal: AbortSignal): Promise<StepOutcome> {
    const lines = this.deps.lines;
    if (lines.has("storage-mux")) lines.set("storage-mux", "inactive");
    // Listening before the host runs, from a clean line: its first BOOTED is the one that lands.
    const bootedLater = this.deps.hostLink.waitFor(
      (m): m is Extract<HostToBoard, { type: "BOOTED" }> => m.type === "BOOTED",
      this.deps.budgets.tBootMs,
      signal,
    );
    this.deps.hostLink.flush();
    lines.set("reset", "inactive");
    const booted = await bootedLater;
    if (booted === undefined)
      return {
        ok: false,
        reason: `the host did not report booted within T_boot (${this.deps.budgets.tBootMs} ms)`,
      };
    this.certify(booted.publicKey);
    return { ok: true, detail: `host booted in period ${period}; key certificate issued` };
  }

  private async transfer(signal: AbortSignal): Promise<StepOutcome> {
    const recovered = await this.deps.hostLink.waitFor(
      (m): m is Extract<HostToBoard, { type: "RECOVERED" }> => m.type === "RECOVERED",
      this.deps.budgets.tTransferMs,
      signal,
    );
    if (recovered === undefined)
      return {
        ok: false,
        reason: `the host did not report its state recovered within T_transfer (${this.deps.budgets.tTransferMs} ms)`,
      };
    return { ok: true, detail: `state recovered at checkpoint ${recovered.checkpointSeq}` };
  }

  /** Every key certified from now on has at least epoch `floor` (a join's key floor). */
  certifyNoneBelow(floor: number): void {
    this.lastEpoch = Math.max(this.lastEpoch, floor - 1);
  }

  /**
   * Certifies `publicKey` as the host's replica key and sends the certificate, after the
   * revocations in force (`revokedKeys`: those of groups being rejuvenated, and every peer host's
   * keys below its board's key floor), so the replica starts with them. Its key epoch (the
   * certificate's `period`) is the board's clock in whole seconds, or one more than the last this
   * board issued if its clock says less (kept on disk, so also across restarts of the daemon and
   * a clock set back): the replicas always prefer the newest key.
   */
  certify(publicKey: string, options: { coldStart?: boolean } = {}): void {
    if (this.retired) return;
    this.bootedKey = publicKey;
    const issuedAtMs = Math.max((this.deps.now ?? Date.now)(), (this.lastEpoch + 1) * 1000);
    this.lastEpoch = Math.floor(issuedAtMs / 1000);
    this.deps.certificateEpochs?.issued(this.lastEpoch);
    const byEpoch = new Map<number, string[]>();
    for (const [host, before] of this.deps.revokedKeys?.() ?? [])
      if (host !== this.deps.board.guards)
        byEpoch.set(before, [...(byEpoch.get(before) ?? []), host]);
    for (const [before, hosts] of byEpoch)
      for (const message of revokeMessages(hosts, before)) this.deps.hostLink.send(message);
    this.deps.hostLink.send({
      type: "CERT",
      certificate: this.certificate(publicKey),
      ...(options.coldStart === true ? { coldStart: true } : {}),
    });
    this.leasedEpoch = this.lastEpoch;
    this.renewLease();
  }

  /**
   * Vouches for the host's current key for another lease (the driver calls this four times a
   * lease), unless leases stopped: its group began, the board failed safe, or the host is held.
   */
  renewLease(): void {
    const leaseMs = this.deps.keyLeaseMs;
    if (this.retired || this.leasedEpoch === undefined || leaseMs === undefined) return;
    const body = {
      host: this.deps.board.guards,
      board: this.deps.board.id,
      epoch: this.leasedEpoch,
      notAfterMs: Math.floor(this.wallNow() + leaseMs),
    };
    this.lastNotAfterMs = Math.max(this.lastNotAfterMs, body.notAfterMs);
    this.lastLapseBoardMs = Math.max(this.lastLapseBoardMs, this.now() + leaseMs);
    const lease: KeyLease = {
      ...body,
      signature: sign(null, leaseSigningBytes(body), this.deps.signingKey).toString("base64"),
    };
    this.deps.hostLink.send({ type: "LEASE", lease });
  }

  /**
   * No more leases on the host's current key: its rejuvenation began (or it is held in reset).
   * The last one lapses a lease from now at the latest; its next key gets leases of its own.
   */
  stopLeases(): void {
    this.leasedEpoch = undefined;
  }

  private retired = false;

  /**
   * The daemon is stopping: no certificate and no lease from here on, whatever comes (a BOOTED,
   * a step cut short, a start-up check ending), so the last lease issued stays the last.
   */
  retire(): void {
    this.retired = true;
    this.stopLeases();
  }

  get leasing(): boolean {
    return this.leasedEpoch !== undefined;
  }

  /**
   * When the last lease issued in this run lapses, on the board's clock (0 if none): a held host
   * runs only after it (`untilLeaseLapsed` waits on the wall clock too).
   */
  get lastLeaseLapsesAtMs(): number {
    return this.lastLapseBoardMs;
  }

  private certificate(publicKey: string): KeyCertificate {
    const body = {
      host: this.deps.board.guards,
      board: this.deps.board.id,
      period: this.lastEpoch,
      publicKey,
      issuedAt: new Date().toISOString(),
    };
    return {
      ...body,
      signature: sign(null, certificateSigningBytes(body), this.deps.signingKey).toString("base64"),
    };
  }

  get lastBootedKey(): string | undefined {
    return this.bootedKey;
  }
}
