/** One board's core, fed by hand: what it refuses of recordings replayed into it. */

import { encodeControlFrame } from "@smw/wiring";
import { BoardCore, ControlLink, type ControlTransport } from "@smw/wormhole-board";
import { describe, expect, it } from "vitest";
import { base, boards, coreConfig } from "./sim-config.js";

/** Board b2's core; `startMs` and the rest as `overrides` say. */
const coreWith = (
  overrides: Partial<ConstructorParameters<typeof BoardCore>[0]> & { startMs: number },
) => new BoardCore(coreConfig({ self: "b2", ...overrides }));

// Started just before period 0: its peers are not silent yet when it begins.
const core = () => coreWith({ firstTriggerMs: 1_000, startMs: 800 });

describe("a board refuses recordings replayed into it", () => {
  it("a FAILSAFE sent longer ago than a silence bound", () => {
    const c = core();
    const message = { type: "FAILSAFE" as const, reason: "old", origin: "b1", sentAtMs: 100 };
    c.handle({ kind: "message", from: "b1", message, nowMs: 100 + base.silenceBoundMs + 1 });
    expect(c.phase).toBe("running");
    expect(c.failsafeState).toBeUndefined();
    // The same, fresh, is followed.
    c.handle({ kind: "message", from: "b1", message: { ...message, sentAtMs: 900 }, nowMs: 910 });
    expect(c.failsafeState).toMatchObject({ origin: "b1", reason: "old" });
  });

  it("a DONE of another schedule's period of the same number", () => {
    const c = core();
    c.handle({ kind: "time", nowMs: 1_000 });
    expect(c.scheduleState).toEqual({ period: 0, group: 0 });
    // b1 (group 1) finished period 0 of an earlier schedule: no DONE of this one.
    c.handle({
      kind: "message",
      from: "b1",
      message: { type: "DONE", period: 0, schedule: 500 },
      nowMs: 1_100,
    });
    expect(c.scheduleState).toEqual({ period: 0, group: 0 });
    const actions = c.handle({
      kind: "message",
      from: "b1",
      message: { type: "DONE", period: 0, schedule: 1_000 },
      nowMs: 1_200,
    });
    // Now group 2 (this board's) begins.
    expect(c.scheduleState).toEqual({ period: 0, group: 1 });
    expect(actions.some((a) => a.kind === "runStep" && a.step === "shutdown")).toBe(true);
  });

  // After a restart this board knows its peers' boot epochs, not how far their frames had got:
  // frames recorded earlier in a peer's current boot pass the link's replay window. Their stamp
  // gives them away.
  const hb = (sentAtMs: number | undefined, schedule: number, joined = true) => ({
    type: "HB" as const,
    period: 5,
    schedule,
    joined,
    ...(sentAtMs === undefined ? {} : { sentAtMs }),
  });

  it("a heartbeat of a peer's current boot, recorded before a fail-safe and its clearing", () => {
    // b2 restarted and is joining; b3 runs the schedule agreed after the clearing.
    const c = coreWith({ startMs: 2_100_000, clockOffsetBoundMs: 10 });
    c.handle({ kind: "message", from: "b3", message: hb(2_100_005, 2_000_000), nowMs: 2_100_010 });
    // b1's heartbeat of the schedule before the fail-safe, replayed.
    c.handle({ kind: "message", from: "b1", message: hb(1_080_000, 1_000_000), nowMs: 2_100_020 });
    c.handle({ kind: "time", nowMs: 2_100_050 });
    expect(c.failsafeState).toBeUndefined();
    expect(c.phase).not.toBe("failsafe");
  });

  it("a peer's first heartbeat of its boot, with no clock echo, replayed into a running board", () => {
    const c = coreWith({ firstTriggerMs: 1_000, startMs: 800, clockOffsetBoundMs: 10 });
    c.handle({ kind: "message", from: "b1", message: hb(-110_000, 0, false), nowMs: 900 });
    c.handle({ kind: "time", nowMs: 910 });
    expect(c.failsafeState).toBeUndefined();
    // A heartbeat that does not say when it was sent is refused too.
    c.handle({ kind: "message", from: "b1", message: hb(undefined, 1_000), nowMs: 920 });
    c.handle({ kind: "time", nowMs: 930 });
    expect(c.failsafeState).toBeUndefined();
  });

  it("the heartbeats of a peer whose clock is far behind: it fails safe as silent, and says why", () => {
    const c = coreWith({ firstTriggerMs: 1_000, startMs: 800, clockOffsetBoundMs: 10 });
    let failsafe: string | undefined;
    for (let nowMs = 800; nowMs <= 2_000 && failsafe === undefined; nowMs += 50) {
      for (const peer of boards.filter((b) => b !== "b2"))
        c.handle({
          kind: "message",
          from: peer,
          // b1's clock is 2 s behind ours; the others' are right.
          message: hb(peer === "b1" ? nowMs - 2_000 : nowMs, 1_000),
          nowMs,
        });
      c.handle({ kind: "time", nowMs });
      failsafe = c.failsafeState?.reason;
    }
    expect(failsafe).toMatch(
      /^board b1 silent for \d+ ms \(bound 500 ms\); \d+ frames of b1 refused as older than 510 ms \(the last stamped 2000 ms before it arrived: its clock behind ours, or recordings replayed\)$/,
    );
  });

  it("a frame of a peer's earlier boot, after this board restarted", async () => {
    const key = new Uint8Array(32).fill(3);
    const frame = (epoch: number) =>
      encodeControlFrame(
        {
          from: "b1",
          to: "b2",
          epoch,
          seq: 1,
          type: "HB",
          body: { period: 0, schedule: 0, joined: false },
        },
        key,
      ).slice(0, -1);
    const kept = new Map<string, number>();
    const boot = async () => {
      let deliver: (line: string) => void = () => {};
      const transport: ControlTransport = {
        name: "fake",
        oversized: 0,
        send: () => {},
        open: async (onLine) => {
          deliver = (line) => onLine(line, new Set(["b1"]));
        },
        close: async () => {},
      };
      const link = new ControlLink("b2", new Map([["b1", key]]), 1, transport, {
        known: new Map(kept),
        record: (peer, epoch) => kept.set(peer, epoch),
      });
      const heard: number[] = [];
      await link.open({ message: () => heard.push(1), authFailure: () => {} });
      return { link, heard, deliver: (line: string) => deliver(line) };
    };
    const first = await boot();
    first.deliver(frame(4));
    expect(kept.get("b1")).toBe(4);
    // b2 restarts: a frame recorded from b1's boot 3 is a replay; boot 4 and later are not.
    const second = await boot();
    second.deliver(frame(3));
    expect(second.link.counters.replayed).toBe(1);
    second.deliver(frame(4));
    second.deliver(frame(5));
    expect(second.heard).toHaveLength(2);
    expect(kept.get("b1")).toBe(5);
  });
});

