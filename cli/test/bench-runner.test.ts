/**
 * `npm run bench`'s runner checks names and options before any benchmark starts: a benchmark
 * takes minutes (and the media one a gigabyte of scratch), and an option it would ignore shows
 * only in its figures.
 */
import { spawn, spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { BUSY_WARNING_SHARE, busyShare, busyWarning } from "../../bench/machine-busy.mjs";

const bench = (...args: string[]) =>
  spawnSync(process.execPath, ["bench/run.mjs", ...args], { encoding: "utf8", timeout: 20_000 });

describe("npm run bench", () => {
  it("--help lists every benchmark with its options, and runs none", () => {
    const r = bench("--help");
    expect(r.status).toBe(0);
    for (const name of ["media", "link", "kv", "rig", "demo", "live"])
      expect(r.stdout).toContain(`npm run bench -- ${name} `);
    expect(r.stdout).toContain(
      "[--only n4|n6|reads|transfer|rolling|checkpoint|flood|large|pieces]",
    );
    expect(bench("media", "--help")).toMatchObject({
      status: 0,
      stdout: "usage: npm run bench -- media [--size-mib N]\n",
    });
  });

  it("refuses an unknown benchmark, an option that benchmark does not take, and a missing value", () => {
    expect(bench("nope")).toMatchObject({ status: 2 });
    expect(bench("nope").stderr).toMatch(/unknown benchmark "nope"; there are: media, link, kv/);
    const wrong = bench("link", "--size-mib", "3");
    expect(wrong.status).toBe(2);
    expect(wrong.stderr).toMatch(/npm run bench -- link: unknown option "--size-mib"/);
    const missing = bench("kv", "--only");
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/kv: --only needs a value/);
    const notANumber = bench("media", "--size-mib", "big");
    expect(notANumber.status).toBe(2);
    expect(notANumber.stderr).toMatch(/--size-mib: expected a positive number, got "big"/);
    const noSuchPart = bench("kv", "--only", "n5");
    expect(noSuchPart.status).toBe(2);
    expect(noSuchPart.stderr).toMatch(
      /--only: expected one of n4, n6, reads, transfer, rolling, checkpoint, flood, large, pieces, got "n5"/,
    );
    // Given to all of them at once, an option must suit each: kv's --quick is not media's.
    expect(bench("all", "--quick")).toMatchObject({ status: 2 });
  });

  it("says, before a benchmark, when the machine is busy with other work", async () => {
    expect(busyWarning("kv", 0.05)).toBeUndefined();
    expect(busyWarning("kv", undefined)).toBeUndefined();
    expect(busyWarning("kv", 0.5)).toBe(
      "warning: before kv started, the machine's cores were 50% busy with other work: its figures will be low and its ratios skewed; run it on an idle machine",
    );
    // A process spinning on one core: at least half a core busy, whatever else the machine does.
    const spinner = spawn(process.execPath, [
      "-e",
      "const t = Date.now(); while (Date.now() - t < 5000);",
    ]);
    try {
      await new Promise((resolve) => setTimeout(resolve, 200));
      const share = await busyShare(500);
      expect(share).toBeGreaterThan(BUSY_WARNING_SHARE);
    } finally {
      spinner.kill();
    }
  });
});
