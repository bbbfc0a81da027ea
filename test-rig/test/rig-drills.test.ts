/** Three of the fail-safe drills end to end, and the rig's clean-up when it is interrupted or killed. */
import { once } from "node:events";
import { existsSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import path from "node:path";
import type { DrillResult } from "@smw/test-rig";
import { afterAll, describe, expect, it } from "vitest";
import { smw } from "../../cli/test/run-smw.js";
import {
  copyRig6,
  eventually,
  observeOnePeriod,
  processesMentioning,
  SCREENSHOTS,
  spawnSmw,
  startBrowser,
} from "./rig-helpers.js";

describe("fail-safe drills", () => {
  const rig = copyRig6();
  afterAll(() => rig.remove());

  const drill = async (scenario: string): Promise<{ code: number; result: DrillResult }> => {
    const { code, stdout } = await smw(
      "drill",
      "failsafe",
      "--scenario",
      scenario,
      ...rig.args,
      "--json",
      "--out",
      path.join(rig.dir, "drills"),
    );
    const results = JSON.parse(stdout) as DrillResult[];
    expect(results).toHaveLength(1);
    expect(await eventually(() => processesMentioning(rig.dir).length === 0, 5_000)).toBe(true);
    return { code, result: results[0] as DrillResult };
  };

  it("a host that will not boot: T_boot overruns, every host held, six alerts", async () => {
    const observed = path.join(rig.dir, "observed");
    // A campaign observing from outside records the run cut short too: it starts once the rig
    // has written the testbed copy it runs from.
    const drilled = drill("host-will-not-boot");
    expect(await eventually(() => existsSync(path.join(rig.runDir, "testbed.yaml")), 10_000)).toBe(
      true,
    );
    const campaign = await observeOnePeriod(rig.args, observed);
    const { code, result } = await drilled;
    expect(campaign.stdout).toMatch(/b\d\/h\d: period \d+ rejuvenation cut short at boot/);
    expect(campaign.code).toBe(1);
    const csv = readFileSync(path.join(observed, "timings.csv"), "utf8");
    expect(csv).toMatch(/^b\d,h\d,\d+,boot,.*,4500,(over-budget|failed),/m);
    expect(result).toMatchObject({ name: "host-will-not-boot", passed: true });
    expect(result.reasons.join()).toMatch(
      // Whichever notices first: the board's budget timer, or the boot step's own wait.
      /step boot of period \d+ ((took \d+ ms, |is )over its budget of |failed: the host did not report booted within T_boot \()4500 ms/,
    );
    expect(result.hostsHeld).toHaveLength(6);
    expect(new Set(result.alerts.map((a) => a.board)).size).toBe(6);
    // The board's own record of the step that broke, though its run never completed.
    expect(result.stepsBroken).toHaveLength(1);
    expect(result.stepsBroken[0]).toMatchObject({ step: "boot", budgetMs: 4500 });
    expect(result.stepsBroken[0]?.verdict).toMatch(/^(over-budget|failed)$/);
    expect(result.stepsBroken[0]?.tookMs).toBeGreaterThanOrEqual(4_490);
    expect(result.stepsBroken[0]?.tookMs).toBeLessThan(4_500 + 1_000);
    // The drill's folder: the boards' records as a table and a timeline, the broken bar in red.
    const folder = path.join(rig.dir, "drills", "host-will-not-boot");
    const timings = readFileSync(path.join(folder, "timings.csv"), "utf8");
    expect(timings).toMatch(/^b\d,h\d,\d+,boot,.*,4500,(over-budget|failed),/m);
    const svg = readFileSync(path.join(folder, "timeline.svg"), "utf8");
    expect(svg).toMatch(/<rect [^>]*stroke="#d62728"[^>]*><title>b\d boot period \d+/);
    expect(readFileSync(path.join(folder, "events.jsonl"), "utf8")).toMatch(/FAIL-SAFE/);
    // The client load ran through it; whatever failed, no client saw a wrong answer.
    expect(result.history?.linearizable).toBe(true);
    expect(result.history?.operations).toBeGreaterThan(10);
    expect(existsSync(path.join(folder, "history.jsonl"))).toBe(true);
    // Detected at T_boot after the boot began, then every board told.
    expect(result.timeToSafeMs).toBeGreaterThanOrEqual(4_500);
    expect(result.timeToSafeMs).toBeLessThan(4_500 + 1_500);
    expect(code).toBe(0);
  }, 120_000);

  it("a board dies, is restarted, every board is cleared: the testbed starts cold and completes a period", async () => {
    const { code, result } = await drill("restarted-and-cleared");
    expect(result.passed, result.detail).toBe(true);
    // The death: its peers notice its silence; its own host cannot be held.
    expect(result.reasons.join()).toMatch(/board b6 silent/);
    expect(result.hostsHeld).toHaveLength(5);
    expect(result.hostsNotHeld).toEqual(["h6"]);
    expect(new Set(result.alerts.map((a) => a.board))).toEqual(
      new Set(["b1", "b2", "b3", "b4", "b5"]),
    );
    // Silence counts from the last heartbeat heard, up to one heartbeat (250 ms) before the kill.
    expect(result.timeToSafeMs).toBeGreaterThanOrEqual(1_500 - 250);
    expect(result.timeToSafeMs).toBeLessThan(1_500 + 1_500);
    // The way back: cold start, the service answering on fresh keys, a whole period.
    expect(result.detail).toMatch(/a period completed/);
    expect(result.history?.linearizable).toBe(true);
    expect(result.history?.operations).toBeGreaterThan(10);
    expect(result.stepsBroken).toEqual([]);
    const events = readFileSync(
      path.join(rig.dir, "drills", "restarted-and-cleared", "events.jsonl"),
      "utf8",
    );
    // Every host released in a cold start twice: at the testbed's first start and after the clear.
    expect(events.match(/"coldStart":true/g)?.length).toBe(12);
    expect(code).toBe(0);
  }, 180_000);

  it("a clock skewed past the bound: fail-safe within a few heartbeats, seen on the live page", async () => {
    // The browser is started first, so that its start-up does not land in the drill.
    const browser = await startBrowser();
    const run = spawnSmw([
      "drill",
      "failsafe",
      "--scenario",
      "clock-skew",
      ...rig.args,
      "--json",
      "--out",
      path.join(rig.dir, "drills"),
      "--live",
    ]);
    let code: number;
    let result: DrillResult;
    try {
      await eventually(() => /live view: http/.test(run.stderr()), 30_000);
      const page = /live view: (http:\/\/127\.0\.0\.1:\d+\/)\n/.exec(run.stderr())?.[1];
      expect(page, run.stderr()).toBeDefined();
      // No faults from the page of a drill: it injects its own.
      const post = await fetch(`${page}fault`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ fault: "boot-hang", host: "h1" }),
      });
      expect(post.status).toBe(403);
      const tab = await browser?.newPage();
      if (tab !== undefined) {
        await tab.setViewport({ width: 1100, height: 900 });
        await tab.goto(page as string);
        // The fail-safe state on the page, with its cause, then the drill's verdict as the report.
        await tab.waitForSelector("#failsafe.on", { timeout: 60_000 });
        expect(await tab.$eval("#failsafe", (e) => e.textContent)).toMatch(
          /FAIL-SAFE: the clock of board b\d+ is/,
        );
        await tab.waitForSelector("#report:not([hidden])", { timeout: 60_000 });
        expect(await tab.$eval("#report-title", (e) => e.textContent)).toBe(
          "smw drill clock-skew: PASS",
        );
        await tab.waitForFunction(
          `document.querySelectorAll('#boards td.phase-failsafe').length === 6`,
          { timeout: 5_000 },
        );
        await tab.screenshot({
          path: path.join(SCREENSHOTS, "live-drill-failsafe.png"),
          fullPage: true,
        });
      }
      expect(
        await eventually(() => /the page stays up as the report/.test(run.stderr()), 60_000),
        run.stderr(),
      ).toBe(true);
      run.child.kill("SIGINT");
      code = await run.exited;
      const results = JSON.parse(run.stdout()) as DrillResult[];
      expect(results).toHaveLength(1);
      result = results[0] as DrillResult;
    } finally {
      await browser?.close().catch(() => {});
      if (run.child.exitCode === null) run.child.kill("SIGKILL");
      await run.exited;
    }
    expect(await eventually(() => processesMentioning(rig.dir).length === 0, 5_000)).toBe(true);
    expect(result.folder).toBe(path.join(rig.dir, "drills", "clock-skew"));
    expect(result.passed).toBe(true);
    expect(result.reasons.join()).toMatch(
      /the clock of board b\d+ is [\d.]+ ms (ahead of|behind) ours, over the bound of 50 ms/,
    );
    expect(result.hostsHeld).toHaveLength(6);
    expect(result.timeToSafeMs).toBeLessThan(2_000);
    expect(code).toBe(0);
  }, 120_000);

  it("an unknown drill is bad input", async () => {
    const { code, stderr } = await smw("drill", "failsafe", "--scenario", "meteor", ...rig.args);
    expect(code).toBe(2);
    expect(stderr).toMatch(/--scenario meteor: no such drill \(drills: host-will-not-boot, /);
  });
});

