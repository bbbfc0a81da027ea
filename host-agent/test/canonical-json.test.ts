/**
 * Canonical JSON (`canonical.ts`): every replica must write the same bytes for the same value,
 * so the fast path for arrays of strings must write exactly what the general path writes.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { canonicalJson } from "../src/replica/canonical.js";

/** The general rule alone: keys sorted, recursively; no NaN or Infinity. */
function reference(value: unknown): string {
  if (value === undefined || value === null) return "null";
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new RangeError("not finite");
    return String(value);
  }
  if (typeof value === "boolean") return value ? "true" : "false";
  if (Array.isArray(value)) {
    const items: string[] = [];
    for (let i = 0; i < value.length; i++) items.push(reference(value[i]));
    return `[${items.join(",")}]`;
  }
  const record = value as Record<string, unknown>;
  return `{${Object.keys(record)
    .sort()
    .filter((k) => record[k] !== undefined)
    .map((k) => `${JSON.stringify(k)}:${reference(record[k])}`)
    .join(",")}}`;
}

const anyString = fc.string({ unit: "binary", maxLength: 8 });

describe("canonicalJson", () => {
  it("writes what the general rule writes, for any JSON value and for arrays of strings", () => {
    const entries = fc.array(fc.tuple(anyString, anyString), { maxLength: 20 });
    const value = fc.oneof(
      fc.jsonValue(),
      entries,
      fc.array(anyString),
      fc.record({ entries, n: fc.integer(), s: anyString }),
      // Nearly strings only: one element that is not.
      fc.tuple(entries, fc.jsonValue()).map(([e, v]) => [...e, v]),
      fc.array(fc.array(fc.oneof(anyString, fc.integer(), fc.constant(null)), { maxLength: 3 })),
    );
    fc.assert(
      fc.property(value, (v) => {
        expect(canonicalJson(v)).toBe(reference(v));
      }),
      { numRuns: 500 },
    );
  });

  it("sorts keys, writes holes and undefined as null, and refuses NaN", () => {
    expect(canonicalJson({ b: 1, a: ["x", ["y", "z"]] })).toBe('{"a":["x",["y","z"]],"b":1}');
    // biome-ignore lint/suspicious/noSparseArray: a hole is what is tested
    expect(canonicalJson([, "a"])).toBe('[null,"a"]');
    // biome-ignore lint/suspicious/noSparseArray: a hole is what is tested
    expect(canonicalJson([["a", , "b"]])).toBe('[["a",null,"b"]]');
    expect(canonicalJson(["\ud800", ["\u2028"]])).toBe(reference(["\ud800", ["\u2028"]]));
    expect(() => canonicalJson([Number.NaN])).toThrow(RangeError);
  });
});
