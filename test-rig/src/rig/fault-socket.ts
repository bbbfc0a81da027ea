/**
 * The rig's fault socket: a Unix socket in the run folder (`rig.sock`) where
 * `smw rig fault` (or any script) sends one JSON request per line and reads one
 * JSON answer per line: `{"ok":true,"detail":...}` or `{"ok":false,"error":...}`.
 * Whatever arrives is checked before anything is done; nothing a client sends
 * can stop the rig.
 */
import { existsSync, unlinkSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { LineSplitter, type Testbed } from "@smw/wiring";
import { type FaultRequest, parseFaultRequest } from "./fault-requests.js";

/** Longest request line read; a request is a few hundred bytes. */
const MAX_LINE_BYTES = 16 * 1024;
/** Longest Unix socket path the kernel takes (sun_path less its terminator). */
const MAX_SOCKET_PATH_BYTES = 107;

export type FaultAnswer = { ok: true; detail: string } | { ok: false; error: string };

export class FaultSocket {
  private server: Server | undefined;
  private readonly clients = new Set<Socket>();

  constructor(
    readonly path: string,
    private readonly testbed: Testbed,
    /** Does the fault; returns what was done, throws (RangeError) when it cannot be done. */
    private readonly apply: (request: FaultRequest) => string | Promise<string>,
  ) {}

  async start(): Promise<void> {
    if (Buffer.byteLength(this.path) > MAX_SOCKET_PATH_BYTES)
      throw new RangeError(
        `${this.path}: too long for a Unix socket (at most ${MAX_SOCKET_PATH_BYTES} bytes): move the run folder`,
      );
    // Left by a rig that was killed: no rig runs on this testbed now (the setup checked).
    if (existsSync(this.path)) unlinkSync(this.path);
    const server = createServer((socket) => this.serve(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.path, () => {
        server.off("error", reject);
        resolve();
      });
    });
    server.on("error", () => {
      // A listening socket's later errors concern one client; the rig goes on.
    });
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const c of this.clients) c.destroy();
    if (server !== undefined) await new Promise<void>((resolve) => server.close(() => resolve()));
    try {
      unlinkSync(this.path);
    } catch {
      // Already gone.
    }
  }

  private serve(socket: Socket): void {
    this.clients.add(socket);
    socket.on("close", () => this.clients.delete(socket));
    socket.on("error", () => socket.destroy());
    // Answers go out in the order the requests came, each once its fault is done.
    let answered = Promise.resolve();
    // Bounded: a client that never sends a newline cannot fill the rig's memory.
    const lines = new LineSplitter(MAX_LINE_BYTES, (line) => {
      if (line.trim() === "") return;
      answered = answered
        .then(() => this.answer(line))
        .then((answer) => {
          if (socket.writable) socket.write(`${JSON.stringify(answer)}\n`);
        });
    });
    let refused = false;
    socket.on("data", (chunk: Buffer) => {
      lines.push(chunk);
      if (lines.oversized > 0 && !refused) {
        refused = true;
        answered = answered.then(() => {
          if (socket.writable)
            socket.end(
              `${JSON.stringify({ ok: false, error: `request line longer than ${MAX_LINE_BYTES} bytes` })}\n`,
            );
        });
      }
    });
  }

  private async answer(line: string): Promise<FaultAnswer> {
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      return { ok: false, error: "a fault request is one line of JSON" };
    }
    const parsed = parseFaultRequest(value, this.testbed);
    if ("error" in parsed) return { ok: false, error: parsed.error };
    try {
      return { ok: true, detail: await this.apply(parsed.request) };
    } catch (error) {
      return { ok: false, error: `fault ${parsed.request.fault}: ${(error as Error).message}` };
    }
  }
}

/** Sends one request to a rig's fault socket and waits for its answer (at most `timeoutMs`). */
export function sendFault(
  socketPath: string,
  request: Record<string, unknown>,
  timeoutMs = 5_000,
): Promise<FaultAnswer> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(socketPath);
    let received = "";
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`${socketPath}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.setEncoding("utf8");
    socket.on("connect", () => socket.write(`${JSON.stringify(request)}\n`));
    socket.on("data", (chunk: string) => {
      received += chunk;
      const newline = received.indexOf("\n");
      if (newline < 0) return;
      clearTimeout(timer);
      socket.end();
      try {
        resolve(JSON.parse(received.slice(0, newline)) as FaultAnswer);
      } catch {
        reject(new Error(`${socketPath}: the answer is not JSON`));
      }
    });
    socket.on("error", (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}
