/**
 * The board's end of the host link: a serial port (a PTY in the rig) carrying
 * host-link lines. Lines the host sends are checked and counted; waiting for a
 * message has a deadline and can be abandoned. The host is untrusted: a line
 * it left unfinished is dropped when its board resets it (`flush`), so that
 * it cannot swallow the clean agent's first line; and lines beyond a rate are
 * dropped and counted, so that a flood costs the board little.
 */
import { EventEmitter } from "node:events";
import {
  type BoardToHost,
  encodeHostLine,
  type HostToBoard,
  LineSplitter,
  MAX_HOST_LINE_BYTES,
  parseHostToBoard,
} from "@smw/wiring";
import { SerialPort } from "serialport";
import { TransportError } from "./transports.js";

export class HostLinkPort {
  private port: SerialPort | undefined;
  private splitter: LineSplitter | undefined;
  private readonly events = new EventEmitter();
  readonly counters = {
    received: 0,
    accepted: 0,
    malformed: 0,
    sent: 0,
    /** Unfinished lines dropped at a reset. */
    flushed: 0,
    /** Lines beyond the rate, dropped unread. */
    flooded: 0,
  };
  private windowStartMs = 0;
  private windowLines = 0;

  constructor(
    private readonly device: string,
    private readonly baudRate: number,
    /** Lines read per second at most; the host agent sends a few. */
    private readonly maxLinesPerSecond = 200,
  ) {}

  open(): Promise<void> {
    return new Promise((resolve, reject) => {
      const port = new SerialPort({ path: this.device, baudRate: this.baudRate, autoOpen: false });
      port.open((error) => {
        if (error) {
          reject(
            new TransportError(`cannot open the host link on ${this.device}: ${error.message}`),
          );
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

  /** The host is being reset (or released): whatever it left mid-line is not the next agent's. */
  flush(): void {
    if (this.splitter?.reset()) this.counters.flushed++;
  }

  get oversized(): number {
    return this.splitter?.oversized ?? 0;
  }

  send(message: BoardToHost): void {
    if (this.port?.isOpen) {
      this.port.write(encodeHostLine(message), () => {});
      this.counters.sent++;
    }
  }

  on(listener: (message: HostToBoard) => void): () => void {
    this.events.on("message", listener);
    return () => this.events.off("message", listener);
  }

  /** The first message that satisfies `accept`, or undefined when the deadline passes or `signal` aborts. */
  waitFor<T extends HostToBoard>(
    accept: (m: HostToBoard) => m is T,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<T | undefined> {
    return new Promise((resolve) => {
      const done = (value: T | undefined) => {
        clearTimeout(timer);
        off();
        signal?.removeEventListener("abort", onAbort);
        resolve(value);
      };
      const off = this.on((message) => {
        if (accept(message)) done(message);
      });
      const timer = setTimeout(() => done(undefined), Math.max(0, timeoutMs));
      const onAbort = () => done(undefined);
      signal?.addEventListener("abort", onAbort);
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (this.port?.isOpen) this.port.close(() => resolve());
      else resolve();
    });
  }

  private receive(line: string): void {
    const nowMs = performance.now();
    if (nowMs - this.windowStartMs >= 1_000) {
      this.windowStartMs = nowMs;
      this.windowLines = 0;
    }
    if (++this.windowLines > this.maxLinesPerSecond) {
      this.counters.flooded++;
      return;
    }
    this.counters.received++;
    const message = parseHostToBoard(line);
    if (message === undefined) {
      this.counters.malformed++;
      return;
    }
    this.counters.accepted++;
    this.events.emit("message", message);
  }
}
