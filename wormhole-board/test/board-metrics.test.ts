/**
 * The board's Prometheus figures and the endpoint that serves them: gauges read from the status
 * at each scrape, step durations and trigger lateness observed once, only GET /metrics served,
 * and a port in use named as such.
 */
import type { Server } from "node:http";
import { type AddressInfo, connect } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import type { BoardStatus } from "../src/board/board-daemon.js";
import { BoardMetrics } from "../src/board/board-metrics.js";
import { listenForMetrics } from "../src/board/metrics-endpoint.js";

function statusOf(overrides: Partial<BoardStatus> = {}): BoardStatus {
  return {
    board: "b2",
    host: "h2",
    phase: "running",
    updatedAtMs: 0,
    period: 3,
    lastSteps: [],
    link: {
      received: 10,
      accepted: 8,
      sent: 9,
      oversized: 0,
      malformed: 1,
      notForUs: 0,
      unknownSender: 0,
      wrongLink: 0,
      forged: 1,
      replayed: 0,
      badMessage: 0,
    },
    maxTimerLatenessMs: 1.25,
    ...overrides,
  };
}

const servers: Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0))
    await new Promise<void>((resolve) => server.close(() => resolve()));
});

describe("the board's metrics", () => {
  it("reads phase, fail-safe, period and link counters from the status at each scrape", async () => {
    let status = statusOf();
    const metrics = new BoardMetrics("b2", () => status);
    let text = (await metrics.scrape()).text;
    expect(text).toContain('smw_board_phase{phase="running",board="b2"} 1');
    expect(text).toContain('smw_board_phase{phase="failsafe",board="b2"} 0');
    expect(text).toContain('smw_board_failsafe{board="b2"} 0');
    expect(text).toContain('smw_board_period{board="b2"} 3');
    expect(text).toContain('smw_board_timer_lateness_max_seconds{board="b2"} 0.00125');
    expect(text).toContain('smw_board_link_frames_total{outcome="forged",board="b2"} 1');
    expect(text).toContain('smw_board_link_frames_total{outcome="accepted",board="b2"} 8');
    // No lease issued yet.
    expect(text).toContain('smw_board_key_lease_renewing{board="b2"} 0');
    expect(text).toContain('smw_board_key_lease_seconds_left{board="b2"} 0');
    expect(text).toContain('smw_board_stopping{board="b2"} 0');
    status = statusOf({ updatedAtMs: 10_000, keyLease: { renewing: true, lapsesAtMs: 11_500 } });
    text = (await metrics.scrape()).text;
    expect(text).toContain('smw_board_key_lease_renewing{board="b2"} 1');
    expect(text).toContain('smw_board_key_lease_seconds_left{board="b2"} 1.5');
    // Stopping: no more leases, the host runs until the last one lapsed.
    status = statusOf({
      updatedAtMs: 10_500,
      keyLease: { renewing: false, lapsesAtMs: 11_500 },
      stopping: { sinceMs: 10_400 },
    });
    text = (await metrics.scrape()).text;
    expect(text).toContain('smw_board_stopping{board="b2"} 1');
    expect(text).toContain('smw_board_key_lease_seconds_left{board="b2"} 1');

    status = statusOf({
      phase: "failsafe",
      failsafe: { reason: "silence of b3", sinceMs: 5, origin: "b2" },
      link: { ...statusOf().link, accepted: 20 },
    });
    text = (await metrics.scrape()).text;
    expect(text).toContain('smw_board_phase{phase="failsafe",board="b2"} 1');
    expect(text).toContain('smw_board_phase{phase="running",board="b2"} 0');
    expect(text).toContain('smw_board_failsafe{board="b2"} 1');
    // Counters are the link's own totals, not added up across scrapes.
    expect(text).toContain('smw_board_link_frames_total{outcome="accepted",board="b2"} 20');
  });

  it("observes each step against its budget, and each trigger's lateness, once", async () => {
    const metrics = new BoardMetrics("b2", () => statusOf());
    metrics.observeTrigger(0.4);
    metrics.observeSteps([
      {
        period: 3,
        step: "boot",
        plannedMs: 0,
        startMs: 100,
        endMs: 1600,
        budgetMs: 4000,
        verdict: "ok",
      },
      { period: 3, step: "restoreSM", plannedMs: 0, budgetMs: 2000, verdict: "skipped" },
      {
        period: 3,
        step: "transfer",
        plannedMs: 0,
        startMs: 0,
        endMs: 9000,
        budgetMs: 8000,
        verdict: "over-budget",
      },
    ]);
    const text = (await metrics.scrape()).text;
    expect(text).toContain('smw_board_step_duration_seconds_count{board="b2",step="boot"} 1');
    expect(text).toContain('smw_board_step_duration_seconds_sum{board="b2",step="boot"} 1.5');
    expect(text).toContain(
      'smw_board_step_duration_seconds_bucket{le="2.5",board="b2",step="boot"} 1',
    );
    expect(text).toContain('smw_board_step_budget_seconds{step="boot",board="b2"} 4');
    expect(text).toContain(
      'smw_board_steps_total{step="transfer",verdict="over-budget",board="b2"} 1',
    );
    expect(text).toContain(
      'smw_board_steps_total{step="restoreSM",verdict="skipped",board="b2"} 1',
    );
    // A skipped step has no duration to observe.
    expect(text).not.toContain(
      'smw_board_step_duration_seconds_count{board="b2",step="restoreSM"}',
    );
    expect(text).toContain('smw_board_trigger_lateness_seconds_count{board="b2"} 1');
    expect(text).toContain('smw_board_trigger_lateness_seconds_bucket{le="0.0005",board="b2"} 1');
  });

  it("serves GET /metrics only, and names a port in use", async () => {
    const metrics = new BoardMetrics("b2", () => statusOf());
    const server = await listenForMetrics(metrics, { host: "127.0.0.1", port: 0 });
    servers.push(server);
    const { port } = server.address() as AddressInfo;
    const ok = await fetch(`http://127.0.0.1:${port}/metrics`);
    expect(ok.status).toBe(200);
    expect(ok.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(await ok.text()).toContain('smw_board_period{board="b2"} 3');
    expect((await fetch(`http://127.0.0.1:${port}/`)).status).toBe(404);
    expect((await fetch(`http://127.0.0.1:${port}/metrics`, { method: "POST" })).status).toBe(405);
    // Pipelined requests queue no work: one answer, then the connection is closed.
    const socket = connect(port, "127.0.0.1");
    let answered = "";
    socket.on("data", (chunk: Buffer) => {
      answered += chunk.toString();
    });
    socket.write("GET /metrics HTTP/1.1\r\nHost: board\r\n\r\n".repeat(1000));
    await new Promise((resolve) => socket.on("close", resolve));
    expect(answered.match(/^HTTP\/1\.1 /gm)).toHaveLength(1);
    await expect(listenForMetrics(metrics, { host: "127.0.0.1", port })).rejects.toThrow(
      `cannot serve metrics on http://127.0.0.1:${port}/metrics: the port is in use`,
    );
  });
});
