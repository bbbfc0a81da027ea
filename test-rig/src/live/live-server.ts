/**
 * The rig seen live in a browser: one page (`live-page.ts`), the current run's event stream pushed
 * to it as server-sent events (every event so far first, then each as it happens), and, once the
 * run has ended, its report (the summary, the timings, the timeline, the report's files). One
 * server follows the runs of one command in turn (a calibration, then the demo; one drill after
 * another). When started with faults allowed, the faults `smw rig fault` knows, checked and
 * refused alike. Loopback by default; read-only unless faults are allowed.
 */
import { existsSync, readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { groupSlackMs, type Testbed, tLocalexecFromBudgets } from "@smw/wiring";
import type { StepStats } from "../report/step-stats.js";
import { FAULTS, type FaultRequest, parseFaultRequest } from "../rig/fault-requests.js";
import type { RigEventStream, StampedEvent } from "../rig/rig-events.js";
import { LIVE_PAGE_HTML } from "./live-page.js";

export interface LiveServerOptions {
  host?: string;
  /** 0: any free port. */
  port?: number;
  /** The page's fault buttons work (on a run that takes faults). */
  faults?: boolean;
}

/** A run the page follows. */
export interface LiveRun {
  title: string;
  events: RigEventStream;
  testbed: Testbed;
  /** Does a fault, as `smw rig fault` would; absent: this run takes none from the page. */
  inject?: (request: FaultRequest) => Promise<string>;
}

/** What the page shows once a run has ended. */
export interface LiveReport {
  title: string;
  /** Each promise the run kept or broke. */
  promises: ReadonlyArray<{ name: string; held: boolean; detail: string }>;
  /** One row per step (none for a drill). */
  stats: readonly StepStats[];
  /** More lines of the verdict (a drill's detail, the fail-safe state). */
  lines: readonly string[];
  /** The report's folder: its files are linked from the page. */
  folder: string;
}

/** The report's files the page links to, when the folder has them. */
const REPORT_FILES: Record<string, string> = {
  "summary.txt": "text/plain; charset=utf-8",
  "timings.csv": "text/csv; charset=utf-8",
  "events.jsonl": "application/x-ndjson; charset=utf-8",
  "plan.txt": "text/plain; charset=utf-8",
  "bounds.yaml": "text/plain; charset=utf-8",
  "history.jsonl": "application/x-ndjson; charset=utf-8",
  "timeline.svg": "image/svg+xml",
};

const MAX_CLIENTS = 16;
const MAX_BODY_BYTES = 4096;
/** Events a page that connects late is given first (the newest). */
const REPLAY_EVENTS = 5000;
const KEEPALIVE_MS = 15_000;
/**
 * What may wait for one page that does not read, at most: well above a whole replay
 * (REPLAY_EVENTS of a few hundred bytes each), so a page still reading its replay is kept.
 */
const MAX_QUEUED_BYTES = 16 * 1024 * 1024;

export class LiveServer {
  private server: Server | undefined;
  private readonly clients = new Set<ServerResponse>();
  private run: LiveRun | undefined;
  private off: (() => void) | undefined;
  private finished: LiveReport | undefined;
  /** How many of the run's events there were at its report: a page replays no more. */
  private endedAt: number | undefined;
  private keepalive: NodeJS.Timeout | undefined;
  /** The Host headers a request may carry: this server's address and port. */
  private hosts = new Set<string>();

  constructor(private readonly options: LiveServerOptions = {}) {}

  /** Pages following the event stream now. */
  get pages(): number {
    return this.clients.size;
  }

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
    this.keepalive = setInterval(() => this.broadcast(": keepalive\n\n"), KEEPALIVE_MS);
    this.keepalive.unref();
    const { port } = server.address() as AddressInfo;
    const named = host.includes(":") ? `[${host}]` : host;
    this.hosts = new Set([`${named}:${port}`.toLowerCase()]);
    if (host === "127.0.0.1" || host === "::1") {
      this.hosts.add(`localhost:${port}`);
      this.hosts.add(`127.0.0.1:${port}`);
      this.hosts.add(`[::1]:${port}`);
    }
    return `http://${named}:${port}/`;
  }

  /** From now on the page follows `run`: open pages start over with it. */
  follow(run: LiveRun): void {
    this.off?.();
    this.run = run;
    this.finished = undefined;
    this.endedAt = undefined;
    this.broadcast(this.runFrame());
    this.off = run.events.on((event) => this.broadcast(dataFrame(event)));
  }

  /** The run followed has ended: the page shows its report (and takes no more faults). */
  report(report: LiveReport): void {
    this.off?.();
    this.off = undefined;
    this.finished = report;
    this.endedAt = this.run?.events.all.length;
    this.broadcast(`event: report\ndata: ${JSON.stringify(this.reportJson())}\n\n`);
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
    // Only under the name it was reached by: another site's name rebound to this address
    // (DNS rebinding) would otherwise be this origin, free to read the page and post faults.
    if (!this.hosts.has((request.headers.host ?? "").toLowerCase())) {
      this.json(response, 403, {
        ok: false,
        error: `no page here for host ${JSON.stringify(request.headers.host ?? "")}`,
      });
      return;
    }
    const pathname = (request.url ?? "/").split("?")[0] ?? "/";
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
      if (this.run === undefined) this.json(response, 503, { ok: false, error: "no run yet" });
      else this.json(response, 200, this.shape(this.run));
      return;
    }
    if (request.method === "GET" && pathname === "/report.json") {
      if (this.finished === undefined)
        this.json(response, 404, { ok: false, error: "the run has not ended" });
      else this.json(response, 200, this.reportJson());
      return;
    }
    if (request.method === "GET" && pathname.startsWith("/report/")) {
      this.reportFile(pathname.slice("/report/".length), response);
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
  private shape(run: LiveRun): unknown {
    const t = run.testbed;
    return {
      title: run.title,
      name: t.name,
      boards: t.boards.map((b) => ({ id: b.id, host: b.guards })),
      groups: t.rejuvenation.groups,
      tPMs: t.rejuvenation.tPMs,
      tDMs: t.rejuvenation.tDMs,
      budgets: t.rejuvenation.budgets,
      // Each group's slot in the static schedule, and its deadline past the slot's end, as the
      // boards reckon them (paper 3.3): the page draws Figure 3 from them.
      slotMs:
        tLocalexecFromBudgets(t.rejuvenation.budgets) +
        t.controlNetwork.deliveryBoundMs +
        groupSlackMs(t.timeliness.procMaxMs),
      deadlineAfterSlotMs: t.timeliness.clockOffsetBoundMs,
      faults: this.options.faults === true && run.inject !== undefined ? FAULTS : {},
    };
  }

  private reportJson(): unknown {
    const r = this.finished as LiveReport;
    return {
      title: r.title,
      promises: r.promises,
      stats: r.stats,
      lines: r.lines,
      files: Object.keys(REPORT_FILES).filter((name) => existsSync(path.join(r.folder, name))),
    };
  }

  /** One of the report's files, by its name only: nothing else of the folder, or outside it. */
  private reportFile(name: string, response: ServerResponse): void {
    const type = REPORT_FILES[name];
    const folder = this.finished?.folder;
    if (type === undefined || folder === undefined || !existsSync(path.join(folder, name))) {
      this.json(response, 404, { ok: false, error: `no report file ${name}` });
      return;
    }
    response.writeHead(200, {
      "content-type": type,
      // An SVG opened on its own would run its scripts: never as this origin.
      "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox",
    });
    response.end(readFileSync(path.join(folder, name)));
  }

  private runFrame(): string {
    return `event: run\ndata: ${JSON.stringify(this.shape(this.run as LiveRun))}\n\n`;
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
    if (this.run !== undefined) {
      response.write(this.runFrame());
      const events = this.run.events.all.slice(0, this.endedAt);
      for (const event of events.slice(-REPLAY_EVENTS)) response.write(dataFrame(event));
    }
    // What follows is pushed as it happens.
    response.write("event: caught-up\ndata: {}\n\n");
    if (this.finished !== undefined)
      response.write(`event: report\ndata: ${JSON.stringify(this.reportJson())}\n\n`);
    this.clients.add(response);
    response.on("close", () => this.clients.delete(response));
  }

  private broadcast(text: string): void {
    for (const client of this.clients) {
      // A page that stops reading is dropped, not buffered for without end; it reconnects and is
      // replayed what it missed.
      if (client.writableLength > MAX_QUEUED_BYTES) {
        this.clients.delete(client);
        client.destroy();
        continue;
      }
      client.write(text);
    }
  }

  private async fault(request: IncomingMessage, response: ServerResponse): Promise<void> {
    if (this.options.faults !== true) {
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
    const run = this.run;
    if (run?.inject === undefined || this.finished !== undefined) {
      this.json(response, 409, {
        ok: false,
        error:
          run === undefined || this.finished !== undefined
            ? "no run is going on: nothing to inject a fault into"
            : `${run.title} takes no faults from the page`,
      });
      return;
    }
    const parsed = parseFaultRequest(value, run.testbed);
    if ("error" in parsed) {
      this.json(response, 400, { ok: false, error: parsed.error });
      return;
    }
    try {
      this.json(response, 200, { ok: true, detail: await run.inject(parsed.request) });
    } catch (error) {
      this.json(response, 409, { ok: false, error: (error as Error).message });
    }
  }

  private json(response: ServerResponse, status: number, value: unknown): void {
    response.writeHead(status, { "content-type": "application/json" });
    response.end(`${JSON.stringify(value)}\n`);
  }
}

function dataFrame(event: StampedEvent): string {
  return `data: ${JSON.stringify(event)}\n\n`;
}
