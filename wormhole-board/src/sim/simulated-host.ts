/**
 * A minimal simulated payload host, for the board tests and benchmarks: it sits at the host
 * end of its host-link PTY, dies when its reset line is asserted, boots when
 * it is released (after `bootMs`, then says BOOTED with a fresh key), and says
 * RECOVERED `transferMs` after it gets its certificate. It can be told to
 * misbehave: never boot, never recover.
 */
import { generateKeyPairSync } from "node:crypto";
import { createRequire } from "node:module";
import { encodeHostLine, LineSplitter, parseBoardToHost } from "@smw/wiring";
import { newSerialPort } from "@smw/wiring/cli";
import type { SerialPort } from "serialport";
import type { SimulatedLines } from "../lines/simulated-lines.js";

export interface SimulatedHostOptions {
  device: string;
  lines: SimulatedLines;
  resetChip: string;
  resetOffset: number;
  resetActiveLow: boolean;
  bootMs: number;
  transferMs: number;
}

export class SimulatedHost {
  private port: SerialPort | undefined;
  private running = true;
  private timers: NodeJS.Timeout[] = [];
  private unsubscribe: (() => void) | undefined;
  willBoot = true;
  willRecover = true;
  boots = 0;
  certificates = 0;
  /** Certificates that said the host was released in a cold start. */
  coldStarts = 0;
  /** The key epoch of every certificate received, in order. */
  readonly epochs: number[] = [];
  /** Per cold-start certificate: the revocations that came since the boot, host -> before. */
  readonly coldRevocations: Array<Map<string, number>> = [];
  /** Per certificate: the revocations that came since the boot, host -> before. */
  readonly revocationsAtCert: Array<Map<string, number>> = [];
  private revokedSinceBoot = new Map<string, number>();

  constructor(private readonly options: SimulatedHostOptions) {}

  async start(): Promise<void> {
    const port = newSerialPort<SerialPort>(
      createRequire(import.meta.url),
      this.options.device,
      115200,
    );
    await new Promise<void>((resolve, reject) =>
      port.open((error) => (error ? reject(error) : resolve())),
    );
    this.port = port;
    const splitter = new LineSplitter(4096, (line) => this.receive(line));
    port.on("data", (chunk: Buffer) => splitter.push(chunk));
    port.on("error", () => {});
    this.unsubscribe = this.options.lines.onChange((event) => {
      if (event.chip !== this.options.resetChip || event.offset !== this.options.resetOffset)
        return;
      if (event.level === "active" && this.running) this.kill();
      else if (event.level === "inactive" && !this.running) this.boot();
    });
  }

  async stop(): Promise<void> {
    this.unsubscribe?.();
    for (const timer of this.timers) clearTimeout(timer);
    const port = this.port;
    if (port?.isOpen) await new Promise<void>((resolve) => port.close(() => resolve()));
  }

  private kill(): void {
    this.running = false;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers = [];
  }

  private boot(): void {
    this.running = true;
    this.revokedSinceBoot = new Map();
    if (!this.willBoot) return;
    this.later(this.options.bootMs, () => {
      this.boots++;
      const { publicKey } = generateKeyPairSync("ed25519");
      this.send(
        encodeHostLine({
          type: "BOOTED",
          publicKey: publicKey.export({ type: "spki", format: "der" }).toString("base64"),
        }),
      );
    });
  }

  private receive(line: string): void {
    if (!this.running) return;
    const message = parseBoardToHost(line);
    if (message === undefined) return;
    if (message.type === "PREPARE_SHUTDOWN")
      this.send(encodeHostLine({ type: "SHUTDOWN_ACK", period: message.period }));
    if (message.type === "REVOKE")
      for (const host of message.hosts)
        this.revokedSinceBoot.set(
          host,
          Math.max(message.before, this.revokedSinceBoot.get(host) ?? 0),
        );
    if (message.type === "CERT") {
      this.certificates++;
      this.epochs.push(message.certificate.period);
      this.revocationsAtCert.push(new Map(this.revokedSinceBoot));
      if (message.coldStart === true) {
        this.coldStarts++;
        this.coldRevocations.push(new Map(this.revokedSinceBoot));
      }
      if (!this.willRecover) return;
      this.later(this.options.transferMs, () =>
        this.send(encodeHostLine({ type: "RECOVERED", checkpointSeq: 0, digest: "0".repeat(64) })),
      );
    }
  }

  private later(ms: number, fn: () => void): void {
    this.timers.push(setTimeout(() => this.running && fn(), ms));
  }

  private send(line: string): void {
    if (this.port?.isOpen) this.port.write(line);
  }
}
