/**
 * A serial port that comes back. A device can go away under an open port (a USB serial adapter
 * re-enumerating after a relay brown-out, a PTY whose other end restarted): the port then closes
 * with an error nobody asked for. This one opens the same path again, waiting `reopenMinMs`
 * first and twice as long after each failed try up to `reopenMaxMs`, for as long as its owner
 * has not closed it. Only the first open reports failure: a device missing at start is bad
 * input, one that goes away later is weather the owner rides out.
 *
 * A loss does not always close the port by itself: when the device hangs up while no read is
 * waiting, reads return zero bytes, which the serialport binding retries forever, spinning
 * (serialport/bindings-cpp#162). So an open port's device is also checked every `checkMs` with
 * a cheap ioctl (reading its baud rate), which fails on a hung-up device.
 */
import { createRequire } from "node:module";
import { newSerialPort } from "@smw/wiring/cli";
import type { SerialPort } from "serialport";

export interface ReopenOptions {
  /** The wait before the first try to reopen a lost port; again the first wait once a reopened port stayed open `reopenMaxMs`. */
  reopenMinMs?: number;
  /** The longest wait between tries. */
  reopenMaxMs?: number;
  /** How often an open port's device is checked for a hang-up. */
  checkMs?: number;
}

export interface ReopeningSerialPortHandlers {
  data(chunk: Buffer): void;
  /** The port was lost and is open again: what came before the loss does not go on after it. */
  reopened(): void;
}

export class ReopeningSerialPort {
  private port: SerialPort | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private checkTimer: NodeJS.Timeout | undefined;
  /**
   * The spin is in the binding's reads on unix; of those platforms only Linux's binding reads
   * the baud rate (darwin's says it cannot), and Linux is where boards run.
   */
  private readonly checkable = process.platform === "linux";
  /** The open under way (the first or a retry), for `close` to wait on. */
  private attempt: Promise<void> | undefined;
  private closed = true;
  private readonly reopenMinMs: number;
  private readonly reopenMaxMs: number;
  private readonly checkMs: number;
  private delayMs: number;
  /** When the port in use was opened: one that fails soon after is not yet back for good. */
  private openedAtMs = 0;
  readonly counters = {
    /** Times the open port went away without its owner closing it. */
    lost: 0,
    /** Times it was opened again after a loss. */
    reopened: 0,
    /** Tries to reopen that failed (the device was not back yet). */
    failedReopens: 0,
  };

  constructor(
    readonly device: string,
    private readonly baudRate: number,
    private readonly handlers: ReopeningSerialPortHandlers,
    options: ReopenOptions = {},
  ) {
    this.reopenMinMs = options.reopenMinMs ?? 100;
    this.reopenMaxMs = options.reopenMaxMs ?? 5_000;
    this.checkMs = options.checkMs ?? 500;
    if (!(this.reopenMinMs > 0 && this.reopenMaxMs >= this.reopenMinMs))
      throw new RangeError(
        `the reopen waits for ${device} must satisfy 0 < reopenMinMs <= reopenMaxMs (got ${this.reopenMinMs} and ${this.reopenMaxMs})`,
      );
    if (!(this.checkMs > 0))
      throw new RangeError(
        `the check interval for ${device} must be above 0 ms (got ${this.checkMs})`,
      );
    this.delayMs = this.reopenMinMs;
  }

  /** The wait before the next try to reopen: doubled after each failed try, up to the maximum. */
  get reopenDelayMs(): number {
    return this.delayMs;
  }

  /** Whether the port should be open but is not (lost, being reopened). */
  get down(): boolean {
    return !this.closed && !(this.port?.isOpen ?? false);
  }

  /** Opens the port; rejects with the device's error when it cannot be opened now. */
  async open(): Promise<void> {
    if (!this.closed) throw new Error(`the serial port ${this.device} is already open`);
    this.closed = false;
    this.delayMs = this.reopenMinMs;
    const attempt = this.openOnce().then(
      (port) => this.adopt(port, false),
      (error: unknown) => {
        this.closed = true;
        throw error;
      },
    );
    this.attempt = attempt.catch(() => {});
    await attempt;
  }

  /** Writes `data`; false, and nothing written, when the port is down. */
  write(data: string | Buffer): boolean {
    const port = this.port;
    if (port === undefined || !port.isOpen) return false;
    port.write(data, () => {});
    return true;
  }

  /** Closes the port and stops reopening it. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    await this.attempt;
    const port = this.port;
    this.port = undefined;
    clearInterval(this.checkTimer);
    if (port?.isOpen) await new Promise<void>((resolve) => port.close(() => resolve()));
  }

  private openOnce(): Promise<SerialPort> {
    return new Promise((resolve, reject) => {
      const port = newSerialPort<SerialPort>(
        createRequire(import.meta.url),
        this.device,
        this.baudRate,
      );
      // Errors are handled through the open callback and `close`; an unheard one would crash.
      port.on("error", () => {});
      port.open((error) => (error ? reject(error) : resolve(port)));
    });
  }

  private attach(port: SerialPort): void {
    this.port = port;
    port.on("data", (chunk: Buffer) => {
      if (this.port === port) this.handlers.data(chunk);
    });
    port.on("close", () => this.lost(port));
    // A failed write or a failed close after a disconnect leaves the port unusable.
    port.on("error", () => this.lost(port));
    if (this.checkable) this.watch(port);
  }

  private watch(port: SerialPort): void {
    let checking = false;
    this.checkTimer = setInterval(() => {
      const binding = port.port;
      if (checking || binding === undefined) return;
      checking = true;
      binding.getBaudRate().then(
        () => {
          checking = false;
        },
        () => {
          checking = false;
          this.lost(port);
        },
      );
    }, this.checkMs);
    this.checkTimer.unref();
  }

  private lost(port: SerialPort): void {
    if (this.port !== port) return;
    this.port = undefined;
    clearInterval(this.checkTimer);
    this.counters.lost++;
    // A device that opens and fails at once (a flapping adapter) keeps backing off; one that
    // stayed open a while starts again from the shortest wait.
    const stayedMs = performance.now() - this.openedAtMs;
    this.delayMs =
      stayedMs >= this.reopenMaxMs
        ? this.reopenMinMs
        : Math.min(this.delayMs * 2, this.reopenMaxMs);
    if (port.isOpen) port.close(() => {});
    if (!this.closed) this.scheduleRetry();
  }

  private scheduleRetry(): void {
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.attempt = this.retry();
    }, this.delayMs);
    // Reopening alone does not keep the process alive.
    this.retryTimer.unref();
  }

  private async retry(): Promise<void> {
    if (this.closed) return;
    let port: SerialPort;
    try {
      port = await this.openOnce();
    } catch {
      this.counters.failedReopens++;
      this.delayMs = Math.min(this.delayMs * 2, this.reopenMaxMs);
      if (!this.closed) this.scheduleRetry();
      return;
    }
    await this.adopt(port, true);
  }

  /** Takes an opened port into use, unless the owner closed meanwhile. */
  private async adopt(port: SerialPort, reopened: boolean): Promise<void> {
    if (this.closed) {
      await new Promise<void>((resolve) => port.close(() => resolve()));
      return;
    }
    this.openedAtMs = performance.now();
    if (reopened) {
      this.counters.reopened++;
      this.handlers.reopened();
    }
    this.attach(port);
  }
}
