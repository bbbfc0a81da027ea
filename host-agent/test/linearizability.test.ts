/** The independent linearizability check of client histories, and the history format. */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { smw } from "../../cli/test/run-smw.js";
import {
  checkLinearizable,
  type HistoryEvent,
  HistoryFormatError,
  historyLine,
  parseHistory,
} from "../src/index.js";

/** A history written as [process, type, f, key, value, time] rows. */
type Row = [
  number,
  HistoryEvent["type"],
  HistoryEvent["f"],
  string,
  unknown,
  number,
  (string | null)?,
];
const text = (rows: Row[]) =>
  rows
    .map(([process, type, f, key, value, time, previous]) =>
      historyLine({
        process,
        type,
        f,
        key,
        value,
        time,
        ...(previous === undefined ? {} : { previous }),
      }),
    )
    .join("");
const check = (rows: Row[]) =>
  checkLinearizable(parseHistory(text(rows), "h.jsonl").operations, { timeLimitMs: 10_000 });

describe("linearizable histories", () => {
  it("sequential writes and reads; concurrent writes read in either order", () => {
    expect(
      check([
        [0, "invoke", "put", "x", "a", 10],
        [0, "ok", "put", "x", "a", 20],
        [0, "invoke", "get", "x", null, 30],
        [0, "ok", "get", "x", "a", 40],
      ]).linearizable,
    ).toBe(true);
    // b and c overlap: a reader after both may see either, but two readers must agree.
    const concurrent: Row[] = [
      [0, "invoke", "put", "x", "b", 10],
      [1, "invoke", "put", "x", "c", 11],
      [0, "ok", "put", "x", "b", 30],
      [1, "ok", "put", "x", "c", 31],
      [2, "invoke", "get", "x", null, 40],
      [2, "ok", "get", "x", "b", 50],
    ];
    expect(check(concurrent).linearizable).toBe(true);
    expect(
      check([...concurrent, [2, "invoke", "get", "x", null, 60], [2, "ok", "get", "x", "c", 70]])
        .linearizable,
    ).toBe(false);
  });

  it("keys are independent registers; every key starts absent; del and cas behave as the store's", () => {
    expect(
      check([
        [0, "invoke", "get", "y", null, 1],
        [0, "ok", "get", "y", null, 2],
        [0, "invoke", "cas", "y", [null, "p"], 3],
        [0, "ok", "cas", "y", [null, "p"], 4],
        [1, "invoke", "cas", "y", ["zzz", "q"], 5],
        [1, "fail", "cas", "y", ["zzz", "q"], 6],
        [0, "invoke", "put", "z", "r", 7],
        [0, "ok", "put", "z", "r", 8, null],
        [0, "invoke", "del", "y", null, 9],
        [0, "ok", "del", "y", null, 10, "p"],
        [1, "invoke", "get", "y", null, 11],
        [1, "ok", "get", "y", null, 12],
      ]).linearizable,
    ).toBe(true);
  });

  it("an info write must be assumed to have happened when a later read saw it", () => {
    expect(
      check([
        [0, "invoke", "put", "x", "a", 10],
        [0, "info", "put", "x", "a", 5_000],
        [1, "invoke", "get", "x", null, 9_000],
        [1, "ok", "get", "x", "a", 9_100],
      ]).linearizable,
    ).toBe(true);
    // ...but not before it was invoked.
    expect(
      check([
        [1, "invoke", "get", "x", null, 1],
        [1, "ok", "get", "x", "a", 2],
        [0, "invoke", "put", "x", "a", 10],
        [0, "info", "put", "x", "a", 5_000],
      ]).linearizable,
    ).toBe(false);
    // An info cas whose expected value never held cannot have taken effect: it is left out.
    expect(
      check([
        [0, "invoke", "cas", "x", ["zzz", "a"], 10],
        [0, "info", "cas", "x", ["zzz", "a"], 20],
        [1, "invoke", "get", "x", null, 30],
        [1, "ok", "get", "x", null, 40],
      ]).linearizable,
    ).toBe(true);
    // An info write may also never have happened.
    expect(
      check([
        [0, "invoke", "put", "x", "a", 10],
        [0, "info", "put", "x", "a", 20],
        [1, "invoke", "get", "x", null, 30],
        [1, "ok", "get", "x", null, 40],
      ]).linearizable,
    ).toBe(true);
  });
});

