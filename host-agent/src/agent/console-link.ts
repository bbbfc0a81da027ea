/**
 * The host's end of the host link: its serial console, carrying host-link
 * lines to and from its board. What the board sends is bounded and checked
 * like anything else arriving from outside.
 */
import { EventEmitter } from "node:events";
import { createRequire } from "node:module";
import {
  type BoardToHost,
  encodeHostLine,
  type HostToBoard,
  LineSplitter,
  MAX_HOST_LINE_BYTES,
  parseBoardToHost,
} from "@smw/wiring";
import { newSerialPort } from "@smw/wiring/cli";
import type { SerialPort } from "serialport";

export class ConsoleLink {
  private port: SerialPort | undefined;
  private splitter: LineSplitter | undefined;
  private readonly events = new EventEmitter();
  readonly counters = { received: 0, accepted: 0, malformed: 0, sent: 0 };

  constructor(
    private readonly device: string,
    private readonly baudRate: number,
  ) {}

  open(): Promise<void> {
    return new Promise((resolve, reject) => {
      const port = newSerialPort<SerialPort>(
        createRequire(import.meta.url),
        this.device,
        this.baudRate,
      );
      port.open((error) => {
        if (error) {
          reject(new Error(`cannot open the console (host link) ${this.device}: ${error.message}`));
          return;
        }
        this.splitter = new LineSplitter(MAX_HOST_LINE_BYTES, (line) => this.receive(line));
        port.on("data", (chunk: Buffer) => this.splitter?.push(chunk));
        port.on("error", () => {});
        this.port = port;
        resolve();
      });
    });
  }

  private receive(line: string): void {
    this.counters.received++;
    if (line.trim() === "") return;
    const message = parseBoardToHost(line);
    if (message === undefined) {
      this.counters.malformed++;
      return;
    }
    this.counters.accepted++;
    this.events.emit("message", message);
  }

  get oversized(): number {
    return this.splitter?.oversized ?? 0;
  }

  send(message: HostToBoard): void {
    if (!this.port?.isOpen) return;
    this.port.write(encodeHostLine(message), () => {});
    this.counters.sent++;
  }

  on(listener: (message: BoardToHost) => void): void {
    this.events.on("message", listener);
  }

  close(): Promise<void> {
    const port = this.port;
    this.port = undefined;
    if (!port?.isOpen) return Promise.resolve();
    return new Promise((resolve) => port.close(() => resolve()));
  }
}