describe("what the rig cannot do here, and its clean-up", () => {
  const rig = copyRig6();
  afterAll(() => rig.remove());

  it("without socat: says what to install, starts nothing", async () => {
    const run = spawnSmw(["rig", "demo", ...rig.args], { ...process.env, PATH: "/nonexistent" });
    expect(await run.exited).toBe(2);
    expect(run.stderr()).toMatch(
      /the rig cannot run here:\nsocat is not installed \(Debian: apt-get install socat\)/,
    );
    expect(processesMentioning(rig.dir)).toEqual([]);
  }, 30_000);

  it("with a host's port in use: names the port and the file, starts nothing", async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(7104, "127.0.0.1", () => resolve()));
    try {
      const { code, stderr } = await smw("rig", "demo", ...rig.args);
      expect(code).toBe(2);
      expect(stderr).toMatch(/host h4's address 127\.0\.0\.1:7104 is in use/);
      expect(processesMentioning(rig.dir)).toEqual([]);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  const startDemo = async () => {
    // The light load: the test command runs other tests beside it on the same cores.
    const { child, stdout } = spawnSmw([
      "rig",
      "demo",
      ...rig.args,
      "--clients",
      "4",
      "--pause-ms",
      "20",
    ]);
    // Every board and host started (the boards are still agreeing on their first period): the
    // interruption lands while everything is running, and the test waits no longer than that.
    const up = await eventually(
      () => (stdout().match(/h\d: booted the host agent/g)?.length ?? 0) >= 6,
      60_000,
    );
    expect(up).toBe(true);
    expect(processesMentioning(rig.dir).length).toBeGreaterThan(20);
    return child;
  };

  it("Ctrl-C: everything stops, exit 130", async () => {
    const child = await startDemo();
    child.kill("SIGINT");
    const [code] = (await once(child, "exit")) as [number];
    expect(code).toBe(130);
    expect(await eventually(() => processesMentioning(rig.dir).length === 0, 5_000)).toBe(true);
  }, 120_000);

  it("the rig killed outright: `smw rig down` stops what it left", async () => {
    const child = await startDemo();
    child.kill("SIGKILL");
    await once(child, "exit");
    await new Promise((resolve) => setTimeout(resolve, 500));
    const left = processesMentioning(rig.dir);
    expect(left.length).toBeGreaterThan(0);
    const { code, stdout } = await smw("rig", "down", ...rig.args);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^stopped \d+ processes\n$/);
    expect(await eventually(() => processesMentioning(rig.dir).length === 0, 5_000)).toBe(true);
  }, 120_000);
});