describe("histories that are not linearizable, and why", () => {
  it("a stale read: the two writes and the read are what cannot be ordered", () => {
    const v = check([
      [9, "invoke", "put", "other", "o", 1],
      [9, "ok", "put", "other", "o", 2],
      [0, "invoke", "put", "x", "a", 10],
      [0, "ok", "put", "x", "a", 20],
      [1, "invoke", "get", "x", null, 21],
      [1, "ok", "get", "x", "a", 22],
      [0, "invoke", "put", "x", "b", 30],
      [0, "ok", "put", "x", "b", 40],
      [2, "invoke", "get", "x", null, 50],
      [2, "ok", "get", "x", "b", 55],
      [1, "invoke", "get", "x", null, 60],
      [1, "ok", "get", "x", "a", 70],
    ]);
    expect(v.linearizable).toBe(false);
    if (v.linearizable !== false) return;
    expect(v.key).toBe("x");
    expect(v.operations.map((o) => [o.f, o.f === "get" ? o.output : o.input])).toEqual([
      ["put", "a"],
      ["put", "b"],
      ["get", "a"],
    ]);
    expect(v.operations[2]?.invokeTime).toBe(60);
  });

  it("a lost write: the write and the read that missed it", () => {
    const v = check([
      [0, "invoke", "put", "x", "a", 10],
      [0, "ok", "put", "x", "a", 20],
      [1, "invoke", "get", "y", null, 30],
      [1, "ok", "get", "y", null, 40],
      [2, "invoke", "get", "x", null, 50],
      [2, "ok", "get", "x", null, 60],
    ]);
    expect(v.linearizable).toBe(false);
    if (v.linearizable !== false) return;
    expect(v.operations.map((o) => [o.f, o.input ?? o.output])).toEqual([
      ["put", "a"],
      ["get", null],
    ]);
  });

  it("a put whose reported previous value contradicts the order", () => {
    expect(
      check([
        [0, "invoke", "put", "x", "a", 10],
        [0, "ok", "put", "x", "a", 20, null],
        [1, "invoke", "put", "x", "b", 30],
        [1, "ok", "put", "x", "b", 40, null],
      ]).linearizable,
    ).toBe(false);
  });

  it("gives up, undecided, when the time limit is reached", () => {
    // Twenty writes of unknown outcome and a read of a value nobody wrote: every subset of the
    // writes, in every order, has to be tried before the answer is known.
    const rows: Row[] = [];
    for (let p = 0; p < 20; p++) rows.push([p, "invoke", "put", "x", `w${p}`, p]);
    rows.push([99, "invoke", "get", "x", null, 100], [99, "ok", "get", "x", "nobody", 101]);
    const v = checkLinearizable(parseHistory(text(rows), "h").operations, { timeLimitMs: 50 });
    expect(v.linearizable).toBeUndefined();
    if (v.linearizable === undefined) expect(v.reason).toMatch(/not decided within 50 ms/);
  });
});

