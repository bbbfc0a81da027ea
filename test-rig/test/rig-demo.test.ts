/**
 * The rig end to end, as a user runs it: the demo shortened to one period, after
 * its calibration period; every promise checked from its report; and nothing left
 * running after.
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { loadTestbedFile } from "@smw/wiring";
import { XMLValidator } from "fast-xml-parser";
import { afterAll, describe, expect, it, onTestFinished } from "vitest";
import { smw } from "../../cli/test/run-smw.js";
import {
  copyRig6,
  eventually,
  followEvents,
  observeOnePeriod,
  processesMentioning,
  spawnSmw,
} from "./rig-helpers.js";

describe("smw rig demo (one period)", () => {
  const rig = copyRig6();
  afterAll(() => rig.remove());

  it("measures this machine, plans with its budgets, plants a Byzantine replica and a corrupted state, rejuvenates every host, keeps every promise, and reports", async () => {
    const out = path.join(rig.dir, "report");
    const observed = path.join(rig.dir, "observed");
    // Under the rig's light load, not the demo's own (every client, no pause): the test command
    // runs other tests beside it on the same cores.
    const run = spawnSmw([
      "rig",
      "demo",
      ...rig.args,
      "--periods",
      "1",
      "--out",
      out,
      "--live",
      "--clients",
      "4",
      "--pause-ms",
      "20",
    ]);
    const { child, exited } = run;
    // Whatever the outcome: the demo waits for Ctrl-C once done (--live), and a failed run
    // leaves its boards and hosts.
    onTestFinished(() => {
      if (child.exitCode === null) child.kill("SIGKILL");
      for (const pid of processesMentioning(rig.dir)) process.kill(pid, "SIGKILL");
    });
    // The live page, followed from the start as a browser would: the calibration, then the demo.
    expect(await eventually(() => /live view: http/.test(run.stdout()), 30_000)).toBe(true);
    const page = /live view: (http:\/\/127\.0\.0\.1:\d+\/)\n/.exec(run.stdout())?.[1] as string;
    const live = followEvents(`${page}events`);
    // Once the calibration is done and the demo's rig is being prepared from the testbed with
    // the measured budgets: a timing campaign observing the same boards from outside, as on a
    // real testbed.
    const demoStarted = await eventually(
      () =>
        /calibration: the plan with them is feasible[\s\S]*\n\[ *[\d.]+ s\] preparing rig-6/.test(
          run.stdout(),
        ),
      120_000,
    );
    expect(demoStarted, run.stdout() + run.stderr()).toBe(true);
    const campaign = await observeOnePeriod(rig.args, observed);
    // Done: the page stays up as the report until Ctrl-C.
    expect(
      await eventually(() => /the page stays up as the report/.test(run.stdout()), 60_000),
      run.stdout(),
    ).toBe(true);
    const report = (await (await fetch(`${page}report.json`)).json()) as {
      title: string;
      promises: Array<{ name: string; held: boolean; detail: string }>;
      files: string[];
    };
    expect(report.title).toBe(
      "smw rig demo: 1 rejuvenation period, budgets measured on this machine",
    );
    expect(report.promises.length).toBeGreaterThan(5);
    const broken = report.promises.filter((p) => !p.held);
    // On a failure: every line of the run about the hosts a broken promise names, then the end.
    const named = new Set(broken.flatMap((p) => p.name.match(/\bh\d+\b/g) ?? []));
    const lines = run.stdout().split("\n");
    const about = lines.filter((l) => [...named].some((h) => new RegExp(`\\b${h}\\b`).test(l)));
    expect(broken, [...about, "...", ...lines.slice(-40)].join("\n")).toEqual([]);
    expect(report.files).toEqual(
      expect.arrayContaining(["plan.txt", "timings.csv", "events.jsonl"]),
    );
    // Two runs followed in turn, each ending in its report.
    const frames = live.frames();
    expect(
      frames.filter((f) => f.event === "run" || f.event === "report").map((f) => f.event),
    ).toEqual(["run", "report", "run", "report"]);
    expect(frames.filter((f) => f.event === "run").map((f) => JSON.parse(f.data).title)).toEqual([
      "smw rig demo: calibration period (no faults, budgets 4x the testbed's)",
      "smw rig demo: 1 rejuvenation period, budgets measured on this machine",
    ]);
    expect(
      frames.some((f) => /"msg":"step started","fields":\{"step":"transfer"/.test(f.data)),
    ).toBe(true);
    live.close();
    child.kill("SIGINT");
    const code = await exited;
    expect(run.stderr()).toBe("");

    // The calibration: one clean period, budgets from it, a feasible plan; the demo ran them.
    expect(run.stdout()).toMatch(
      /^calibration: one clean period under load, budgets 4x the testbed's/m,
    );
    expect(run.stdout()).toMatch(
      /^calibration: budgets measured on this machine \(largest \+ 200% \+ procMax 500 ms\): T_shutdown \d/m,
    );
    expect(run.stdout()).toMatch(
      /^smw rig demo: 1 rejuvenation period, budgets measured on this machine$/m,
    );
    const ran = loadTestbedFile(path.join(rig.runDir, "testbed.yaml"));
    if (!ran.ok) throw new Error("the run's testbed copy does not load");
    const calibrated = readFileSync(path.join(rig.runDir, "calibration", "bounds.yaml"), "utf8");
    const tBoot = /^ {4}tBoot: (\d+)ms +# measured max (\d+) ms; testbed budget 4500 ms$/m.exec(
      calibrated,
    );
    expect(tBoot, calibrated).not.toBeNull();
    // The budget the demo ran with is the one measured: three times the largest time + procMax.
    expect(ran.testbed.rejuvenation.budgets.tBootMs).toBe(Number(tBoot?.[1]));
    expect(Number(tBoot?.[1])).toBeGreaterThanOrEqual(3 * Number(tBoot?.[2]) + 500);
    expect(readFileSync(path.join(rig.runDir, "calibration", "summary.txt"), "utf8")).toMatch(
      /fail-safe: none/,
    );
    expect(run.stdout()).toMatch(/FAULT h3: SM code tampered into a Byzantine replica/);
    expect(run.stdout()).toMatch(/FAULT h5: stored state corrupted/);
    expect(run.stdout()).toMatch(/b3\/h3: check SM code: CORRUPTED/);
    expect(run.stdout()).toMatch(/tampered SM code of h3: detected, restored/);
    // Corrupted while h5 was down: its replica refused the checkpoint and took the peers' state.
    expect(run.stdout()).toMatch(/FAULT h5: stored state corrupted while the host was down/);
    expect(run.stdout()).toMatch(/h5: stored checkpoint REJECTED \(checkpoint\.smw: /);
    expect(run.stdout()).toMatch(
      /corrupted state of h5: detected \(checkpoint\.smw: .*\), recovered from peers at checkpoint \d+, \d+ partitions/,
    );
    expect(run.stdout()).toMatch(/fail-safe: none/);
    expect(run.stdout()).toMatch(/most hosts down at once for rejuvenation: 1/);
    expect(run.stdout()).not.toMatch(/BROKEN/);
    expect(code).toBe(0);

    // The report folder.
    const csv = readFileSync(path.join(out, "timings.csv"), "utf8").trim().split("\n");
    expect(csv[0]).toMatch(/^board,host,period,step,/);
    expect(csv).toHaveLength(1 + 6 * 7);
    expect(
      csv.filter((l) => l.startsWith("b3,h3,0,restoreSM,") && l.includes(",ok,")),
    ).toHaveLength(1);
    const events = readFileSync(path.join(out, "events.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { kind: string; atMs: number });
    expect(events.some((e) => e.kind === "fault")).toBe(true);
    expect(events.filter((e) => e.kind === "host-down")).toHaveLength(6);
    const svg = readFileSync(path.join(out, "timeline.svg"), "utf8");
    expect(XMLValidator.validate(svg)).toBe(true);
    expect(svg.match(/<title>/g)?.length).toBeGreaterThanOrEqual(6 * 5);
    const plan = readFileSync(path.join(out, "plan.txt"), "utf8");
    expect(plan).toMatch(/^rig-6 with budgets measured on this machine: a calibration period/);
    expect(plan).toMatch(/measured T_localexec = \d+ ms \(largest of 6 rejuvenations\)/);
    expect(plan).not.toMatch(/INFEASIBLE/);
    expect(plan.match(/verdict: FEASIBLE/g)).toHaveLength(2);
    expect(existsSync(path.join(out, "summary.txt"))).toBe(true);
    // Every client operation, as an independent checker reads it.
    expect(run.stdout()).toMatch(/^history: \d+ operations, linearizable \(checked in \d+ ms\)$/m);
    const history = await smw("history", "check", path.join(out, "history.jsonl"));
    expect(history.stdout).toMatch(
      /: \d+ operations on 8 keys \(\d+ ok, \d+ fail, 0 info\): linearizable/,
    );
    expect(history.code).toBe(0);

    // The observer saw the same six rejuvenations through the boards' status.
    expect(campaign.stdout).toMatch(/b6\/h6: period 0 rejuvenation measured/);
    expect(campaign.code).toBe(0);
    const observedCsv = readFileSync(path.join(observed, "timings.csv"), "utf8").trim().split("\n");
    expect(observedCsv).toHaveLength(1 + 6 * 7);
    const bounds = readFileSync(path.join(observed, "bounds.yaml"), "utf8");
    expect(bounds).toMatch(
      new RegExp(
        `^ {4}tBoot: \\d+ms +# measured max \\d+ ms; testbed budget ${ran.testbed.rejuvenation.budgets.tBootMs} ms$`,
        "m",
      ),
    );
    expect(bounds).toMatch(/^ {4}tRestorecode: \d+ms +# measured max \d+ ms/m);

    // Nothing of the rig is left running.
    expect(await eventually(() => processesMentioning(rig.dir).length === 0, 5_000)).toBe(true);
  }, 240_000);
});
