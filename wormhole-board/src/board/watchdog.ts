/**
 * The kernel's hardware watchdog (`/dev/watchdog`): a hung board daemon reboots the Pi, whose
 * lines come up at their power-on safe levels. Fed, with systemd's (`@smw/wiring/cli`
 * `SystemdNotify`), by a `WatchdogFeeder` from the event loop, and only while the board's timely
 * core still ticks: a stalled event loop, or a loop that runs while the core's timer chain is
 * broken, stops the feeding.
 */
import { accessSync, closeSync, constants, openSync, writeSync } from "node:fs";
import { WatchdogError, type WatchdogSink } from "@smw/wiring/cli";

/**
 * The kernel's watchdog device. Opening it arms it, so it is opened when the board runs (not
 * while a daemon that may still refuse its input starts); each write feeds it; writing "V"
 * before closing disarms it (the magic close) on a clean stop. The Pi's timer allows up to 15 s:
 * fed every second.
 */
export class HardwareWatchdog implements WatchdogSink {
  readonly name: string;
  readonly feedIntervalMs = 1_000;
  private fd: number | undefined;

  constructor(readonly device: string) {
    this.name = device;
    try {
      accessSync(device, constants.W_OK);
    } catch (error) {
      throw new WatchdogError(`cannot use the watchdog ${device}: ${(error as Error).message}`);
    }
  }

  ready(): void {
    if (this.fd !== undefined) return;
    try {
      this.fd = openSync(this.device, "w");
    } catch (error) {
      throw new WatchdogError(
        `cannot open the watchdog ${this.device}: ${(error as Error).message}`,
      );
    }
  }

  feed(): void {
    if (this.fd !== undefined) writeSync(this.fd, "\0");
  }

  close(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    try {
      writeSync(fd, "V");
    } finally {
      closeSync(fd);
    }
  }
}