describe("a joining board's key floor", () => {
  const joining = (lastKeyEpoch: number) => coreWith({ startMs: 5_000_000, lastKeyEpoch });
  const floorsSent = (actions: ReturnType<BoardCore["handle"]>) =>
    actions.flatMap((a) =>
      a.kind === "send" && a.message.type === "HB" ? [a.message.keyFloor] : [],
    );

  it("is one above the last key epoch certified before its join, or above its clock's second, and goes out in its heartbeats", () => {
    // The last key was certified at epoch 9000 (ahead of its clock, 5000 s): 9001.
    const ahead = joining(9_000);
    expect(ahead.keyFloor).toBe(9_001);
    expect(new Set(floorsSent(ahead.handle({ kind: "time", nowMs: 5_000_200 })))).toEqual(
      new Set([9_001]),
    );
    // Its record of the last epoch lost: the clock's second at the join, plus one.
    expect(joining(0).keyFloor).toBe(5_001);
    // A key certified while joining (its host released) leaves the floor of this join as it was;
    // the next join (after a fail-safe and a clear) floors it too.
    ahead.handle({ kind: "keyCertified", epoch: 9_050, nowMs: 5_000_300 });
    expect(ahead.keyFloor).toBe(9_001);
    ahead.handle({ kind: "localFault", reason: "test", nowMs: 5_000_400 });
    ahead.handle({ kind: "clearFailsafe", nowMs: 5_000_500 });
    expect(ahead.keyFloor).toBe(9_051);
    expect(new Set(floorsSent(ahead.handle({ kind: "time", nowMs: 5_000_700 })))).toEqual(
      new Set([9_051]),
    );
  });

  it("is what every certificate revokes below, per peer board, joining or running, the highest heard", () => {
    const c = joining(0);
    const peers = boards.filter((b) => b !== "b2");
    const hb = (peer: string, keyFloor: number, joined: boolean, nowMs: number) =>
      c.handle({
        kind: "message",
        from: peer,
        message: { type: "HB", period: -1, schedule: 0, joined, keyFloor, sentAtMs: nowMs },
        nowMs,
      });
    for (const [i, peer] of peers.entries()) hb(peer, 100 + i, i % 2 === 0, 5_000_100);
    expect(Object.fromEntries(c.keyFloors())).toEqual(
      Object.fromEntries(peers.map((b, i) => [b, 100 + i])),
    );
    // A heartbeat of a peer's earlier join, delayed, does not lower its floor; a later join raises it.
    hb(peers[0] as string, 50, false, 5_000_200);
    hb(peers[1] as string, 500, false, 5_000_200);
    expect(c.keyFloors().get(peers[0] as string)).toBe(100);
    expect(c.keyFloors().get(peers[1] as string)).toBe(500);
  });
});

describe("a board's rejuvenation", () => {
  it("is done, and its DONE goes, as soon as its last step is: the lease on its host's former key lapsed within the shutdown step", () => {
    const c = coreWith({
      firstTriggerMs: 1_000,
      startMs: 800,
      // Peers not heard from in these few seconds are not what this is about.
      silenceBoundMs: 60_000,
    });
    c.handle({ kind: "time", nowMs: 1_000 });
    let actions = c.handle({
      kind: "message",
      from: "b1",
      message: { type: "DONE", period: 0, schedule: 1_000 },
      nowMs: 1_200,
    });
    const seen = [...actions];
    let nowMs = 1_200;
    for (let i = 0; i < 10; i++) {
      const run = actions.find((a) => a.kind === "runStep");
      if (run?.kind !== "runStep") break;
      nowMs += 20;
      actions = c.handle({
        kind: "stepFinished",
        step: run.step,
        outcome: { ok: true, detail: "" },
        nowMs,
      });
      seen.push(...actions);
    }
    const done = seen.findIndex((a) => a.kind === "recoveryDone");
    expect(done).toBeGreaterThanOrEqual(0);
    expect(
      seen
        .slice(done)
        .some((a) => a.kind === "broadcast" && "message" in a && a.message.type === "DONE"),
    ).toBe(true);
    expect(c.scheduleState).toEqual({ period: 0, group: 2 });
  });
});
