/**
 * The rig seen live in a browser: one page (`live-page.ts`), the rig's event stream pushed to it
 * as server-sent events (every event so far first, then each as it happens), the testbed's shape
 * for drawing, and, when started with faults allowed, the faults `smw rig fault` knows, checked
 * and refused alike. Loopback by default; read-only unless faults are allowed.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Testbed } from "@smw/wiring";
import { FAULTS, type FaultRequest, parseFaultRequest } from "../rig/fault-requests.js";
import type { RigEventStream, StampedEvent } from "../rig/rig-events.js";
import { LIVE_PAGE_HTML } from "./live-page.js";

export interface LiveServerOptions {
  host?: string;
  /** 0: any free port. */
  port?: number;
  /** Does a fault, as `smw rig fault` would; absent: the page cannot inject faults. */
  faults?: (request: FaultRequest) => Promise<string>;
}

const MAX_CLIENTS = 16;
const MAX_BODY_BYTES = 4096;
/** Events a page that connects late is given first (the newest). */
const REPLAY_EVENTS = 5000;
const KEEPALIVE_MS = 15_000;

export class LiveServer {
  private server: Server | undefined;
  private readonly clients = new Set<ServerResponse>();
  private off: (() => void) | undefined;
  private keepalive: NodeJS.Timeout | undefined;

  constructor(
    private readonly events: RigEventStream,
    private readonly testbed: Testbed,
    private readonly options: LiveServerOptions = {},
  ) {}

  /** Listens; resolves with the page's address. */
  async start(): Promise<string> {
    const server = createServer((request, response) => this.serve(request, response));
    server.headersTimeout = 5_000;
    server.requestTimeout = 0; // The event stream stays open.
    this.server = server;
    const host = this.options.host ?? "127.0.0.1";
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.options.port ?? 0, host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    this.off = this.events.on((event) => this.push(event));
    this.keepalive = setInterval(() => {
      for (const client of this.clients) client.write(": keepalive\n\n");
    }, KEEPALIVE_MS);
    this.keepalive.unref();
    const { port } = server.address() as AddressInfo;
    return `http://${host.includes(":") ? `[${host}]` : host}:${port}/`;
  }

  async stop(): Promise<void> {
    this.off?.();
    clearInterval(this.keepalive);
    for (const client of this.clients) client.end();
    this.clients.clear();
    const server = this.server;
    this.server = undefined;
    if (server !== undefined) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  }

  private serve(request: IncomingMessage, response: ServerResponse): void {
    const pathname = (request.url ?? "/").split("?")[0];
    if (request.method === "GET" && pathname === "/") {
      response.writeHead(200, {
        "content-type": "text/html; charset=utf-8",
        "content-security-policy":
          "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'",
      });
      response.end(LIVE_PAGE_HTML);
      return;
    }
    if (request.method === "GET" && pathname === "/testbed.json") {
      this.json(response, 200, this.shape());
      return;
    }
    if (request.method === "GET" && pathname === "/events") {
      this.subscribe(response);
      return;
    }
    if (request.method === "POST" && pathname === "/fault") {
      void this.fault(request, response);
      return;
    }
    this.json(response, 404, { ok: false, error: `nothing at ${request.method} ${pathname}` });
  }

  /** What the page draws from: boards and their hosts, the groups, the budgets, the faults. */
  private shape(): unknown {
    const t = this.testbed;
    return {
      name: t.name,
      boards: t.boards.map((b) => ({ id: b.id, host: b.guards })),
      groups: t.rejuvenation.groups,
      tPMs: t.rejuvenation.tPMs,
      tDMs: t.rejuvenation.tDMs,
      budgets: t.rejuvenation.budgets,
      faults: this.options.faults === undefined ? {} : FAULTS,
    };
  }

  private subscribe(response: ServerResponse): void {
    if (this.clients.size >= MAX_CLIENTS) {
      this.json(response, 503, { ok: false, error: `at most ${MAX_CLIENTS} pages at once` });
      return;
    }
    response.writeHead(200, {
      "content-type": "text/event-stream",
      "cache-control": "no-store",
      connection: "keep-alive",
    });
    response.write("retry: 1000\n\n");
    for (const event of this.events.all.slice(-REPLAY_EVENTS)) response.write(frame(event));
    this.clients.add(response);
    response.on("close", () => this.clients.delete(response));
  }

  private push(event: StampedEvent): void {
    const text = frame(event);
    for (const client of this.clients) client.write(text);
  }

  private async fault(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const apply = this.options.faults;
    if (apply === undefined) {
      this.json(response, 403, {
        ok: false,
        error: "faults from the page are off: start the rig with --live-faults",
      });
      return;
    }
    // JSON only: a page of another origin cannot send it without the browser asking first.
    if (!(request.headers["content-type"] ?? "").startsWith("application/json")) {
      this.json(response, 415, { ok: false, error: "a fault request is application/json" });
      return;
    }
    let body = "";
    let tooLong = false;
    for await (const chunk of request) {
      body += chunk;
      if (body.length > MAX_BODY_BYTES) {
        tooLong = true;
        break;
      }
    }
    if (tooLong) {
      this.json(response, 413, {
        ok: false,
        error: `a fault request is at most ${MAX_BODY_BYTES} bytes`,
      });
      return;
    }
    let value: unknown;
    try {
      value = JSON.parse(body);
    } catch {
      this.json(response, 400, { ok: false, error: "a fault request is a JSON object" });
      return;
    }
    const parsed = parseFaultRequest(value, this.testbed);
    if ("error" in parsed) {
      this.json(response, 400, { ok: false, error: parsed.error });
      return;
    }
    try {
      this.json(response, 200, { ok: true, detail: await apply(parsed.request) });
    } catch (error) {
      this.json(response, 409, { ok: false, error: (error as Error).message });
    }
  }

  private json(response: ServerResponse, status: number, value: unknown): void {
    response.writeHead(status, { "content-type": "application/json" });
    response.end(`${JSON.stringify(value)}\n`);
  }
}

function frame(event: StampedEvent): string {
  return `data: ${JSON.stringify(event)}\n\n`;
}
