/**
 * A replica's allowance of unordered read answers per client (`read-allowance.ts`): a client is
 * answered while not in debt, charged each answer's size, and refills at the rate; a client in
 * debt has whatever it sends dropped unread, and no other client is touched; its host is told to
 * leave its connections unread until it is paid back.
 */
import { describe, expect, it } from "vitest";
import { encodeClientMessage } from "../src/replica/messages.js";
import { ReadAllowance } from "../src/replica/read-allowance.js";
import type { ReplicaAction } from "../src/replica/replica-core.js";
import { fourReplicas } from "./replica-harness.js";

describe("ReadAllowance", () => {
  it("answers while the client is not in debt, and refills at the rate", () => {
    const allowance = new ReadAllowance(1000, 500);
    expect(allowance.mayAnswer("c1", 0)).toBe(true);
    // One answer larger than the burst is given, and leaves the client in debt.
    allowance.charge("c1", 1200, 0);
    expect(allowance.mayAnswer("c1", 0)).toBe(false);
    expect(allowance.mayAnswer("c2", 0)).toBe(true);
    // 700 bytes of debt at 1000 bytes a second: out of it after 700 ms, not before.
    expect(allowance.mayAnswer("c1", 699)).toBe(false);
    expect(allowance.mayAnswer("c1", 701)).toBe(true);
    // Refills no further than the burst.
    allowance.charge("c1", 1, 701);
    expect(allowance.mayAnswer("c1", 100_000)).toBe(true);
    allowance.charge("c1", 500, 100_000);
    expect(allowance.mayAnswer("c1", 100_000)).toBe(false);
  });

  it("says when a client in debt is paid back", () => {
    const allowance = new ReadAllowance(1000, 500);
    expect(allowance.paidBackAtMs("c1", 0)).toBeUndefined();
    allowance.charge("c1", 1200, 10);
    // 700 bytes of debt at 1000 bytes a second, from 10 ms: answered again from 711 ms.
    const at = allowance.paidBackAtMs("c1", 10) as number;
    expect(at).toBe(711);
    expect(allowance.mayAnswer("c1", at - 1)).toBe(false);
    expect(allowance.mayAnswer("c1", at)).toBe(true);
    expect(allowance.paidBackAtMs("c1", at)).toBeUndefined();
  });

  it("refuses a rate or burst that is not above 0", () => {
    expect(() => new ReadAllowance(0, 1)).toThrow(/above 0/);
    expect(() => new ReadAllowance(1, Number.NaN)).toThrow(/above 0/);
  });
});

const replies = (actions: ReplicaAction[]) => actions.filter((a) => a.type === "reply").length;

describe("a replica's read allowance", () => {
  it("drops unread what a client in debt sends, answers the others, and the client again once refilled", () => {
    const { core } = fourReplicas("r2", { readBytesPerClientPerSecond: 2000 });
    core.start(0);
    const read = (client: string, ts: number) =>
      encodeClientMessage({ type: "READ", client, ts, op: { op: "get", key: "x" } });
    // Each answer is a few hundred bytes: a 2000-byte burst gives a handful, then nothing.
    let answered = 0;
    for (let ts = 1; ts <= 50; ts++)
      answered += replies(core.onClientMessage("c1", read("c1", ts), 1));
    expect(answered).toBeGreaterThan(0);
    expect(answered).toBeLessThan(20);
    expect(core.counters.get("client.over-allowance")).toBe(50 - answered);
    // Another client is answered meanwhile.
    expect(replies(core.onClientMessage("c2", read("c2", 1), 1))).toBe(1);
    // A second later (2000 bytes refilled), c1 is answered again.
    expect(replies(core.onClientMessage("c1", read("c1", 51), 1001))).toBe(1);
  });
});

describe("a client in debt for its reads", () => {
  it("has its connections held until it is paid back: once when it goes into debt, again for what it sends meanwhile", () => {
    const { core } = fourReplicas("r2", { readBytesPerClientPerSecond: 2000 });
    core.start(0);
    const read = (ts: number) =>
      encodeClientMessage({ type: "READ", client: "c1", ts, op: { op: "get", key: "x" } });
    const holds: Array<{ client: string; untilMs: number; at: number }> = [];
    let answered = 0;
    let ts = 0;
    // Answered until the READ whose answer puts c1 in debt: that one brings the hold.
    while (holds.length === 0 && ts < 50) {
      const actions = core.onClientMessage("c1", read(++ts), 5);
      answered += replies(actions);
      for (const a of actions) if (a.type === "hold-client") holds.push({ ...a, at: ts });
    }
    expect(answered).toBe(ts);
    const first = holds[0] as { client: string; untilMs: number };
    expect(first.client).toBe("c1");
    // Held no longer than until it may be answered again, and not a millisecond less.
    expect(first.untilMs).toBeGreaterThan(5);
    const dropped = core.onClientMessage("c1", read(++ts), first.untilMs - 1);
    expect(replies(dropped)).toBe(0);
    expect(dropped).toContainEqual({ type: "hold-client", client: "c1", untilMs: first.untilMs });
    expect(replies(core.onClientMessage("c1", read(++ts), first.untilMs))).toBe(1);
    // A client in no debt is never held.
    const other = core.onClientMessage(
      "c2",
      encodeClientMessage({ type: "READ", client: "c2", ts: 1, op: { op: "get", key: "x" } }),
      5,
    );
    expect(other.some((a) => a.type === "hold-client")).toBe(false);
  });
});
