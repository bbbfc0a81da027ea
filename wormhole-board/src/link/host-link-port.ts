/**
 * The board's end of the host link: a serial port (a PTY in the rig) carrying
 * host-link lines. Lines the host sends are checked and counted; waiting for a
 * message has a deadline and can be abandoned. The host is untrusted: a line
 * it left unfinished is dropped when its board resets it (`flush`), so that
 * it cannot swallow the clean agent's first line; and lines beyond a rate are
 * dropped and counted, so that a flood costs the board little. Lines that are
 * not messages are the host's console text: they go to a console log when
 * there is one.
 *
 * The port is reopened when its device goes away and comes back (a USB serial
 * adapter re-enumerating after a brown-out). While it is down, messages sent
 * are dropped and counted: the board repeats what matters.
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
import type { ConsoleLog } from "./console-log.js";
import { ReopeningSerialPort, type ReopenOptions } from "./reopening-serial-port.js";
import { TransportError } from "./transports.js";

export interface HostLinkPortOptions extends ReopenOptions {
  /** Where the host's lines that are not messages are kept; without one they are only counted. */
  consoleLog?: Pick<ConsoleLog, "write">;
}

export class HostLinkPort {
  private readonly port: ReopeningSerialPort;
  private readonly splitter: LineSplitter;
  private readonly consoleLog: Pick<ConsoleLog, "write"> | undefined;
  private readonly events = new EventEmitter();
  readonly counters = {
    received: 0,
    accepted: 0,
    /** Lines that are not messages (console text, or a malformed message). */
    malformed: 0,
    sent: 0,
    /** Messages not sent because the port was down. */
    dropped: 0,
    /** Unfinished lines dropped at a reset of the host or a reopen of the port. */
    flushed: 0,
    /** Lines beyond the rate, dropped unread. */
    flooded: 0,
  };
  private windowStartMs = 0;
  private windowLines = 0;

  constructor(
    private readonly device: string,
    baudRate: number,
    /** Lines read per second at most; the host agent sends a few. */
    private readonly maxLinesPerSecond = 200,
    options: HostLinkPortOptions = {},
  ) {
    this.consoleLog = options.consoleLog;
    this.splitter = new LineSplitter(MAX_HOST_LINE_BYTES, (line) => this.receive(line));
    this.port = new ReopeningSerialPort(
      device,
      baudRate,
      {
        data: (chunk) => this.splitter.push(chunk),
        // Half a line from before the loss must not prefix the first line after it.
        reopened: () => this.flush(),
      },
      options,
    );
  }

  /** Opens the port; rejects when its device cannot be opened now. Later losses are ridden out. */
  async open(): Promise<void> {
    // Half a line from before an earlier close is not the start of the next one.
    this.flush();
    try {
      await this.port.open();
    } catch (error) {
      throw new TransportError(
        `cannot open the host link on ${this.device}: ${(error as Error).message}`,
      );
    }
  }

  /** Whether the port is lost and being reopened. */
  get down(): boolean {
    return this.port.down;
  }

  /** Times the port was opened again after its device went away. */
  get reopened(): number {
    return this.port.counters.reopened;
  }

  /** The host is being reset (or released): whatever it left mid-line is not the next agent's. */
  flush(): void {
    if (this.splitter.reset()) this.counters.flushed++;
  }

  /** Bytes the host sent of a line it has not ended yet. */
  get unfinishedLineBytes(): number {
    return this.splitter.unfinishedBytes;
  }

  get oversized(): number {
    return this.splitter.oversized;
  }

  /** Sends `message`, or counts it as dropped when the port is down. */
  send(message: BoardToHost): void {
    if (this.port.write(encodeHostLine(message))) this.counters.sent++;
    else this.counters.dropped++;
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

  /** Closes the port and stops reopening it. */
  close(): Promise<void> {
    return this.port.close();
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
      this.consoleLog?.write(line);
      return;
    }
    this.counters.accepted++;
    this.events.emit("message", message);
  }
}
