/**
 * Transports of the control link: each delivers whole lines from peers and
 * sends lines to a peer. Serial: one port per peer (mesh, ring, star links)
 * or one shared bus. Ethernet: UDP datagrams, or TCP connections.
 */
import { createSocket, type Socket } from "node:dgram";
import { createConnection, createServer, type Server, type Socket as TcpSocket } from "node:net";
import { LineSplitter, MAX_CONTROL_FRAME_BYTES, type Testbed } from "@smw/wiring";
import { SerialPort } from "serialport";

export interface ControlTransport {
  readonly name: string;
  /** Sends one line (newline included) to a peer; never throws on a dead link. */
  send(peer: string, line: string): void;
  /** Opens the transport; lines arrive through `onLine`. */
  open(onLine: (line: string) => void): Promise<void>;
  close(): Promise<void>;
  /** Lines dropped for being too long, by the transport's splitter. */
  readonly oversized: number;
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

  constructor(
    private readonly address: string,
    private readonly port: number,
    private readonly peers: ReadonlyMap<string, { address: string; port: number }>,
  ) {}

  open(onLine: (line: string) => void): Promise<void> {
    const socket = createSocket({ type: this.address.includes(":") ? "udp6" : "udp4" });
    this.socket = socket;
    socket.on("message", (data) => {
      if (data.length > MAX_CONTROL_FRAME_BYTES + 1) {
        this.oversized++;
        return;
      }
      const text = data.toString("utf8");
      onLine(text.endsWith("\n") ? text.slice(0, -1) : text);
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

export class SerialLinksTransport implements ControlTransport {
  readonly name = "serial";
  private readonly ports = new Map<string, SerialPort>();
  private readonly splitters: LineSplitter[] = [];

  constructor(
    private readonly devices: ReadonlyMap<string, string>,
    private readonly baudRate: number,
  ) {}

  get oversized(): number {
    return this.splitters.reduce((sum, s) => sum + s.oversized, 0);
  }

  async open(onLine: (line: string) => void): Promise<void> {
    await Promise.all(
      [...this.devices].map(
        ([peer, device]) =>
          new Promise<void>((resolve, reject) => {
            const port = new SerialPort({ path: device, baudRate: this.baudRate, autoOpen: false });
            port.open((error) => {
              if (error) {
                reject(
                  new TransportError(
                    `cannot open the control link to ${peer} on ${device}: ${error.message}`,
                  ),
                );
                return;
              }
              const splitter = new LineSplitter(MAX_CONTROL_FRAME_BYTES, onLine);
              this.splitters.push(splitter);
              port.on("data", (chunk: Buffer) => splitter.push(chunk));
              port.on("error", () => {});
              this.ports.set(peer, port);
              resolve();
            });
          }),
      ),
    );
  }

  send(peer: string, line: string): void {
    const port = this.ports.get(peer);
    if (port === undefined || !port.isOpen) return;
    port.write(line, () => {});
  }

  async close(): Promise<void> {
    await Promise.all(
      [...this.ports.values()].map(
        (port) =>
          new Promise<void>((resolve) => {
            if (!port.isOpen) resolve();
            else port.close(() => resolve());
          }),
      ),
    );
    this.ports.clear();
  }
}

/**
 * TCP: each board listens on its address and keeps one outgoing connection
 * to every peer, reconnecting when it drops. Frames are authenticated, so an
 * incoming connection need not say who it is. A frame sent while a peer's
 * connection is down is lost, as a datagram would be; the heartbeats and the
 * silence bound notice a link that stays down.
 */
export class TcpTransport implements ControlTransport {
  readonly name = "tcp";
  private server: Server | undefined;
  private readonly outgoing = new Map<string, TcpSocket>();
  private readonly incoming = new Set<TcpSocket>();
  private readonly splitters: LineSplitter[] = [];
  private closed = false;

  constructor(
    private readonly address: string,
    private readonly port: number,
    private readonly peers: ReadonlyMap<string, { address: string; port: number }>,
    private readonly reconnectMs = 200,
  ) {}

  get oversized(): number {
    return this.splitters.reduce((sum, s) => sum + s.oversized, 0);
  }

  open(onLine: (line: string) => void): Promise<void> {
    const server = createServer((socket) => {
      this.incoming.add(socket);
      const splitter = new LineSplitter(MAX_CONTROL_FRAME_BYTES, onLine);
      this.splitters.push(splitter);
      socket.on("data", (chunk: Buffer) => splitter.push(chunk));
      socket.on("error", () => {});
      socket.on("close", () => this.incoming.delete(socket));
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
    for (const socket of [...this.outgoing.values(), ...this.incoming]) socket.destroy();
    this.outgoing.clear();
    const server = this.server;
    this.server = undefined;
    await new Promise<void>((resolve) =>
      server === undefined ? resolve() : server.close(() => resolve()),
    );
  }
}
