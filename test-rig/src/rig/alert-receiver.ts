/** A local webhook receiver: where the rig's boards send their fail-safe alerts, and what drills count. */
import { createServer, type Server } from "node:http";
import type { RigEventSink } from "./rig-events.js";

export interface ReceivedAlert {
  atWallMs: number;
  board: string;
  reason: string;
  body: unknown;
}

export class AlertReceiver {
  private server: Server | undefined;
  readonly received: ReceivedAlert[] = [];
  url = "";

  constructor(private readonly events: RigEventSink) {}

  async start(): Promise<void> {
    const server = createServer((request, response) => {
      let text = "";
      request.setEncoding("utf8");
      request.on("data", (chunk: string) => {
        text += chunk;
        if (text.length > 64 * 1024) request.destroy();
      });
      request.on("end", () => {
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          response.writeHead(400).end();
          return;
        }
        const b = body as { board?: unknown; failsafe?: { reason?: unknown } };
        const alert: ReceivedAlert = {
          atWallMs: Date.now(),
          board: typeof b.board === "string" ? b.board : "?",
          reason: typeof b.failsafe?.reason === "string" ? b.failsafe.reason : "?",
          body,
        };
        this.received.push(alert);
        this.events.emit({ kind: "alert", board: alert.board, detail: alert.reason });
        response.writeHead(204).end();
      });
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    const address = server.address();
    if (address === null || typeof address === "string") throw new Error("no address");
    this.url = `http://127.0.0.1:${address.port}/smw-alert`;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server !== undefined) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  }
}
