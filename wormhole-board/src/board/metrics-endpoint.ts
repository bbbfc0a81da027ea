/**
 * The board's metrics over HTTP: `GET /metrics` in Prometheus's text format, nothing else. It
 * reads and never acts, so it carries no authentication: bind it to the management network. A
 * scraper that holds connections open is bounded (a few connections, short timeouts): it cannot
 * take the board's event loop or memory.
 */
import { createServer, type Server } from "node:http";
import { TransportError } from "../link/transports.js";
import type { BoardMetrics } from "./board-metrics.js";

const MAX_CONNECTIONS = 8;
const TIMEOUT_MS = 5_000;
/** A scrape is rendered at most this often, however many requests come (Prometheus scrapes every 15 s or so). */
const CACHE_MS = 1_000;

export function listenForMetrics(
  metrics: BoardMetrics,
  endpoint: { host: string; port: number },
): Promise<Server> {
  let cached: { atMs: number; scrape: Promise<{ contentType: string; text: string }> } | undefined;
  const scrape = () => {
    const nowMs = performance.now();
    if (cached === undefined || nowMs - cached.atMs > CACHE_MS)
      cached = { atMs: nowMs, scrape: metrics.scrape() };
    return cached.scrape;
  };
  const server = createServer((request, response) => {
    // One request per connection: pipelined requests cannot queue work on the event loop.
    response.setHeader("connection", "close");
    const pathname = (request.url ?? "").split("?")[0];
    if (pathname !== "/metrics") {
      response.writeHead(404, { "content-type": "text/plain" }).end("only /metrics is served\n");
      return;
    }
    if (request.method !== "GET" && request.method !== "HEAD") {
      response.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain" }).end();
      return;
    }
    scrape().then(
      ({ contentType, text }) => {
        response.writeHead(200, { "content-type": contentType });
        response.end(request.method === "HEAD" ? undefined : text);
      },
      (error: Error) => {
        response.writeHead(500, { "content-type": "text/plain" }).end(`${error.message}\n`);
      },
    );
  });
  server.maxConnections = MAX_CONNECTIONS;
  server.maxRequestsPerSocket = 1;
  server.requestTimeout = TIMEOUT_MS;
  server.headersTimeout = TIMEOUT_MS;
  server.keepAliveTimeout = TIMEOUT_MS;
  server.on("clientError", (_error, socket) => socket.destroy());
  return new Promise((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) =>
      reject(
        new TransportError(
          `cannot serve metrics on http://${endpoint.host}:${endpoint.port}/metrics: ${error.code === "EADDRINUSE" ? "the port is in use" : error.message}`,
        ),
      ),
    );
    server.listen(endpoint.port, endpoint.host, () => resolve(server));
  });
}
