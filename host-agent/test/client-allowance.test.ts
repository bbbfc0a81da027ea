/**
 * What a client may cost a replica (`client-allowance.ts`): a client is served while not in debt,
 * charged a fixed cost for every message it sends and each read answer's size, and refills at
 * the rate; a client in debt has whatever it sends dropped unread, and no other client is
 * touched; its host is told to leave its connections unread until it is paid back.
 */
import { describe, expect, it } from "vitest";
import { ClientAllowance, MESSAGE_COST_BYTES } from "../src/replica/client-allowance.js";
import { encodeClientMessage } from "../src/replica/messages.js";
import type { ReplicaAction } from "../src/replica/replica-core.js";
import { fourReplicas } from "./replica-harness.js";

describe("ClientAllowance", () => {
  it("answers while the client is not in debt, and refills at the rate", () => {
    const allowance = new ClientAllowance(1000, 500);
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
    const allowance = new ClientAllowance(1000, 500);
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
    expect(() => new ClientAllowance(0, 1)).toThrow(/above 0/);
    expect(() => new ClientAllowance(1, Number.NaN)).toThrow(/above 0/);
  });
});

const replies = (actions: ReplicaAction[]) => actions.filter((a) => a.type === "reply").length;

describe("a replica's allowance for a client's reads", () => {
  it("drops unread what a client in debt sends, answers the others, and the client again once refilled", () => {
    const { core } = fourReplicas("r2", { clientBytesPerSecond: 2000 });
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
    const { core } = fourReplicas("r2", { clientBytesPerSecond: 2000 });
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

describe("a replica's allowance for whatever a client sends", () => {
  it("charges every message, so one client replaying its request at network speed goes into debt alone", () => {
    const rate = 64 * MESSAGE_COST_BYTES;
    const { core, request, clientCopy } = fourReplicas("r2", { clientBytesPerSecond: rate });
    core.start(0);
    // A request of c1's, MAC'd under its session, sent again and again in one millisecond.
    const copy = clientCopy(request(1), 0);
    let held: number | undefined;
    let handled = 0;
    for (let i = 0; i < 500 && held === undefined; i++) {
      const actions = core.onClientMessage("c1", copy, 1);
      handled++;
      for (const a of actions) if (a.type === "hold-client") held = a.untilMs;
    }
    // In debt after about the burst's worth of messages (the session's own ones count too).
    expect(held).toBeDefined();
    expect(handled).toBeLessThanOrEqual(rate / MESSAGE_COST_BYTES);
    expect(handled).toBeGreaterThan(rate / MESSAGE_COST_BYTES / 2);
    const before = core.counters.get("client.over-allowance") ?? 0;
    core.onClientMessage("c1", copy, 1);
    expect(core.counters.get("client.over-allowance")).toBe(before + 1);
    // Another client is served meanwhile.
    const other = core.onClientMessage(
      "c2",
      encodeClientMessage({ type: "READ", client: "c2", ts: 1, op: { op: "get", key: "x" } }),
      1,
    );
    expect(replies(other)).toBe(1);
    // Paid back once the hold ends: c1's next message is read again (and, only just paid back,
    // it is in debt again at once).
    core.onClientMessage("c1", copy, held as number);
    expect(core.counters.get("client.over-allowance")).toBe(before + 1);
    // A second later the bucket is full again: no hold.
    const later = core.onClientMessage("c1", copy, (held as number) + 1000);
    expect(later.some((a) => a.type === "hold-client")).toBe(false);
  });
});
