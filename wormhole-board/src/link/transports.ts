/**
 * Transports of the control link: each delivers whole lines from peers and
 * sends lines to a peer. Serial: one port per peer (mesh, ring, star links)
 * or one shared bus. Ethernet: UDP datagrams, or TCP connections.
 */
import { createSocket, type Socket } from "node:dgram";
import {
  createConnection,
  createServer,
  isIP,
  type Server,
  type Socket as TcpSocket,
} from "node:net";
import { LineSplitter, MAX_CONTROL_FRAME_BYTES, type Testbed } from "@smw/wiring";
import { ReopeningSerialPort, type ReopenOptions } from "./reopening-serial-port.js";

/**
 * Where a line came from, as far as the transport can tell: the peers that could have sent it
 * (the peer at the other end of a serial link; the peers with the sender's address), or
 * undefined when it cannot tell (peers named by host name). A frame whose sender is not among
 * them is refused however good its MAC: a peer speaks only on its own link.
 */
export type LineSource = ReadonlySet<string> | undefined;

export interface ControlTransport {
  readonly name: string;
  /** Sends one line (newline included) to a peer; never throws on a dead link. */
  send(peer: string, line: string): void;
  /** Opens the transport; lines arrive through `onLine`. */
  open(onLine: (line: string, source: LineSource) => void): Promise<void>;
  close(): Promise<void>;
  /** Lines dropped for being too long, by the transport's splitter. */
  readonly oversized: number;
}

/**
 * `inner` with only the lines `keep` says yes to sent: a lossy or selective link, for drills,
 * benchmarks and tests.
 */
export function filteredTransport(
  inner: ControlTransport,
  keep: (peer: string, line: string) => boolean,
): ControlTransport {
  return {
    name: inner.name,
    get oversized() {
      return inner.oversized;
    },
    open: (onLine) => inner.open(onLine),
    close: () => inner.close(),
    send: (peer, line) => {
      if (keep(peer, line)) inner.send(peer, line);
    },
  };
}

export class TransportError extends Error {
  override name = "TransportError";
}

export function transportFor(testbed: Testbed, boardId: string): ControlTransport {
  const board = testbed.boards.find((b) => b.id === boardId);
  if (board === undefined) throw new TransportError(`there is no board "${boardId}"`);
  const network = testbed.controlNetwork;
  if (board.control.kind === "ethernet") {
    const peers = new Map<string, { address: string; port: number }>();
    for (const peer of testbed.boards) {
      if (peer.id !== boardId && peer.control.kind === "ethernet")
        peers.set(peer.id, { address: peer.control.address, port: peer.control.port });
    }
    return network.transport === "tcp"
      ? new TcpTransport(board.control.address, board.control.port, peers)
      : new UdpTransport(board.control.address, board.control.port, peers);
  }
  if (board.control.kind === "bus" || (network.topology ?? "mesh") !== "mesh") {
    // Without a link to every peer, frames would need forwarding, which is not built.
    throw new TransportError(
      `the board daemon needs a serial mesh (a link to every peer); a ${network.topology} control network is not supported yet`,
    );
  }
  return new SerialLinksTransport(
    new Map(board.control.links.map((l) => [l.peer, l.device])),
    network.baud ?? 115200,
  );
}

export class UdpTransport implements ControlTransport {
  readonly name = "udp";
  private socket: Socket | undefined;
  oversized = 0;
  private readonly sources: SourceByAddress;

  constructor(
    private readonly address: string,
    private readonly port: number,
    private readonly peers: ReadonlyMap<string, { address: string; port: number }>,
  ) {
    this.sources = new SourceByAddress(peers);
  }

  open(onLine: (line: string, source: LineSource) => void): Promise<void> {
    const socket = createSocket({ type: this.address.includes(":") ? "udp6" : "udp4" });
    this.socket = socket;
    socket.on("message", (data, remote) => {
      if (data.length > MAX_CONTROL_FRAME_BYTES + 1) {
        this.oversized++;
        return;
      }
      const text = data.toString("utf8");
      onLine(text.endsWith("\n") ? text.slice(0, -1) : text, this.sources.of(remote.address));
    });
    return new Promise((resolve, reject) => {
      socket.once("error", (error: NodeJS.ErrnoException) =>
        reject(
          new TransportError(
            `cannot listen on udp ${this.address}:${this.port}: ${error.code === "EADDRINUSE" ? "the port is in use" : error.message}`,
          ),
        ),
      );
      socket.bind(this.port, this.address, () => {
        socket.removeAllListeners("error");
        socket.on("error", () => {});
        resolve();
      });
    });
  }

