import path from "node:path";
import type { StateNote } from "@smw/host-agent";
import {
  deriveBounds,
  firstBroken,
  hostsDown,
  type LoadFigures,
  loadDuringRejuvenation,
  percentile,
  type RigEvent,
  renderBoundsYaml,
  renderSummary,
  renderTimelineSvg,
  roundUpMs,
  type StampedEvent,
  type StepRow,
  stepStats,
  stepsCsv,
  summarize,
} from "@smw/test-rig";
import { loadTestbedFile, type Testbed } from "@smw/wiring";
import { RECOVERY_STEPS } from "@smw/wormhole-board";
import { XMLValidator } from "fast-xml-parser";
import { describe, expect, it } from "vitest";

const budgets = {
  tShutdownMs: 1000,
  tCheckcodeMs: 250,
  tRestorecodeMs: 500,
  tBootMs: 3500,
  tTransferMs: 7000,
};

/** One board's Algorithm 1 run, steps back to back from `startMs`, with the given durations. */
function run(
  board: string,
  period: number,
  startMs: number,
  took: Record<string, number>,
): StepRow[] {
  const rows: StepRow[] = [];
  let t = startMs;
  for (const step of RECOVERY_STEPS) {
    const ms = took[step];
    if (ms === undefined) {
      rows.push({
        board,
        host: `h${board.slice(1)}`,
        period,
        step,
        plannedMs: t,
        startMs: undefined,
        endMs: undefined,
        budgetMs: 0,
        verdict: "skipped",
        detail: undefined,
      });
      continue;
    }
    rows.push({
      board,
      host: `h${board.slice(1)}`,
      period,
      step,
      plannedMs: t,
      startMs: t,
      endMs: t + ms,
      budgetMs: 1000,
      verdict: "ok",
      detail: undefined,
    });
    t += ms;
  }
  return rows;
}

describe("step timing statistics", () => {
  it("takes nearest-rank percentiles", () => {
    const sorted = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(sorted, 50)).toBe(50);
    expect(percentile(sorted, 99)).toBe(99);
    expect(percentile(sorted, 100)).toBe(100);
    expect(percentile([7], 99)).toBe(7);
    expect(Number.isNaN(percentile([], 50))).toBe(true);
  });

  it("groups steps under the paper's budgets and does not count skipped restores", () => {
    const rows = [
      ...run("b1", 0, 0, { shutdown: 100, checkOS: 10, checkSM: 20, boot: 2000, transfer: 3000 }),
      ...run("b2", 0, 6000, {
        shutdown: 300,
        checkOS: 30,
        restoreOS: 400,
        checkSM: 40,
        boot: 1000,
        transfer: 1000,
      }),
    ];
    const stats = new Map(stepStats(rows, budgets).map((s) => [s.name, s]));
    expect(stats.get("T_shutdown")).toMatchObject({
      count: 2,
      minMs: 100,
      maxMs: 300,
      budgetMs: 1000,
    });
    expect(stats.get("T_checkcode")).toMatchObject({
      count: 4,
      minMs: 10,
      maxMs: 40,
      budgetMs: 250,
    });
    expect(stats.get("T_restorecode")).toMatchObject({ count: 1, minMs: 400, maxMs: 400 });
    // T_localexec: each board's whole run, shutdown to the end of the transfer.
    expect(stats.get("T_localexec")).toMatchObject({
      count: 2,
      minMs: 2770,
      maxMs: 5130,
      budgetMs: 13_000,
    });
  });

  it("counts a step over its budget, not a step cut short by fail-safe, and no T_localexec for either run", () => {
    const over = run("b1", 0, 0, { shutdown: 100, checkOS: 10, checkSM: 20, boot: 3600 }).filter(
      (r) => r.step !== "transfer",
    );
    (over[over.length - 1] as StepRow).verdict = "over-budget";
    const cut = run("b2", 0, 5000, { shutdown: 200, checkOS: 5 }).filter(
      (r) => r.step === "shutdown" || r.step === "checkOS",
    );
    (cut[1] as StepRow).verdict = "interrupted";
    const stats = new Map(stepStats([...over, ...cut], budgets).map((s) => [s.name, s]));
    expect(stats.get("T_boot")).toMatchObject({ count: 1, maxMs: 3600 });
    expect(stats.get("T_checkcode")).toMatchObject({ count: 2, minMs: 10, maxMs: 20 });
    expect(stats.get("T_shutdown")).toMatchObject({ count: 2, maxMs: 200 });
    expect(stats.get("T_localexec")?.count).toBe(0);
  });

  it("writes one CSV row per step record, quoting details", () => {
    const rows = run("b1", 0, 0, {
      shutdown: 100,
      checkOS: 10,
      checkSM: 20,
      boot: 2000,
      transfer: 3000,
    });
    (rows[0] as StepRow).detail = 'host said "ok", then reset';
    const lines = stepsCsv(rows).trim().split("\n");
    expect(lines).toHaveLength(1 + rows.length);
    expect(lines[0]).toMatch(/^board,host,period,step,/);
    expect(lines[1]).toContain('"host said ""ok"", then reset"');
    expect(lines[1]?.split(",")[7]).toBe("100.0");
  });
});

