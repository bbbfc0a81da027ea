/**
 * `smw wiring probe` with a person at the bench (answers on stdin): each line driven active then
 * inactive and asked about, the verdicts in a commissioning record beside the testbed, exit 0
 * only when every line passed.
 */
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const dir = mkdtempSync(path.join(tmpdir(), "smw-probe-"));
const testbed = path.join(dir, "rig-6.yaml");
copyFileSync(path.join(root, "wiring/examples/rig-6.yaml"), testbed);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function probe(answers: string) {
  return spawnSync(
    process.execPath,
    [
      path.join(root, "bin/smw.js"),
      "wiring",
      "probe",
      "--testbed",
      testbed,
      "--board",
      "b3",
      "--by",
      "bench",
    ],
    { input: answers, encoding: "utf8", timeout: 30_000 },
  );
}
const record = () => JSON.parse(readFileSync(path.join(dir, "commissioning-b3.json"), "utf8"));

describe("smw wiring probe", () => {
  it("passes a board whose every line did what was asked, and records it", () => {
    const run = probe("y\n".repeat(10));
    expect(run.stderr).toBe("");
    expect(run.status).toBe(0);
    expect(run.stdout).toContain(
      "reset line (sim-b3/0, active-low) active (low): h3 is held in reset (stopped, its console silent). Is that so? [y/n/s/q] y",
    );
    expect(run.stdout).toMatch(/every line passed; record written to .*commissioning-b3\.json/);
    const written = record();
    expect(written).toMatchObject({ board: "b3", host: "h3", by: "bench", complete: true });
    expect(
      written.lines.map((l: { role: string; verdict: string }) => `${l.role} ${l.verdict}`),
    ).toEqual(["reset pass", "power pass", "write-protect pass", "alarm pass", "status pass"]);
    expect(written.lines[0]).toMatchObject({
      active: { readBack: true, seen: "yes" },
      inactive: { readBack: true, seen: "yes" },
    });
  });

  it("records a line not seen to follow as failed, a skipped one as skipped, asks again on a bad answer, and exits 1", () => {
    const run = probe("y\ny\ny\nn\nmaybe\ns\ny\ny\ny\ny\ny\n");
    expect(run.status).toBe(1);
    expect(run.stdout).toContain("answer y (yes), n (no), s (skip this line) or q (quit)");
    expect(run.stdout).toMatch(/failed: power; skipped: write-protect; record written to/);
    expect(record().lines.map((l: { verdict: string }) => l.verdict)).toEqual([
      "pass",
      "fail",
      "skipped",
      "pass",
      "pass",
    ]);
  });

  it("stops at q or at the end of input, the rest skipped and the record incomplete", () => {
    const run = probe("y\ny\nq\n");
    expect(run.status).toBe(1);
    const written = record();
    expect(written.complete).toBe(false);
    expect(written.lines.map((l: { verdict: string }) => l.verdict)).toEqual([
      "pass",
      "skipped",
      "skipped",
      "skipped",
      "skipped",
    ]);
    // power was driven active when q came, then made safe; the lines after it were not driven.
    expect(written.lines[1]).toMatchObject({
      active: { readBack: true, seen: "skipped" },
      inactive: { seen: "skipped" },
    });
    expect(written.lines[1].inactive.readBack).toBeUndefined();
    for (const line of written.lines.slice(2)) expect(line.active.readBack).toBeUndefined();
    // Nothing asked after the q.
    expect(run.stdout.match(/Is that so\?/g)).toHaveLength(3);
  });
});