describe("generated histories", () => {
  /**
   * Clients on a few keys; each operation takes effect at one instant between its invoke and its
   * completion, on a plain map: such a history is linearizable by construction.
   */
  const histories = fc
    .array(
      fc.record({
        process: fc.integer({ min: 0, max: 3 }),
        key: fc.constantFrom("k0", "k1", "k2"),
        f: fc.constantFrom("get", "put", "del", "cas", "cas"),
        gap: fc.integer({ min: 0, max: 20 }),
        length: fc.integer({ min: 1, max: 40 }),
        effect: fc.double({ min: 0, max: 1, noNaN: true }),
        unknown: fc.boolean(),
      }),
      { maxLength: 60 },
    )
    .map((specs) => {
      const free = [0, 0, 0, 0];
      const planned = specs.map((s, i) => {
        const invoke = (free[s.process] as number) + s.gap;
        const complete = invoke + s.length;
        free[s.process] = complete + 1;
        return { ...s, i, invoke, complete, at: invoke + s.effect * s.length };
      });
      const state = new Map<string, string | null>();
      const events: Array<HistoryEvent & { order: number }> = [];
      const crashed = new Set<number>();
      for (const p of [...planned].sort((a, b) => a.at - b.at)) {
        if (crashed.has(p.process)) continue;
        const current = state.get(p.key) ?? null;
        const value = `v${p.i}`;
        let completion: HistoryEvent["type"] = "ok";
        let input: unknown = p.f === "put" ? value : null;
        let output: unknown = input;
        if (p.f === "get") output = current;
        if (p.f === "put") state.set(p.key, value);
        if (p.f === "del") state.set(p.key, null);
        if (p.f === "cas") {
          const expected = p.effect < 0.5 ? current : "never";
          input = [expected, value];
          output = input;
          if (expected === current) state.set(p.key, value);
          else completion = "fail";
        }
        if (p.unknown && p.f !== "get" && completion === "ok" && p.effect > 0.8) {
          completion = "info";
          crashed.add(p.process);
        }
        const base = { process: p.process, f: p.f, key: p.key };
        events.push({ ...base, type: "invoke", value: input, time: p.invoke, order: p.invoke });
        if (completion !== "info" || p.effect > 0.9)
          events.push({
            ...base,
            type: completion,
            value: output,
            time: p.complete,
            order: p.complete,
          });
      }
      return events.sort((a, b) => a.order - b.order).map(({ order: _, ...e }) => e);
    });

  it("a history made by a plain map, with info and fail outcomes, is linearizable", () => {
    fc.assert(
      fc.property(histories, (events) => {
        const { operations } = parseHistory(events.map(historyLine).join(""), "gen");
        expect(checkLinearizable(operations, { timeLimitMs: 10_000 }).linearizable).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it("the same history with one read changed to a value never written is not", () => {
    fc.assert(
      fc.property(histories, (events) => {
        const read = events.findIndex((e) => e.f === "get" && e.type === "ok");
        fc.pre(read >= 0);
        const changed = events.map((e, i) => (i === read ? { ...e, value: "never written" } : e));
        const { operations } = parseHistory(changed.map(historyLine).join(""), "gen");
        const v = checkLinearizable(operations, { timeLimitMs: 10_000 });
        expect(v.linearizable).toBe(false);
        if (v.linearizable === false)
          expect(v.operations.some((o) => o.output === "never written")).toBe(true);
      }),
      { numRuns: 200 },
    );
  });
});

describe("the history format", () => {
  const bad = (body: string) => () => parseHistory(body, "h.jsonl");
  it("names the file, the line and what is wrong", () => {
    expect(bad("{nope\n")).toThrow(/^h\.jsonl:1: not JSON: /);
    expect(bad('{"process":0,"type":"invoke","f":"get","key":"x","time":1,"colour":1}\n')).toThrow(
      /h\.jsonl:1: unknown field "colour"/,
    );
    const invoke = '{"process":0,"type":"invoke","f":"get","key":"x","time":1}\n';
    expect(bad(invoke + invoke)).toThrow(
      /h\.jsonl:2: process 0 invoked again before its operation of line 1 completed/,
    );
    expect(bad('\n{"process":3,"type":"ok","f":"get","key":"x","value":null,"time":1}\n')).toThrow(
      /h\.jsonl:2: process 3: ok with no operation invoked/,
    );
    expect(
      bad(`${invoke}{"process":0,"type":"ok","f":"put","key":"x","value":"a","time":2}\n`),
    ).toThrow(/h\.jsonl:2: process 0: ok of put for an invoke of get/);
    expect(bad('{"process":0,"type":"invoke","f":"cas","key":"x","value":"a","time":1}\n')).toThrow(
      /h\.jsonl:1: cas: value is \[expected, new\]/,
    );
    expect(bad('{"process":-1,"type":"invoke","f":"get","key":"x","time":1}\n')).toThrow(
      HistoryFormatError,
    );
    const info = '{"process":0,"type":"info","f":"get","key":"x","time":2}\n';
    expect(bad(invoke + info + invoke)).toThrow(
      /h\.jsonl:3: process 0 invoked again after an operation with an unknown outcome/,
    );
  });

  it("counts an invoke never completed as info, and leaves scans out", () => {
    const { operations, scans } = parseHistory(
      '{"process":0,"type":"invoke","f":"put","key":"x","value":"a","time":1}\n' +
        '{"process":1,"type":"invoke","f":"scan","value":null,"time":1}\n' +
        '{"process":1,"type":"ok","f":"scan","value":[],"time":2}\n',
      "h",
    );
    expect(scans).toBe(1);
    expect(operations).toHaveLength(1);
    expect(operations[0]).toMatchObject({
      outcome: "info",
      completeTime: Number.POSITIVE_INFINITY,
    });
  });
});

describe("smw history check", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "smw-history-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, rows: Row[]) => {
    const p = path.join(dir, name);
    writeFileSync(p, text(rows));
    return p;
  };
  const good = file("good.jsonl", [
    [0, "invoke", "put", "x", "a", 1_000_000_000],
    [0, "ok", "put", "x", "a", 1_002_000_000],
    [1, "invoke", "get", "x", null, 1_003_000_000],
    [1, "ok", "get", "x", "a", 1_004_000_000],
  ]);
  const lost = file("lost.jsonl", [
    [0, "invoke", "put", "x", "a", 1_000_000_000],
    [0, "ok", "put", "x", "a", 1_002_000_000],
    [1, "invoke", "get", "x", null, 1_003_000_000],
    [1, "ok", "get", "x", null, 1_004_000_000],
  ]);

  it("exit 0 and a one-line verdict for a linearizable history", async () => {
    const r = await smw("history", "check", good);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      /good\.jsonl: 2 operations on 1 key \(2 ok, 0 fail, 0 info\): linearizable \(checked in \d+ ms\)\n$/,
    );
  });

  it("exit 1 and the operations that cannot be ordered, for one that is not; --json says the same", async () => {
    const r = await smw("history", "check", lost);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/NOT linearizable/);
    expect(r.stdout).toMatch(/key x: these 2 operations cannot be ordered/);
    expect(r.stdout).toMatch(
      /process 0: put x "a", invoked at 0\.000000 s, ok at 0\.002000 s \(line 1, 2\)/,
    );
    expect(r.stdout).toMatch(/process 1: get x, invoked at 0\.003000 s, ok null at 0\.004000 s/);
    const j = await smw("history", "check", lost, "--json");
    expect(j.code).toBe(1);
    const verdict = JSON.parse(j.stdout) as { linearizable: boolean; cannotBeOrdered: unknown[] };
    expect(verdict.linearizable).toBe(false);
    expect(verdict.cannotBeOrdered).toHaveLength(2);
  });

  it("exit 2 for bad input and for a bad time limit, naming what is wrong", async () => {
    const broken = path.join(dir, "broken.jsonl");
    writeFileSync(broken, '{"process":0,"type":"invoke","f":"get","key":"x","time":1}\n[]\n');
    const r = await smw("history", "check", broken);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/broken\.jsonl:2: not a JSON object/);
    expect((await smw("history", "check", path.join(dir, "none.jsonl"))).stderr).toMatch(
      /none\.jsonl: cannot read it \(ENOENT\)/,
    );
    expect((await smw("history", "check", good, "--time-limit", "soon")).code).toBe(2);
  });
});
