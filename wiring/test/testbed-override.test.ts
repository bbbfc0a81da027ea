/** A testbed's rejuvenation figures replaced in its text: what the rig's calibration writes. */
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { formatProblem, parseTestbed, withRejuvenationOverrides } from "@smw/wiring";
import { describe, expect, it } from "vitest";

const here = path.dirname(fileURLToPath(import.meta.url));
const rig6 = path.join(here, "..", "examples", "rig-6.yaml");
const text = readFileSync(rig6, "utf8");

function load(source: string) {
  const result = parseTestbed(source, rig6);
  if (!result.ok) throw new Error(result.problems.map(formatProblem).join("\n"));
  return result.testbed;
}

describe("withRejuvenationOverrides", () => {
  const budgets = {
    tShutdownMs: 1770,
    tCheckcodeMs: 580,
    tRestorecodeMs: 500,
    tBootMs: 2130.4,
    tTransferMs: 6010,
  };

  it("sets the budgets, T_p and T_d, and the result loads with exactly those figures", () => {
    const out = withRejuvenationOverrides(text, { budgets, tPMs: 400_000, tDMs: 360_000 }, [
      "budgets measured on this machine",
    ]);
    const t = load(out);
    // Whole milliseconds, rounded up: never a budget smaller than asked.
    expect(t.rejuvenation.budgets).toEqual({ ...budgets, tBootMs: 2131 });
    expect(t.rejuvenation).toMatchObject({ tPMs: 400_000, tDMs: 360_000 });
    expect(out.startsWith("# budgets measured on this machine\n")).toBe(true);
  });

  it("keeps everything else as written, comments included", () => {
    const out = withRejuvenationOverrides(text, { budgets });
    expect(out).toMatch(/tBoot: 2131ms # six hosts share two cores with their boards here/);
    expect(out).toMatch(/# A simulated adversary that needs ten minutes per replica/);
    const before = load(text);
    const after = load(out);
    expect({ ...after, rejuvenation: undefined }).toEqual({
      ...before,
      rejuvenation: undefined,
    });
    expect(after.rejuvenation.tPMs).toBe(before.rejuvenation.tPMs);
  });

  it("names the problem when the text is not YAML", () => {
    expect(() => withRejuvenationOverrides("a: [1, 2", { tPMs: 1 })).toThrow(
      /not a YAML document: /,
    );
  });
});
