/** The live page's server on its own: what it pushes, when, what it serves of a report, which faults it takes. */

import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { loadTestbedFile, type Testbed } from "@smw/wiring";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { smw } from "../../cli/test/run-smw.js";
import { LIVE_PAGE_HTML } from "../src/live/live-page.js";
import { LiveServer } from "../src/live/live-server.js";
import type { FaultRequest } from "../src/rig/fault-requests.js";
import { RigEventStream } from "../src/rig/rig-events.js";
import { eventually, followEvents } from "./rig-helpers.js";

const loaded = loadTestbedFile(path.resolve("wiring/examples/rig-6.yaml"));
if (!loaded.ok) throw new Error("rig-6.yaml does not load");
const testbed: Testbed = loaded.testbed;
const folder = mkdtempSync(path.join(tmpdir(), "smw-live-"));
writeFileSync(path.join(folder, "timings.csv"), "board,host\n");
writeFileSync(path.join(folder, "secret.key"), "not to be served\n");
afterAll(() => rmSync(folder, { recursive: true, force: true }));

describe("the live page's server", () => {
  let server: LiveServer | undefined;
  afterEach(async () => {
    await server?.stop();
    server = undefined;
  });

  it("gives a page the run, its events so far, then each as it happens, and the report once it has ended", async () => {
    server = new LiveServer();
    const url = await server.start();
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    const page = await fetch(url);
    expect(page.headers.get("content-security-policy")).toMatch(/default-src 'self'/);
    expect(await page.text()).toContain("<title>smw live</title>");
    expect((await fetch(`${url}testbed.json`)).status).toBe(503);

    const events = new RigEventStream();
    events.emit({ kind: "rig", detail: "before the page" });
    server.follow({ title: "smw rig up", events, testbed });
    const shape = (await (await fetch(`${url}testbed.json`)).json()) as Record<string, unknown>;
    expect(shape).toMatchObject({ title: "smw rig up", name: "rig-6", faults: {} });
    // T_localexec 14 s + delivery bound + the group's slack; the deadline one offset bound later.
    expect(shape.slotMs).toBeGreaterThan(14_000);
    expect(shape.deadlineAfterSlotMs).toBe(testbed.timeliness.clockOffsetBoundMs);

    const stream = followEvents(`${url}events`);
    expect((await stream.headers).get("content-type")).toBe("text/event-stream");
    const first = await stream.until(3);
    expect(first.map((f) => f.event)).toEqual(["run", "message", "caught-up"]);
    expect(JSON.parse(first[1]?.data as string)).toMatchObject({ detail: "before the page" });
    events.emit({ kind: "host-up", host: "h3", detail: "booted" });
    const pushed = await stream.until(4);
    expect(JSON.parse(pushed[3]?.data as string)).toMatchObject({ kind: "host-up", host: "h3" });

    expect((await fetch(`${url}report.json`)).status).toBe(404);
    server.report({
      title: "smw rig up",
      promises: [{ name: "no fail-safe", held: true, detail: "none" }],
      stats: [],
      lines: ["fail-safe: none"],
      folder,
    });
    const reported = await stream.until(5);
    expect(reported[4]?.event).toBe("report");
    expect(JSON.parse(reported[4]?.data as string)).toMatchObject({
      title: "smw rig up",
      files: ["timings.csv"],
    });
    // Events after the report belong to no run the page shows.
    events.emit({ kind: "rig", detail: "after the end" });
    const report = (await (await fetch(`${url}report.json`)).json()) as { files: string[] };
    expect(report.files).toEqual(["timings.csv"]);
    const csv = await fetch(`${url}report/timings.csv`);
    expect(csv.headers.get("content-type")).toMatch(/^text\/csv/);
    expect(await csv.text()).toBe("board,host\n");
    // Only the report's files, by name: nothing else of its folder, nothing outside it.
    for (const name of ["secret.key", "..%2Fsecret.key", "%2E%2E/etc/passwd", "plan.txt"])
      expect((await fetch(`${url}report/${name}`)).status).toBe(404);
    stream.close();

    // A page that opens now gets the run, its events, and the report.
    const late = followEvents(`${url}events`);
    const all = await late.until(5);
    expect(all.map((f) => f.event)).toEqual(["run", "message", "message", "caught-up", "report"]);
    late.close();
  });

  it("takes faults only when allowed, only for a run that takes them, checked as the CLI checks them", async () => {
    const post = (url: string, body: string, type = "application/json") =>
      fetch(`${url}fault`, { method: "POST", headers: { "content-type": type }, body });
    const injected: FaultRequest[] = [];
    const events = new RigEventStream();

    server = new LiveServer();
    let url = await server.start();
    server.follow({
      title: "read-only",
      events,
      testbed,
      inject: async (r) => {
        injected.push(r);
        return "done";
      },
    });
    const off = await post(url, JSON.stringify({ fault: "boot-hang", host: "h1" }));
    expect(off.status).toBe(403);
    expect(((await off.json()) as { error: string }).error).toMatch(/--live-faults/);
    await server.stop();

    server = new LiveServer({ faults: true });
    url = await server.start();
    expect((await post(url, JSON.stringify({ fault: "boot-hang", host: "h1" }))).status).toBe(409);
    server.follow({ title: "a calibration", events, testbed });
    const none = await post(url, JSON.stringify({ fault: "boot-hang", host: "h1" }));
    expect(none.status).toBe(409);
    expect(((await none.json()) as { error: string }).error).toBe(
      "a calibration takes no faults from the page",
    );
    server.follow({
      title: "the demo",
      events,
      testbed,
      inject: async (r) => {
        if (r.fault === "restart-board") throw new Error(`board ${r.board} is running`);
        injected.push(r);
        return `${r.fault} done`;
      },
    });
    expect(
      ((await (await fetch(`${url}testbed.json`)).json()) as { faults: object }).faults,
    ).toHaveProperty("corrupt-os");
    const ok = await post(url, JSON.stringify({ fault: "boot-hang", host: "h1" }));
    expect(await ok.json()).toEqual({ ok: true, detail: "boot-hang done" });
    expect(injected).toEqual([{ fault: "boot-hang", host: "h1" }]);
    const refused = await post(url, JSON.stringify({ fault: "restart-board", board: "b1" }));
    expect(refused.status).toBe(409);
    expect(await refused.json()).toEqual({ ok: false, error: "board b1 is running" });
    const unknown = await post(url, JSON.stringify({ fault: "boot-hang", host: "h9" }));
    expect(unknown.status).toBe(400);
    expect(((await unknown.json()) as { error: string }).error).toMatch(/--host h9: no such host/);
    expect((await post(url, "{")).status).toBe(400);
    expect((await post(url, "fault=boot-hang", "text/plain")).status).toBe(415);
    expect((await post(url, JSON.stringify({ fault: "x".repeat(5000) }))).status).toBe(413);
    expect(injected).toHaveLength(1);
    // Once the run has ended, nothing to inject into.
    server.report({ title: "the demo", promises: [], stats: [], lines: [], folder });
    expect((await post(url, JSON.stringify({ fault: "boot-hang", host: "h1" }))).status).toBe(409);
    expect(injected).toHaveLength(1);
  });

  it("answers only under its own name: a name rebound to its address gets nothing", async () => {
    server = new LiveServer({ faults: true });
    const url = new URL(await server.start());
    const ask = (host: string) =>
      new Promise<number>((resolve, reject) => {
        const request = httpRequest(
          { host: "127.0.0.1", port: url.port, path: "/testbed.json", headers: { host } },
          (response) => {
            response.resume();
            resolve(response.statusCode ?? 0);
          },
        );
        request.on("error", reject);
        request.end();
      });
    expect(await ask(`127.0.0.1:${url.port}`)).toBe(503);
    expect(await ask(`localhost:${url.port}`)).toBe(503);
    expect(await ask(`attacker.example:${url.port}`)).toBe(403);
    expect(await ask("127.0.0.1")).toBe(403);
  });

  it("drops a page that stops reading instead of buffering for it without end", async () => {
    server = new LiveServer();
    const url = new URL(await server.start());
    const events = new RigEventStream();
    server.follow({ title: "flood", events, testbed });
    // A client that asks for the stream and never reads a byte of it.
    const socket = createConnection({ host: "127.0.0.1", port: Number(url.port) });
    await once(socket, "connect");
    socket.pause();
    socket.write(`GET /events HTTP/1.1\r\nHost: 127.0.0.1:${url.port}\r\n\r\n`);
    expect(await eventually(() => server?.pages === 1, 5_000)).toBe(true);
    const detail = "x".repeat(4096);
    // Far more than the kernel's socket buffers and the 16 MiB bound hold, in bounded steps.
    for (let i = 0; i < 40 && server.pages > 0; i++) {
      for (let j = 0; j < 500; j++) events.emit({ kind: "rig", detail });
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    // Dropped while it still had not read: the server stopped queueing for it.
    expect(server.pages).toBe(0);
    socket.destroy();
    // The server goes on serving others.
    expect((await fetch(`${url.href}testbed.json`)).status).toBe(200);
  });

  it("says when its port is taken", async () => {
    server = new LiveServer();
    const url = await server.start();
    const port = Number(new URL(url).port);
    const second = new LiveServer({ port });
    await expect(second.start()).rejects.toMatchObject({ code: "EADDRINUSE" });
  });
});

describe("the live page", () => {
  it("puts the fault buttons above everything that appears or grows during a run", () => {
    // A button that moves under the pointer turns a click meant for one fault into another: under
    // load, a click on restart-board once landed on a clock skew, the page having grown above it.
    const body = LIVE_PAGE_HTML.slice(LIVE_PAGE_HTML.indexOf("<body>"));
    const at = (id: string) => {
      const i = body.indexOf(`id="${id}"`);
      expect(i, id).toBeGreaterThan(0);
      return i;
    };
    for (const below of ["failsafe", "report", "period", "load", "boards", "timeline", "log"])
      expect(at("fault-buttons"), `the fault buttons above #${below}`).toBeLessThan(at(below));
    // Under the title alone, which keeps to one line.
    expect(at("fault-buttons")).toBeGreaterThan(at("title"));
    expect(LIVE_PAGE_HTML).toMatch(/h1 \{[^}]*white-space: nowrap/);
  });
});

describe("--live on the command line", () => {
  it("is checked before any rig starts", async () => {
    const faultsAlone = await smw(
      "rig",
      "up",
      "--live-faults",
      "--testbed",
      "wiring/examples/rig-6.yaml",
    );
    expect(faultsAlone).toMatchObject({ code: 2, stdout: "" });
    expect(faultsAlone.stderr).toBe("smw: --live-faults needs --live\n");
    const port = await smw(
      "rig",
      "demo",
      "--live",
      "http",
      "--testbed",
      "wiring/examples/rig-6.yaml",
    );
    expect(port.code).toBe(2);
    expect(port.stderr).toBe("smw: --live http: expected a port from 0 to 65535\n");
    // A drill injects its own faults: none from the page.
    const drill = await smw("drill", "all", "--live", "--live-faults");
    expect(drill.code).toBe(2);
    expect(drill.stderr).toMatch(/unknown option '--live-faults'/);
    const observed = await smw(
      "rig",
      "measure",
      "--observe",
      "--out",
      folder,
      "--live",
      "--testbed",
      "wiring/examples/rig-6.yaml",
    );
    expect(observed.code).toBe(2);
    expect(observed.stderr).toBe("smw: --live shows a run of the rig, not a testbed observed\n");
  });
});

describe("the load flags on the command line", () => {
  it("are checked before any rig starts", async () => {
    const bed = ["--testbed", "wiring/examples/rig-6.yaml"];
    const many = await smw("rig", "demo", "--clients", "17", ...bed);
    expect(many).toMatchObject({ code: 2, stdout: "" });
    expect(many.stderr).toBe(
      "smw: --clients 17: expected a whole number from 1 to 16 (the rig makes keys for 16 clients)\n",
    );
    const none = await smw("rig", "up", "--clients", "0", ...bed);
    expect(none.code).toBe(2);
    const pause = await smw("rig", "up", "--pause-ms", "-5", ...bed);
    expect(pause).toMatchObject({ code: 2, stdout: "" });
    expect(pause.stderr).toBe(
      "smw: --pause-ms -5: expected a whole number of milliseconds from 0 to 60000\n",
    );
  });

  it("default to every client pressing for the demo, and to a light load for a rig kept up", async () => {
    // The demo's report says what the service can do: with four clients pausing 20 ms, the
    // clients asked for at most 200 ops/s of a service that answered five times that.
    const demo = await smw("rig", "demo", "--help");
    expect(demo.stdout).toMatch(
      /--clients <n> +closed-loop clients of the load, 1 to 16 \(default: "16"\)/,
    );
    expect(demo.stdout).toMatch(
      /--pause-ms <ms> +each client's pause between its operations \(0: none\)\s+\(default: "0"\)/,
    );
    const up = await smw("rig", "up", "--help");
    expect(up.stdout).toMatch(/\(default: "4"\)/);
    expect(up.stdout).toMatch(/\(default: "20"\)/);
  });
});