describe("derived budgets", () => {
  it("adds the margin to the largest measurement and rounds up", () => {
    expect(roundUpMs(123)).toBe(130);
    expect(roundUpMs(1234)).toBe(1250);
    expect(roundUpMs(12_345)).toBe(12_500);
    const rows = [
      ...run("b1", 0, 0, { shutdown: 400, checkOS: 10, checkSM: 20, boot: 2000, transfer: 3000 }),
      ...run("b2", 0, 6000, {
        shutdown: 500,
        checkOS: 30,
        checkSM: 40,
        boot: 2400,
        transfer: 1000,
      }),
    ];
    const bounds = deriveBounds(stepStats(rows, budgets), 25);
    const byKey = new Map(bounds.map((b) => [b.key, b]));
    expect(byKey.get("tShutdown")?.boundMs).toBe(630); // 500 + 25% = 625, rounded up
    expect(byKey.get("tBoot")?.boundMs).toBe(3000);
    expect(byKey.get("tTransfer")?.boundMs).toBe(3750);
    // A restore that never ran keeps the budget there is.
    expect(byKey.get("tRestorecode")).toMatchObject({ measuredMaxMs: undefined, boundMs: 500 });
    const yaml = renderBoundsYaml(bounds, 25, 1);
    expect(yaml).toMatch(/^ {4}tShutdown: 630ms/m);
    expect(yaml).toMatch(/T_localexec with these budgets: 8480 ms/);
  });
});

describe("hosts down at once", () => {
  const bed = {
    boards: [
      { id: "b1", guards: "h1" },
      { id: "b2", guards: "h2" },
      { id: "b3", guards: "h3" },
    ],
    hosts: [{ id: "h1" }, { id: "h2" }, { id: "h3" }],
  } as unknown as Pick<Testbed, "boards" | "hosts">;
  let clock = 0;
  const e = (kind: "host-up" | "host-down", host: string): StampedEvent =>
    ({ kind, host, detail: "", atMs: clock, wallMs: clock++ }) as StampedEvent;
  const failsafe = (board: string, boardTimeMs: number): StampedEvent =>
    ({
      kind: "board",
      board,
      msg: "FAIL-SAFE",
      fields: { reason: "step transfer over budget", boardTimeMs },
      atMs: clock,
      wallMs: clock++,
    }) as StampedEvent;

  it("counts only after every host first came up", () => {
    clock = 0;
    const events = [
      e("host-up", "h1"),
      e("host-down", "h1"), // before the others ever came up: the start, not a rejuvenation
      e("host-up", "h1"),
      e("host-up", "h2"),
      e("host-up", "h3"),
      e("host-down", "h1"),
      e("host-up", "h1"),
      e("host-down", "h2"),
      e("host-down", "h1"),
    ];
    expect(hostsDown(events, bed)).toEqual({ maxBySchedule: 2, heldByFailsafe: [] });
    expect(hostsDown(events.slice(0, 7), bed).maxBySchedule).toBe(1);
  });

  it("leaves out hosts their board holds in reset from the moment it failed safe, and names them", () => {
    clock = 0;
    const up = [e("host-up", "h1"), e("host-up", "h2"), e("host-up", "h3")];
    const rejuvenating = e("host-down", "h2");
    // The board logged FAIL-SAFE (by its clock) before the rig saw the reset lines move; the
    // log line itself may reach the rig after them.
    const b1At = clock;
    const held1 = e("host-down", "h1");
    const held3 = e("host-down", "h3");
    const events = [...up, rejuvenating, held1, held3, failsafe("b1", b1At), failsafe("b3", b1At)];
    expect(hostsDown(events, bed)).toEqual({ maxBySchedule: 1, heldByFailsafe: ["h1", "h3"] });
    // The same downs with no fail-safe behind them break the schedule's bound.
    expect(hostsDown([...up, rejuvenating, held1, held3], bed).maxBySchedule).toBe(3);
  });
});

