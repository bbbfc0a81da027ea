import { describe, expect, it } from "vitest";
import { RecentSet } from "../src/replica/recent-set.js";

describe("RecentSet", () => {
  it("remembers at least the last `capacity` entries and forgets older ones", () => {
    const seen = new RecentSet(4);
    for (let i = 0; i < 10; i++) seen.add(`m${i}`);
    // The last four are always there, whatever the generation boundary.
    for (let i = 6; i < 10; i++) expect(seen.has(`m${i}`)).toBe(true);
    // Memory is bounded: the first ones are gone.
    expect(seen.has("m0")).toBe(false);
    expect(seen.has("m1")).toBe(false);
    expect(seen.has("never")).toBe(false);
  });

  it("refuses a capacity below one", () => {
    expect(() => new RecentSet(0)).toThrow(/capacity 0/);
  });
});