  send(peer: string, line: string): void {
    const to = this.peers.get(peer);
    if (to === undefined || this.socket === undefined) return;
    this.socket.send(line, to.port, to.address, () => {});
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket === undefined) resolve();
      else this.socket.close(() => resolve());
    });
  }
}

/**
 * One serial port per peer. A port whose device goes away (a USB serial adapter re-enumerating)
 * is reopened on its own; lines sent to its peer meanwhile are dropped and counted, as a lost
 * datagram would be.
 */
export class SerialLinksTransport implements ControlTransport {
  readonly name = "serial";
  private readonly ports = new Map<string, ReopeningSerialPort>();
  private readonly splitters: LineSplitter[] = [];
  /** Lines not sent because their peer's port was down. */
  dropped = 0;

  constructor(
    private readonly devices: ReadonlyMap<string, string>,
    private readonly baudRate: number,
    private readonly reopen: ReopenOptions = {},
  ) {}

  get oversized(): number {
    return this.splitters.reduce((sum, s) => sum + s.oversized, 0);
  }

  /** Times a port was opened again after its device went away, over all peers. */
  get reopened(): number {
    let sum = 0;
    for (const port of this.ports.values()) sum += port.counters.reopened;
    return sum;
  }

  /** The peers whose ports are lost and being reopened. */
  get downPeers(): string[] {
    return [...this.ports].filter(([, port]) => port.down).map(([peer]) => peer);
  }

  async open(onLine: (line: string, source: LineSource) => void): Promise<void> {
    const opened = await Promise.allSettled(
      [...this.devices].map(async ([peer, device]) => {
        const source = new Set([peer]);
        const splitter = new LineSplitter(MAX_CONTROL_FRAME_BYTES, (line) => onLine(line, source));
        const port = new ReopeningSerialPort(
          device,
          this.baudRate,
          {
            data: (chunk) => splitter.push(chunk),
            // Half a frame from before the loss must not prefix the first one after it.
            reopened: () => splitter.reset(),
          },
          this.reopen,
        );
        try {
          await port.open();
        } catch (error) {
          throw new TransportError(
            `cannot open the control link to ${peer} on ${device}: ${(error as Error).message}`,
          );
        }
        this.splitters.push(splitter);
        this.ports.set(peer, port);
      }),
    );
    const failed = opened.find((result) => result.status === "rejected");
    if (failed !== undefined) {
      // The links that did open are not left to reopen themselves behind a failed start.
      await this.close();
      throw failed.reason;
    }
  }

  send(peer: string, line: string): void {
    const port = this.ports.get(peer);
    if (port !== undefined && !port.write(line)) this.dropped++;
  }

  async close(): Promise<void> {
    await Promise.all([...this.ports.values()].map((port) => port.close()));
    this.ports.clear();
  }
}

/**
 * TCP: each board listens on its address and keeps one outgoing connection
 * to every peer, reconnecting when it drops. Frames are authenticated, so an
 * incoming connection need not say who it is; but only peers' addresses are
 * accepted, at most a few connections per peer are held (the one silent
 * longest makes room for a new one), and a connection silent for long is
 * closed. A frame sent while a peer's connection is down is lost, as a
 * datagram would be; the heartbeats and the silence bound notice a link that
 * stays down.
 */
export class TcpTransport implements ControlTransport {
  readonly name = "tcp";
  private server: Server | undefined;
  private readonly outgoing = new Map<string, TcpSocket>();
  /** Incoming connections, each with its splitter and when it last delivered anything. */
  private readonly incoming = new Map<TcpSocket, { splitter: LineSplitter; lastMs: number }>();
  private oversizedClosed = 0;
  private closed = false;
  private readonly sources: SourceByAddress;
  /** Incoming connections refused for coming from an address no peer has. */
  refused = 0;

  constructor(
    private readonly address: string,
    private readonly port: number,
    private readonly peers: ReadonlyMap<string, { address: string; port: number }>,
    private readonly reconnectMs = 200,
    /** An incoming connection that delivers nothing for this long is closed. */
    private readonly idleMs = 30_000,
  ) {
    this.sources = new SourceByAddress(peers);
  }

