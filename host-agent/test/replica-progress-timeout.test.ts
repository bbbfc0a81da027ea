/**
 * The timeout a waiting request gives its primary grows after views that execute nothing, and
 * falls back once a request executes (PBFT's rule; `progress-timeout.ts`).
 */
import { describe, expect, it } from "vitest";
import { parseEnvelope } from "../src/replica/messages.js";
import { replicaCluster } from "./replica-cluster.js";

const TIMEOUT_MS = 500;

describe("the progress timeout", () => {
  it("doubles after each view that executes nothing, up to 16 times, and falls back once a request executes", () => {
    const c = replicaCluster(4, 1, 0, { viewChangeTimeoutMs: TIMEOUT_MS });
    for (const id of c.ids) c.boot(id, { recovering: false });
    c.deliver(() => true);
    c.run(300, () => true);
    // Every primary's proposals are lost on the way: no view executes anything.
    let dropPrePrepares = true;
    const pass = (m: { message: Buffer }) =>
      !(dropPrePrepares && parseEnvelope(m.message)?.body.type === "PRE_PREPARE");
    const request = c.request(1, { op: "put", key: "k", value: "v" });
    for (const id of c.ids) c.fromClient(id, request);
    // For r2: when it entered each view, and how long it stayed before asking for the next.
    const r2 = c.cores.get("r2");
    let enteredAtMs = c.nowMs;
    let seen = 0;
    const staysMs: number[] = [];
    const watch = (untilMs: number) => {
      while (c.nowMs < untilMs) {
        c.run(10, pass);
        const actions = c.sent.get("r2") ?? [];
        for (const a of actions.slice(seen)) {
          if (a.type === "view") enteredAtMs = c.nowMs;
          const body = a.type === "broadcast" ? parseEnvelope(a.message)?.body : undefined;
          if (body?.type === "VIEW_CHANGE") staysMs.push(c.nowMs - enteredAtMs);
        }
        seen = actions.length;
      }
    };
    watch(c.nowMs + 50_000);
    expect(r2?.executedUpTo).toBe(0);
    // Rounded, for the steps of 10 ms. The first wait, in view 0, is longer: a backup times a
    // request once it knows enough replicas hold it (HOLDs). Then each view that executed
    // nothing doubles the next one's, up to 16 times (8 s).
    const rounded = staysMs.map((ms) => Math.round(ms / 100) * 100);
    expect(rounded.slice(1, 8)).toEqual([500, 1000, 2000, 4000, 8000, 8000, 8000]);
    // The proposals get through: the request executes, and the next request waits as long as
    // the first did, in view 0, before its primary is suspected.
    dropPrePrepares = false;
    watch(c.nowMs + 10_000);
    expect(r2?.executedUpTo).toBeGreaterThan(0);
    dropPrePrepares = true;
    const next = c.request(2, { op: "put", key: "k", value: "w" });
    for (const id of c.ids) c.fromClient(id, next);
    const askedAtMs = c.nowMs;
    const before = staysMs.length;
    while (staysMs.length === before && c.nowMs < askedAtMs + 20_000) watch(c.nowMs + 10);
    expect(c.nowMs - askedAtMs).toBe(staysMs[0]);
    expect(staysMs[0]).toBeLessThan(2 * TIMEOUT_MS);
  });
});
