/** `smw drill`'s table: verdict, time to safe, alerts, the clients' history, and each drill's folder. */
import { describe, expect, it } from "vitest";
import { renderResults } from "../src/cli/drill-command.js";
import type { DrillResult } from "../src/scenarios/drills.js";

const result = (name: string, parts: Partial<DrillResult> = {}): DrillResult => ({
  name,
  passed: true,
  timeToSafeMs: 1740,
  reasons: [],
  alerts: [{ board: "b1", reason: "x" }],
  hostsHeld: [],
  hostsNotHeld: [],
  stepsBroken: [],
  history: {
    operations: 12,
    linearizable: true,
    checkMs: 3,
    detail: "12 operations, linearizable",
  },
  detail: "every board fail-safe",
  folder: `/runs/rig-6/drills/${name}`,
  ...parts,
});

describe("the drills' table", () => {
  it("shows each drill's history verdict and where its folder is", () => {
    const text = renderResults([
      result("board-dies"),
      result("host-will-not-boot", {
        passed: false,
        history: { operations: 3, linearizable: false, checkMs: 1, detail: "NOT linearizable" },
      }),
      result("clock-skew", { history: null, timeToSafeMs: null }),
    ]);
    expect(text.split("\n")[0]).toMatch(/^drill +result +time to safe +alerts +history +detail$/);
    expect(text).toMatch(/^board-dies +PASS +1740 ms +1 +linearizable +every board fail-safe$/m);
    expect(text).toMatch(/^host-will-not-boot +FAIL +1740 ms +1 +NOT linearizable +/m);
    expect(text).toMatch(/^clock-skew +PASS +- +1 +- +/m);
    expect(text).toContain(
      "folders:\n  board-dies: /runs/rig-6/drills/board-dies\n  host-will-not-boot: /runs/rig-6/drills/host-will-not-boot\n",
    );
  });
});
