/**
 * `smw rig up` as a lab engineer runs it: the rig under load until Ctrl-C,
 * faults sent from another terminal with `smw rig fault`, then the report.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { smw } from "../../cli/test/run-smw.js";
import {
  CHROMIUM,
  copyRig6,
  eventually,
  processesMentioning,
  SCREENSHOTS,
  spawnSmw,
  startBrowser,
} from "./rig-helpers.js";

if (CHROMIUM === undefined)
  process.stdout.write(
    "the live page's browser check skipped: no chromium (apt-get install chromium)\n",
  );

describe("smw rig up and smw rig fault", () => {
  const rig = copyRig6();
  afterAll(() => rig.remove());

  it("takes faults while it runs, finds and cleans them, and reports when stopped", async () => {
    const socket = path.join(rig.runDir, "rig.sock");
    // The browser starts before the rig, and is idle until the faults are in: its start-up (a
    // cold profile, font caches) is paid before the rig runs, not during period 0.
    const browser = await startBrowser();
    const tab = await browser?.newPage();
    await tab?.setViewport({ width: 1100, height: 900 });
    await tab?.goto("about:blank");
    // One client fewer than the default load (lighter, so the testbed's own budgets keep their
    // margin beside the other tests): the load's shape is the one asked for.
    const run = spawnSmw(["rig", "up", ...rig.args, "--live", "--live-faults", "--clients", "3"]);
    /** What the rig said last, shown when an expectation on it fails. */
    const said = () => `the rig's last lines:\n${run.stdout().split("\n").slice(-40).join("\n")}`;
    const { child, exited } = run;
    // The faults below must land in the second or two between the rig saying it runs and period
    // 0 reaching their hosts: the fault command's modules are loaded now, while the rig
    // prepares, not then.
    try {
      expect((await smw("rig", "fault", "--help")).code).toBe(0);
      expect(
        await eventually(() => /running until Ctrl-C/.test(run.stdout()), 60_000),
        said(),
      ).toBe(true);
      expect(existsSync(socket)).toBe(true);

      const fault = (...args: string[]) => smw("rig", "fault", ...args, ...rig.args);
      const byzantine = await fault("byzantine", "--host", "h2", "--behaviours", "wrong-replies");
      expect(byzantine).toMatchObject({ code: 0, stderr: "" });
      expect(byzantine.stdout).toBe(
        "h2: SM code tampered into a Byzantine replica (wrong-replies)\n",
      );
      // h4's stored state corrupted: from the live page's button in a real browser (or, with no
      // browser here, from the CLI), before period 0 reaches h4.
      const page = /live view: (http:\/\/127\.0\.0\.1:\d+\/) \(faults from the page allowed\)/.exec(
        run.stdout(),
      )?.[1] as string;
      expect(page, said()).toBeDefined();
      if (tab !== undefined) {
        await tab.goto(page);
        // The buttons are drawn once the page has the run's shape (its first pushed event).
        const button = 'button[data-fault="corrupt-state"][data-target="h4"]';
        await tab.waitForSelector(button, { timeout: 10_000 });
        await tab.click(button);
        await tab.waitForFunction(
          `/^h4's stored state will be corrupted while it is down/.test(document.getElementById("answer")?.textContent ?? "")`,
          { timeout: 10_000 },
        );
      } else {
        const state = await fault("corrupt-state", "--host", "h4");
        expect(state.code).toBe(0);
        expect(state.stdout).toMatch(/h4's stored state will be corrupted while it is down/);
      }
      // Bad input is told before anything is sent; the rig goes on.
      const unknown = await fault("boot-hang", "--host", "h9");
      expect(unknown.code).toBe(2);
      expect(unknown.stderr).toMatch(/fault boot-hang: --host h9: no such host \(hosts: h1, /);
      const misplaced = await fault("kill-board", "--board", "b1", "--ms", "5");
      expect(misplaced.code).toBe(2);
      expect(misplaced.stderr).toMatch(/--ms does not apply to it/);

      // The live page, once the faults are in (they must land before period 0 reaches their
      // hosts, so nothing here may delay them): its address printed, the testbed's shape, the
      // events so far (replayed) and as they come, and faults from the page checked as the CLI
      // checks them.
      expect(await (await fetch(page)).text()).toContain("<title>smw live</title>");
      const shape = (await (await fetch(`${page}testbed.json`)).json()) as {
        name: string;
        boards: unknown[];
        faults: Record<string, string>;
      };
      expect(shape).toMatchObject({ name: "rig-6" });
      expect(shape.boards).toHaveLength(6);
      expect(Object.keys(shape.faults)).toContain("corrupt-os");
      const stream = await fetch(`${page}events`);
      expect(stream.headers.get("content-type")).toBe("text/event-stream");
      const reader = (stream.body as ReadableStream<Uint8Array>).getReader();
      let streamed = "";
      // One read outstanding at a time: a read the timeout won is awaited next time, not lost.
      let pending: ReturnType<typeof reader.read> | undefined;
      const decoder = new TextDecoder();
      const readUntil = async (pattern: RegExp, timeoutMs: number) => {
        const until = Date.now() + timeoutMs;
        while (!pattern.test(streamed) && Date.now() < until) {
          pending ??= reader.read();
          const result = await Promise.race([
            pending,
            new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 500)),
          ]);
          if (result === undefined) continue;
          pending = undefined;
          if (result.done) break;
          streamed += decoder.decode(result.value, { stream: true });
        }
        return pattern.test(streamed);
      };
      // Replayed from the start: the rig's first words.
      expect(await readUntil(/data: \{"kind":"rig","detail":"preparing rig-6/, 5_000)).toBe(true);
      const post = (body: string, type = "application/json") =>
        fetch(`${page}fault`, { method: "POST", headers: { "content-type": type }, body });
      const unknownHost = await post(JSON.stringify({ fault: "boot-hang", host: "h9" }));
      expect(unknownHost.status).toBe(400);
      expect(((await unknownHost.json()) as { error: string }).error).toMatch(
        /fault boot-hang: --host h9: no such host/,
      );
      expect((await post("fault=boot-hang", "application/x-www-form-urlencoded")).status).toBe(415);
      const refused = await post(JSON.stringify({ fault: "restart-board", board: "b1" }));
      expect(refused.status).toBe(409);
      expect(((await refused.json()) as { error: string }).error).toBe(
        "board b1 is running: kill it first",
      );

      // The page in the browser, watching the period run: a step bar appears and completes; a
      // fault button answers as the CLI would; the board's reaction to the page's fault shows.
      const browserCheck = (async () => {
        if (tab === undefined) return;
        await tab.waitForSelector('#boards tr[data-board="b6"]');
        // Where the button is before the period fills the page: it must not move under the pointer
        // (a click on restart-board once landed on another fault's button, the page having grown above it).
        const restartB1 = 'button[data-fault="restart-board"][data-target="b1"]';
        const place = () =>
          tab.evaluate(
            `(() => { const r = document.querySelector(${JSON.stringify(restartB1)}).getBoundingClientRect(); return [r.x + scrollX, r.y + scrollY, r.width, r.height]; })()`,
          );
        const before = await place();
        const running = await tab.waitForSelector("#boards .bar.running", { timeout: 90_000 });
        const board = await running?.evaluate((bar) => bar.closest("tr")?.dataset.board);
        expect(board).toMatch(/^b[1-6]$/);
        await tab.screenshot({ path: path.join(SCREENSHOTS, "live-step-running.png") });
        await tab.waitForFunction(
          `[...document.querySelectorAll("#timeline tr")].some((row) => row.cells[0]?.textContent === ${JSON.stringify(board)} && row.querySelector('.bar.done[data-step="transfer"]') !== null)`,
          { timeout: 60_000 },
        );
        // The client load as it runs.
        await tab.waitForFunction(
          `/^\\d+ ops\\/s, latency p50 [\\d.]+ ms, p99 [\\d.]+ ms, \\d+ completed, 0 unanswered$/.test(document.getElementById("load")?.textContent ?? "")`,
          { timeout: 10_000 },
        );
        expect(await place()).toEqual(before);
        await tab.click(restartB1);
        await tab.waitForFunction(
          `document.getElementById("answer")?.textContent?.startsWith("refused: board b1 is running")`,
        );
        await tab.screenshot({ path: path.join(SCREENSHOTS, "live-step-done.png") });
        // The board's reaction to the fault the page injected: h4's replica refused its stored
        // state and took its peers', and the page says so.
        await tab.waitForFunction(
          `document.querySelector('#boards tr[data-board="b4"] td.fault')?.textContent?.startsWith("cleaned: stored state corrupted")`,
          { timeout: 90_000 },
        );
        await tab.screenshot({ path: path.join(SCREENSHOTS, "live-fault-cleaned.png") });
      })();
      // Awaited below; a failure while the rig is checked is reported there, never unhandled.
      browserCheck.catch(() => {});

      expect(
        await eventually(() => /b4\/h4: rejuvenated in period 0/.test(run.stdout()), 90_000),
        said(),
      ).toBe(true);
      await browserCheck;
      // Pushed as it happened: b4's steps and its rejuvenation, with their step records.
      expect(await readUntil(/"board":"b4","msg":"host rejuvenated"/, 5_000)).toBe(true);
      expect(streamed).toMatch(/"board":"b4","msg":"step started","fields":\{[^}]*"step":"boot"/);
      await reader.cancel();

      // The same page on the running boards from their statuses, as against a real testbed.
      const status = spawnSmw([
        "status",
        "--serve",
        "--testbed",
        path.join(rig.runDir, "testbed.yaml"),
      ]);
      try {
        expect(
          await eventually(() => /live view of rig-6's boards: http/.test(status.stdout()), 20_000),
          status.stdout() + status.stderr(),
        ).toBe(true);
        const statusPage = /(http:\/\/127\.0\.0\.1:\d+\/)/.exec(status.stdout())?.[1] as string;
        expect(
          ((await (await fetch(`${statusPage}testbed.json`)).json()) as { title: string }).title,
        ).toBe("smw status");
        const statusStream = await fetch(`${statusPage}events`);
        const statusReader = (statusStream.body as ReadableStream<Uint8Array>).getReader();
        let statusText = "";
        const until = Date.now() + 15_000;
        while (
          !/"board":"b4","msg":"host rejuvenated","fields":\{"period":0,"steps":\[\{"step":"shutdown"/.test(
            statusText,
          ) &&
          Date.now() < until
        ) {
          const chunk = await statusReader.read();
          if (chunk.done) break;
          statusText += decoder.decode(chunk.value, { stream: true });
        }
        expect(statusText).toMatch(/"board":"b4","msg":"host rejuvenated"/);
        expect(statusText).toMatch(/"msg":"period triggered","fields":\{"period":0\}/);
        await statusReader.cancel();
        // Read-only: no faults from this page.
        expect(
          (
            await fetch(`${statusPage}fault`, {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: "{}",
            })
          ).status,
        ).toBe(403);
        status.child.kill("SIGINT");
        expect(await status.exited).toBe(0);
      } finally {
        if (status.child.exitCode === null) status.child.kill("SIGKILL");
      }

      // A running board's metrics, scraped with curl as an operator would (rig-6.yaml: b4 on
      // port 9104): the status line, the headers, then Prometheus's text format.
      const scraped = await new Promise<string>((resolve, reject) =>
        execFile(
          "curl",
          ["--silent", "--show-error", "--include", "http://127.0.0.1:9104/metrics"],
          { encoding: "utf8", timeout: 10_000 },
          (error, stdout) => (error ? reject(error) : resolve(stdout)),
        ),
      );
      const [head = "", metrics = ""] = scraped.split(/\r\n\r\n/);
      expect(head).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
      expect(head).toMatch(/\r\ncontent-type: text\/plain; version=0\.0\.4/i);
      // A series' value by name and labels, whatever order the labels come in.
      const value = (series: string) => {
        const [name, labels = ""] = series.replace("}", "").split("{");
        const wanted = labels.split(",").filter((label) => label !== "");
        const line = metrics.split("\n").find((candidate) => {
          const [head] = candidate.split(" ");
          const [candidateName, candidateLabels = ""] = (head ?? "").replace("}", "").split("{");
          const have = candidateLabels.split(",").filter((label) => label !== "");
          return (
            candidateName === name &&
            have.length === wanted.length &&
            wanted.every((label) => have.includes(label))
          );
        });
        return Number(line?.split(" ")[1]);
      };
      const phases = ["joining", "running", "failsafe", "stopped"].filter(
        (phase) => value(`smw_board_phase{phase="${phase}",board="b4"}`) === 1,
      );
      expect(phases, `${metrics}\n${said()}`).toEqual(["running"]);
      expect(value('smw_board_phase{phase="failsafe",board="b4"}')).toBe(0);
      expect(value('smw_board_failsafe{board="b4"}')).toBe(0);
      expect(value('smw_board_period{board="b4"}')).toBeGreaterThanOrEqual(0);
      expect(value('smw_board_trigger_lateness_seconds_count{board="b4"}')).toBeGreaterThanOrEqual(
        1,
      );
      expect(value('smw_board_timer_lateness_max_seconds{board="b4"}')).toBeGreaterThanOrEqual(0);
      for (const step of ["shutdown", "checkOS", "checkSM", "boot", "transfer"]) {
        expect(value(`smw_board_step_duration_seconds_count{step="${step}",board="b4"}`)).toBe(1);
        expect(value(`smw_board_step_budget_seconds{step="${step}",board="b4"}`)).toBeGreaterThan(
          0,
        );
        expect(value(`smw_board_steps_total{step="${step}",verdict="ok",board="b4"}`)).toBe(1);
      }
      expect(value('smw_board_link_frames_total{outcome="accepted",board="b4"}')).toBeGreaterThan(
        0,
      );
      expect(value('smw_board_link_frames_total{outcome="forged",board="b4"}')).toBe(0);
      expect((await fetch("http://127.0.0.1:9104/elsewhere")).status).toBe(404);
      child.kill("SIGINT");
      // The rig goes down and writes its report; the page stays up as that report.
      expect(
        await eventually(() => /the page stays up as the report/.test(run.stdout()), 60_000),
        said(),
      ).toBe(true);
      const report = (await (await fetch(`${page}report.json`)).json()) as {
        title: string;
        promises: Array<{ name: string; held: boolean }>;
        files: string[];
      };
      expect(report.title).toBe("smw rig up");
      expect(report.promises.find((p) => p.name === "no fail-safe")?.held).toBe(true);
      expect(report.files).toEqual(
        expect.arrayContaining(["events.jsonl", "timings.csv", "plan.txt", "timeline.svg"]),
      );
      const csv = await fetch(`${page}report/timings.csv`);
      expect(csv.status).toBe(200);
      expect(await csv.text()).toMatch(/^board,/);
      // Only the report's own files, by name.
      expect((await fetch(`${page}report/..%2Frig.sock`)).status).toBe(404);
      expect((await fetch(`${page}report/rig-6.yaml`)).status).toBe(404);
      // No run to take faults any more.
      const late = await post(JSON.stringify({ fault: "boot-hang", host: "h1" }));
      expect(late.status).toBe(409);
      if (tab !== undefined) {
        await tab.waitForSelector("#report:not([hidden])", { timeout: 10_000 });
        await tab.waitForFunction(
          `[...document.querySelectorAll("#files a")].map((a) => a.textContent).includes("timings.csv") && document.querySelectorAll("#stats tbody tr").length > 0 && document.querySelectorAll("#promises li.held").length > 0`,
          { timeout: 10_000 },
        );
        // The timeline drawn from the report's SVG, loaded.
        expect(
          await tab.$eval(
            "#timeline-svg",
            (img) => (img as unknown as { naturalWidth: number }).naturalWidth,
          ),
        ).toBeGreaterThan(0);
        await tab.screenshot({ path: path.join(SCREENSHOTS, "live-report.png"), fullPage: true });
      }
      child.kill("SIGINT");
      const code = await exited;
      expect(run.stdout()).toMatch(/FAULT h2: SM code tampered into a Byzantine replica/);
      expect(run.stdout()).toMatch(/b2\/h2: check SM code: CORRUPTED/);
      expect(run.stdout()).toMatch(/h4: stored checkpoint REJECTED/);
      expect(run.stdout()).toMatch(/stopping: stopped by a signal/);
      expect(run.stdout()).toMatch(
        /^client operations \(3 clients, 20 ms pause\): \d+ completed, 0 unanswered/m,
      );
      expect(run.stdout()).toMatch(/tampered SM code of h2: detected, restored/);
      expect(run.stdout()).toMatch(/corrupted state of h4: detected \(.*\), recovered from peers/);
      expect(run.stdout()).toMatch(/fail-safe: none/);
      // Run until stopped: no number of periods was promised.
      expect(run.stdout()).not.toMatch(/periods completed/);
      expect(run.stdout()).not.toMatch(/BROKEN/);
      expect(run.stderr()).toBe("");
      expect(code).toBe(0);
      expect(existsSync(path.join(rig.runDir, "report", "timings.csv"))).toBe(true);
    } finally {
      // A failed run still closes its browser.
      await browser?.close().catch(() => {});
      if (child.exitCode === null) child.kill("SIGKILL");
      await exited;
      // A rig killed outright leaves its boards, hosts and socats: a failed run cleans them up.
      for (const pid of processesMentioning(rig.dir)) process.kill(pid, "SIGKILL");
    }
    expect(await eventually(() => processesMentioning(rig.dir).length === 0, 5_000)).toBe(true);
    expect(existsSync(socket)).toBe(false);
    const after = await smw("rig", "fault", "boot-hang", "--host", "h1", ...rig.args);
    expect(after.code).toBe(2);
    expect(after.stderr).toMatch(
      /no rig is running on .*rig-6\.yaml .*: start one with smw rig up/,
    );
  }, 180_000);
});
