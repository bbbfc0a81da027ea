/**
 * The rig end to end, as a user runs it: the demo shortened to one period,
 * every promise checked from its report; and nothing left running after.
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { XMLValidator } from "fast-xml-parser";
import { afterAll, describe, expect, it } from "vitest";
import { smw } from "../../cli/test/run-smw.js";
import { copyRig6, eventually, processesMentioning } from "./rig-helpers.js";

describe("smw rig demo (one period)", () => {
  const rig = copyRig6();
  afterAll(() => rig.remove());

  it("plants a Byzantine replica and a corrupted state, rejuvenates every host, keeps every promise, and reports", async () => {
    const out = path.join(rig.dir, "report");
    const observed = path.join(rig.dir, "observed");
    // A timing campaign observing the same boards from outside, as on a real testbed.
    const [{ code, stdout, stderr }, campaign] = await Promise.all([
      smw("rig", "demo", "--testbed", rig.file, "--periods", "1", "--out", out),
      smw("rig", "measure", "--observe", "--testbed", rig.file, "--cycles", "1", "--out", observed),
    ]);
    expect(stderr).toBe("");
    expect(stdout).toMatch(/FAULT h3: SM code tampered into a Byzantine replica/);
    expect(stdout).toMatch(/FAULT h5: stored state corrupted/);
    expect(stdout).toMatch(/b3\/h3: check SM code: CORRUPTED/);
    expect(stdout).toMatch(/tampered SM code of h3: detected, restored/);
    // Corrupted while h5 was down: its replica refused the checkpoint and took the peers' state.
    expect(stdout).toMatch(/FAULT h5: stored state corrupted while the host was down/);
    expect(stdout).toMatch(/h5: stored checkpoint REJECTED \(checkpoint\.smw: /);
    expect(stdout).toMatch(
      /corrupted state of h5: detected \(checkpoint\.smw: .*\), recovered from peers at checkpoint \d+, \d+ partitions/,
    );
    expect(stdout).toMatch(/fail-safe: none/);
    expect(stdout).toMatch(/most hosts down at once: 1/);
    expect(stdout).not.toMatch(/BROKEN/);
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
    expect(plan).toMatch(/measured T_localexec = \d+ ms \(largest of 6 rejuvenations\)/);
    expect(plan).toMatch(/verdict: FEASIBLE/);
    expect(existsSync(path.join(out, "summary.txt"))).toBe(true);

    // The observer saw the same six rejuvenations through the boards' status.
    expect(campaign.stdout).toMatch(/b6\/h6: period 0 rejuvenation measured/);
    expect(campaign.code).toBe(0);
    const observedCsv = readFileSync(path.join(observed, "timings.csv"), "utf8").trim().split("\n");
    expect(observedCsv).toHaveLength(1 + 6 * 7);
    const bounds = readFileSync(path.join(observed, "bounds.yaml"), "utf8");
    expect(bounds).toMatch(/^ {4}tBoot: \d+ms +# measured max \d+ ms; budget now 4500 ms$/m);
    expect(bounds).toMatch(/^ {4}tRestorecode: \d+ms +# measured max \d+ ms/m);

    // Nothing of the rig is left running.
    expect(await eventually(() => processesMentioning(rig.dir).length === 0, 5_000)).toBe(true);
  }, 180_000);
});