  get oversized(): number {
    let sum = this.oversizedClosed;
    for (const { splitter } of this.incoming.values()) sum += splitter.oversized;
    return sum;
  }

  /** Incoming connections held now. */
  get connections(): number {
    return this.incoming.size;
  }

  /** At most this many incoming connections: a reconnect or two per peer. */
  get maxConnections(): number {
    return 2 * this.peers.size + 2;
  }

  open(onLine: (line: string, source: LineSource) => void): Promise<void> {
    const server = createServer((socket) => {
      const source = this.sources.of(socket.remoteAddress ?? "");
      if (source !== undefined && source.size === 0) {
        this.refused++;
        socket.destroy();
        return;
      }
      if (this.incoming.size >= this.maxConnections) this.dropStalest();
      const entry = {
        splitter: new LineSplitter(MAX_CONTROL_FRAME_BYTES, (line) => onLine(line, source)),
        lastMs: 0,
      };
      entry.lastMs = performance.now();
      this.incoming.set(socket, entry);
      socket.setTimeout(this.idleMs, () => socket.destroy());
      socket.on("data", (chunk: Buffer) => {
        entry.lastMs = performance.now();
        entry.splitter.push(chunk);
      });
      socket.on("error", () => {});
      socket.on("close", () => {
        if (this.incoming.delete(socket)) this.oversizedClosed += entry.splitter.oversized;
      });
    });
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once("error", (error: NodeJS.ErrnoException) =>
        reject(
          new TransportError(
            `cannot listen on tcp ${this.address}:${this.port}: ${error.code === "EADDRINUSE" ? "the port is in use" : error.message}`,
          ),
        ),
      );
      server.listen(this.port, this.address, () => {
        server.removeAllListeners("error");
        server.on("error", () => {});
        for (const peer of this.peers.keys()) this.connect(peer);
        resolve();
      });
    });
  }

  private dropStalest(): void {
    let stalest: TcpSocket | undefined;
    let stalestMs = Number.POSITIVE_INFINITY;
    for (const [socket, { lastMs }] of this.incoming)
      if (lastMs < stalestMs) [stalest, stalestMs] = [socket, lastMs];
    if (stalest === undefined) return;
    const entry = this.incoming.get(stalest);
    this.incoming.delete(stalest);
    if (entry !== undefined) this.oversizedClosed += entry.splitter.oversized;
    stalest.destroy();
  }

  private connect(peer: string): void {
    const to = this.peers.get(peer);
    if (to === undefined || this.closed) return;
    const socket = createConnection({ host: to.address, port: to.port });
    socket.setNoDelay(true);
    socket.on("connect", () => this.outgoing.set(peer, socket));
    socket.on("error", () => {});
    socket.on("close", () => {
      if (this.outgoing.get(peer) === socket) this.outgoing.delete(peer);
      if (!this.closed) setTimeout(() => this.connect(peer), this.reconnectMs).unref();
    });
  }

  send(peer: string, line: string): void {
    const socket = this.outgoing.get(peer);
    if (socket !== undefined && !socket.destroyed) socket.write(line);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const socket of [...this.outgoing.values(), ...this.incoming.keys()]) socket.destroy();
    this.outgoing.clear();
    const server = this.server;
    this.server = undefined;
    await new Promise<void>((resolve) =>
      server === undefined ? resolve() : server.close(() => resolve()),
    );
  }
}

/** The peers configured at each address; undefined for every address when a peer has a host name. */
class SourceByAddress {
  private readonly byAddress: Map<string, Set<string>> | undefined;
  private static readonly NONE: ReadonlySet<string> = new Set();

  constructor(peers: ReadonlyMap<string, { address: string }>) {
    const entries = [...peers].map(([peer, { address }]) => [peer, normalAddress(address)]);
    if (!entries.every(([, address]) => isIP(address as string) !== 0)) return;
    this.byAddress = new Map();
    for (const [peer, address] of entries as Array<[string, string]>) {
      const set = this.byAddress.get(address) ?? new Set<string>();
      set.add(peer);
      this.byAddress.set(address, set);
    }
  }

  of(address: string): LineSource {
    if (this.byAddress === undefined) return undefined;
    return this.byAddress.get(normalAddress(address)) ?? SourceByAddress.NONE;
  }
}

/** "::ffff:127.0.0.1" and "127.0.0.1" are one address. */
function normalAddress(address: string): string {
  return address.startsWith("::ffff:") ? address.slice(7) : address;
}