describe("the first broken promise, named first", () => {
  const loaded = loadTestbedFile(path.resolve("wiring/examples/rig-6.yaml"));
  if (!loaded.ok) throw new Error("rig-6.yaml does not load");
  const testbed = loaded.testbed;
  const transfer = (board: string, host: string, startMs: number, verdict: string): StepRow => ({
    board,
    host,
    period: 1,
    step: "transfer",
    plannedMs: startMs,
    startMs,
    endMs: startMs + 7_500,
    budgetMs: 7_500,
    verdict,
    detail: verdict === "over-budget" ? "no RECOVERED within T_transfer" : undefined,
  });
  const summaryOf = (steps: StepRow[], events: StampedEvent[]) =>
    summarize({
      title: "smw rig demo",
      testbed,
      records: { steps, triggers: [], periods: [], unreadable: [] },
      events,
      load: undefined,
      periodsWanted: 0,
    });
  const failsafeEvent = (board: string, atMs: number, reason: string): StampedEvent =>
    ({
      kind: "board",
      board,
      msg: "FAIL-SAFE",
      fields: { reason, boardTimeMs: atMs },
      atMs,
      wallMs: atMs + 5,
    }) as StampedEvent;

  it("is the step over its budget when it came before the fail-safe, with its cause", () => {
    const s = summaryOf(
      [transfer("b2", "h2", 1_000, "over-budget"), transfer("b5", "h5", 500, "interrupted")],
      [
        failsafeEvent("b4", 8_501, "peer b2 in fail-safe"),
        failsafeEvent("b2", 8_500, "step transfer over budget"),
      ],
    );
    expect(firstBroken(s)).toBe(
      "b2/h2, period 1: state transfer (T_transfer) over-budget after 7500 ms (budget 7500 ms): no RECOVERED within T_transfer",
    );
    const text = renderSummary(s);
    expect(text.split("\n")[2]).toMatch(/^FIRST BROKEN: b2\/h2, period 1: state transfer/);
    expect(text).toMatch(/fail-safe: b2 \(step transfer over budget\); b4 \(peer b2/);
  });

  it("is the first board's fail-safe when no step broke before it (a silent peer)", () => {
    const s = summaryOf(
      [transfer("b2", "h2", 10_000, "over-budget")],
      [
        failsafeEvent("b3", 9_000, "peer b6 silent for 1500 ms"),
        failsafeEvent("b1", 9_100, "peer b3 in fail-safe"),
      ],
    );
    expect(firstBroken(s)).toBe("b3 failed safe: peer b6 silent for 1500 ms");
  });

  it("is nothing when every promise held", () => {
    const s = summaryOf([transfer("b2", "h2", 1_000, "ok")], []);
    expect(firstBroken(s)).toBeUndefined();
    expect(renderSummary(s)).not.toMatch(/FIRST BROKEN/);
  });
});

describe("a corrupted stored state in the summary", () => {
  const loaded = loadTestbedFile(path.resolve("wiring/examples/rig-6.yaml"));
  if (!loaded.ok) throw new Error("rig-6.yaml does not load");
  const testbed = loaded.testbed;
  let t = 0;
  const at = (event: RigEvent): StampedEvent =>
    ({ ...event, atMs: t, wallMs: t++ }) as StampedEvent;
  const fault = at({
    kind: "fault",
    host: "h5",
    detail: "stored state corrupted (checkpoint.smw)",
  });
  const note = (host: string, n: StateNote) => at({ kind: "host-state", host, note: n });
  const rejected = note("h5", {
    kind: "checkpoint-rejected",
    why: "/some/run/hosts/h5/state/checkpoint.smw: the state does not match the digest in the header",
  });
  const transferred = note("h5", {
    kind: "transferred",
    seq: 640,
    partitions: 16,
    sizeBytes: 9000,
  });
  const recovered = note("h5", { kind: "recovered", seq: 640 });
  const summary = (events: StampedEvent[]) =>
    summarize({
      title: "t",
      testbed,
      records: { steps: [], triggers: [], periods: [], unreadable: [] },
      events,
      load: undefined,
      periodsWanted: 0,
    });

  it("holds when the replica refused the checkpoint at boot and then recovered from its peers", () => {
    const s = summary([fault, rejected, transferred, recovered]);
    const promise = s.promises.find((p) => p.name.startsWith("corrupted state of h5"));
    expect(promise).toMatchObject({
      name: "corrupted state of h5 detected and recovered from peers",
      held: true,
      detail:
        "detected (checkpoint.smw: the state does not match the digest in the header), recovered from peers at checkpoint 640, 16 partitions (9000 bytes) fetched",
    });
    expect(renderSummary(s)).toMatch(/^corrupted state of h5: detected \(checkpoint\.smw: /m);
    // Fetched for one checkpoint, recovered at a later one: both named.
    const later = note("h5", { kind: "recovered", seq: 672 });
    expect(
      summary([fault, rejected, transferred, later]).promises.find((p) =>
        p.name.startsWith("corrupted state of h5"),
      )?.detail,
    ).toBe(
      "detected (checkpoint.smw: the state does not match the digest in the header), recovered from peers at checkpoint 672, 16 partitions (9000 bytes) fetched for checkpoint 640",
    );
  });

  it("is broken when nothing refused it, when it did not recover, or when the notes came before the fault", () => {
    const broken = (events: StampedEvent[]) =>
      summary(events).promises.find((p) => p.name.startsWith("corrupted state of h5"));
    expect(broken([fault, recovered])).toMatchObject({
      held: false,
      detail: "NOT detected, NOT recovered",
    });
    expect(broken([fault, rejected])).toMatchObject({ held: false });
    expect(broken([rejected, recovered, fault])).toMatchObject({ held: false });
    // Another host's notes say nothing of h5.
    const h4 = note("h4", { kind: "checkpoint-rejected", why: "checkpoint.smw: bad magic" });
    expect(broken([fault, h4, recovered])).toMatchObject({ held: false });
  });
});

describe("the timeline (Figure 3)", () => {
  it("is well-formed SVG with a row per group, a bar per step run and the deadlines marked", () => {
    const steps = [
      ...run("b1", 0, 1_000, {
        shutdown: 100,
        checkOS: 10,
        checkSM: 20,
        boot: 2000,
        transfer: 3000,
      }),
      ...run("b2", 0, 6_200, {
        shutdown: 300,
        checkOS: 30,
        restoreOS: 400,
        checkSM: 40,
        boot: 1000,
        transfer: 1000,
      }),
    ];
    (steps[steps.length - 1] as StepRow).verdict = "over-budget";
    const svg = renderTimelineSvg({
      title: "test <run>",
      groups: [["h1"], ["h2"]],
      boardOf: new Map([
        ["h1", "b1"],
        ["h2", "b2"],
      ]),
      steps,
      triggers: [{ board: "b1", period: 0, plannedMs: 1_000, actualMs: 1_001, latenessMs: 1 }],
      periods: [],
      tPMs: 20_000,
      tDMs: 15_000,
      tLocalexecMs: 13_000,
    });
    expect(XMLValidator.validate(svg)).toBe(true);
    expect(svg).toContain("group 1: h1");
    expect(svg).toContain("group 2: h2");
    expect(svg).toContain("test &lt;run&gt;");
    expect(svg.match(/<title>/g)).toHaveLength(11); // 5 + 6 steps that ran
    expect(svg).toContain("T_d deadline");
    expect(svg).toContain("period 0 (T_p)");
    expect(svg.match(/stroke="#d62728" stroke-width="2"/g)).toHaveLength(1);
  });

  it("says so when nothing was recorded", () => {
    const svg = renderTimelineSvg({
      title: "empty",
      groups: [["h1"]],
      boardOf: new Map(),
      steps: [],
      triggers: [],
      periods: [],
      tPMs: 1,
      tDMs: 1,
      tLocalexecMs: 1,
    });
    expect(XMLValidator.validate(svg)).toBe(true);
    expect(svg).toContain("no rejuvenation was recorded");
  });
});

describe("the clients' history in the summary", () => {
  const loaded = loadTestbedFile(path.resolve("wiring/examples/rig-6.yaml"));
  if (!loaded.ok) throw new Error("rig-6.yaml does not load");
  const testbed = loaded.testbed;
  const load = (history: LoadFigures["history"]): LoadFigures => ({
    completed: history.filter((e) => e.type !== "invoke").length,
    failed: 0,
    history,
    longestStallMs: 0,
    longestStallEndWallMs: undefined,
    latenciesMs: [1],
    completedAtWallMs: [1],
    refused: { "no-lease": 3, "stale-epoch": 1 },
    startedAtWallMs: 0,
    durationMs: 1000,
    clients: 2,
    pauseMs: 20,
  });
  const put = (process: number, value: string, t: number): LoadFigures["history"] => [
    { process, type: "invoke", f: "put", key: "k1", value, time: t },
    { process, type: "ok", f: "put", key: "k1", value, time: t + 5 },
  ];
  const get = (process: number, value: string | null, t: number): LoadFigures["history"] => [
    { process, type: "invoke", f: "get", key: "k1", value: null, time: t },
    { process, type: "ok", f: "get", key: "k1", value, time: t + 5 },
  ];
  const summaryOf = (history: LoadFigures["history"]) =>
    summarize({
      title: "t",
      testbed,
      records: { steps: [], triggers: [], periods: [], unreadable: [] },
      events: [],
      load: load(history),
      periodsWanted: 0,
    });

  it("holds when the history is linearizable, and says how many operations were checked", () => {
    const s = summaryOf([...put(0, "a", 10), ...get(1, "a", 20)]);
    expect(s.history).toMatchObject({ operations: 2, linearizable: true });
    expect(s.promises.find((p) => p.name === "the clients' history is linearizable")?.held).toBe(
      true,
    );
    expect(renderSummary(s)).toMatch(
      /^history: 2 operations, linearizable \(checked in \d+ ms\)$/m,
    );
    expect(renderSummary(s)).toMatch(/^client operations \(2 clients, 20 ms pause\): 2 completed/m);
    // What the clients refused, by why: a key its board no longer leases shows here.
    expect(renderSummary(s)).toMatch(/^replies the clients refused: 3 no-lease, 1 stale-epoch$/m);
  });

  it("gives the throughput while a host was rejuvenated, the rest's, and their ratio", () => {
    const s = summarize({
      title: "t",
      testbed,
      records: { steps: [], triggers: [], periods: [], unreadable: [] },
      events: [
        { kind: "host-down", host: "h1", detail: "", atMs: 2000, wallMs: 2000 },
        {
          kind: "host-state",
          host: "h1",
          note: { kind: "recovered", seq: 64 },
          atMs: 3000,
          wallMs: 3000,
        },
      ] as StampedEvent[],
      // 150 completed in the second from 2 s, 900 in the 3 s either side of it.
      load: {
        ...load([]),
        completed: 1050,
        startedAtWallMs: 0,
        durationMs: 4000,
        completedAtWallMs: [
          ...Array.from({ length: 600 }, (_, i) => i * 3),
          ...Array.from({ length: 150 }, (_, i) => 2000 + i * 6),
          ...Array.from({ length: 300 }, (_, i) => 3000 + i * 3),
        ],
      },
      periodsWanted: 0,
    });
    expect(renderSummary(s)).toMatch(
      /^client ops\/s while a host was being rejuvenated \(held in reset until its replica recovered\): 150 ops\/s over 1000 ms \(0\.50 of the rest's\); the rest of the run: 300 ops\/s over 3000 ms$/m,
    );
  });

  it("is broken by a stale read, naming the operations that cannot be ordered", () => {
    const s = summaryOf([...put(0, "a", 10), ...put(0, "b", 20), ...get(1, "a", 30)]);
    const promise = s.promises.find((p) => p.name === "the clients' history is linearizable");
    expect(promise?.held).toBe(false);
    expect(promise?.detail).toMatch(
      /3 operations, NOT linearizable: key k1: process 0 put "a" .*process 0 put "b" .*process 1 get -> "a"/,
    );
    expect(firstBroken(s)).toMatch(/^the clients' history is linearizable: /);
  });
});

describe("the client load split by rejuvenation", () => {
  const at = (wallMs: number, event: Record<string, unknown>) =>
    ({ ...event, atMs: wallMs, wallMs }) as StampedEvent;
  const down = (host: string, wallMs: number) =>
    at(wallMs, { kind: "host-down", host, detail: "" });
  const recovered = (host: string, wallMs: number) =>
    at(wallMs, { kind: "host-state", host, note: { kind: "recovered", seq: 64 } });

  it("counts what completed from a host's reset to its replica's recovery, overlaps merged, apart from the rest", () => {
    const split = loadDuringRejuvenation(
      [
        down("h1", 1000),
        recovered("h1", 2000),
        down("h2", 1800), // overlaps h1's: one interval, 1000 to 2500
        recovered("h2", 2500),
        down("h3", 9500), // still down when the load ends at 10000
      ],
      {
        startedAtWallMs: 0,
        durationMs: 10_000,
        completedAtWallMs: [500, 1200, 1900, 2400, 2600, 5000, 9600, 9999],
      },
    );
    expect(split.rejuvenating).toEqual({ ms: 1500 + 500, completed: 5 });
    expect(split.otherwise).toEqual({ ms: 8000, completed: 3 });
  });

  it("splits it by phase: held in reset, booting until the board's boot step ended, recovering", () => {
    const up = (host: string, wallMs: number) => at(wallMs, { kind: "host-up", host, detail: "" });
    const booted = (board: string, wallMs: number) =>
      at(wallMs, { kind: "board", board, msg: "step finished", fields: { step: "boot" } });
    const events = [
      down("h1", 1000),
      // Another board's boot step, and a host-up of a host not being rejuvenated: no phase.
      booted("b2", 1100),
      up("h2", 1150),
      up("h1", 1200),
      booted("b1", 1700),
      recovered("h1", 2000),
      down("h3", 3000),
      up("h3", 3100),
      down("h3", 3300), // down again while booting: its reset starts again
      up("h3", 3400),
      booted("b3", 3600),
      recovered("h3", 3900),
    ];
    const load = {
      startedAtWallMs: 0,
      durationMs: 10_000,
      completedAtWallMs: [1050, 1250, 1300, 1800, 3050, 3350, 3500, 3700, 5000],
    };
    const boards = new Map([
      ["h1", "b1"],
      ["h2", "b2"],
      ["h3", "b3"],
    ]);
    const split = loadDuringRejuvenation(events, load, boards);
    expect(split.rejuvenating).toEqual({ ms: 1000 + 900, completed: 8 });
    expect(split.phases).toEqual({
      reset: { ms: 200 + 100 + 100, completed: 3 },
      booting: { ms: 500 + 200 + 200, completed: 3 },
      recovering: { ms: 300 + 300, completed: 2 },
    });
    // Without the boards, booting lasts until recovered.
    expect(loadDuringRejuvenation(events, load).phases.booting).toEqual({
      ms: 800 + 200 + 500,
      completed: 5,
    });
  });

  it("is all the rest when nothing was rejuvenated", () => {
    expect(
      loadDuringRejuvenation([], {
        startedAtWallMs: 100,
        durationMs: 1000,
        completedAtWallMs: [200, 300],
      }),
    ).toEqual({
      rejuvenating: { ms: 0, completed: 0 },
      otherwise: { ms: 1000, completed: 2 },
      phases: {
        reset: { ms: 0, completed: 0 },
        booting: { ms: 0, completed: 0 },
        recovering: { ms: 0, completed: 0 },
      },
    });
  });
});
