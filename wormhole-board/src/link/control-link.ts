/**
 * The control link of one board: frames out to every peer, numbered and
 * authenticated; frames in checked (shape, addressee, MAC, replay, message)
 * and counted by what was wrong with them. Nothing a peer sends can throw
 * out of here.
 */
import {
  type ControlMessage,
  controlMessageBody,
  decodeControlFrame,
  encodeControlFrame,
  parseControlMessage,
  ReplayGuard,
} from "@smw/wiring";
import type { ControlTransport, LineSource } from "./transports.js";

export interface LinkCounters {
  received: number;
  accepted: number;
  sent: number;
  oversized: number;
  malformed: number;
  notForUs: number;
  unknownSender: number;
  /** Authentic frames that came over another peer's link or address: relayed or misrouted. */
  wrongLink: number;
  forged: number;
  replayed: number;
  badMessage: number;
}

export interface ControlLinkHandlers {
  message(from: string, message: ControlMessage): void;
  /** A frame that claimed to come from `from` (when it said so) failed authentication. */
  authFailure(from: string | undefined): void;
}

export class ControlLink {
  private readonly seq = new Map<string, number>();
  private readonly replay: ReplayGuard;
  readonly counters: LinkCounters = {
    received: 0,
    accepted: 0,
    sent: 0,
    oversized: 0,
    malformed: 0,
    notForUs: 0,
    unknownSender: 0,
    wrongLink: 0,
    forged: 0,
    replayed: 0,
    badMessage: 0,
  };

  constructor(
    private readonly self: string,
    private readonly keys: ReadonlyMap<string, Uint8Array>,
    /** This board's boot epoch (`BoardStateFiles.nextEpoch`): frames of an earlier boot are replays. */
    readonly epoch: number,
    private readonly transport: ControlTransport,
    /**
     * Peers' boot epochs kept across restarts of this board (its state folder): a frame recorded
     * from an earlier boot of a peer stays a replay after this board restarts.
     */
    peerEpochs?: { known: ReadonlyMap<string, number>; record(peer: string, epoch: number): void },
  ) {
    this.replay = new ReplayGuard(64, peerEpochs?.known, (peer, epoch) =>
      peerEpochs?.record(peer, epoch),
    );
  }

  open(handlers: ControlLinkHandlers): Promise<void> {
    return this.transport.open((line, source) => this.receive(line, source, handlers));
  }

  close(): Promise<void> {
    return this.transport.close();
  }

  broadcast(message: ControlMessage): void {
    for (const peer of this.keys.keys()) this.send(peer, message);
  }

  send(peer: string, message: ControlMessage): void {
    const key = this.keys.get(peer);
    if (key === undefined) return;
    const seq = (this.seq.get(peer) ?? 0) + 1;
    this.seq.set(peer, seq);
    const line = encodeControlFrame(
      {
        from: this.self,
        to: peer,
        epoch: this.epoch,
        seq,
        type: message.type,
        body: controlMessageBody(message),
      },
      key,
    );
    this.transport.send(peer, line);
    this.counters.sent++;
  }

  private receive(line: string, source: LineSource, handlers: ControlLinkHandlers): void {
    this.counters.received++;
    try {
      const result = decodeControlFrame(line, this.self, (peer) => this.keys.get(peer));
      if (!result.ok) {
        switch (result.reason) {
          case "oversized":
            this.counters.oversized++;
            return;
          case "malformed":
            this.counters.malformed++;
            return;
          case "not-for-us":
            this.counters.notForUs++;
            return;
          case "unknown-sender":
            this.counters.unknownSender++;
            return;
          case "forged":
            this.counters.forged++;
            handlers.authFailure(result.from);
            return;
          case "replayed":
            this.counters.replayed++;
            return;
        }
      }
      const { frame } = result;
      if (source !== undefined && !source.has(frame.from)) {
        this.counters.wrongLink++;
        return;
      }
      if (!this.replay.accept(frame.from, frame.epoch, frame.seq)) {
        this.counters.replayed++;
        return;
      }
      const message = parseControlMessage(frame.type, frame.body);
      if (message === undefined) {
        this.counters.badMessage++;
        return;
      }
      this.counters.accepted++;
      handlers.message(frame.from, message);
    } catch {
      // Defence in depth: a bug in parsing is a dropped frame, never a dead board.
      this.counters.malformed++;
    }
  }

  get transportOversized(): number {
    return this.transport.oversized;
  }
}
