import { JoinCore } from "@smw/wormhole-board";
import { describe, expect, it } from "vitest";

const boards = ["b1", "b2", "b3"];
const join = (startMs = 0) =>
  new JoinCore({
    self: "b1",
    boards,
    leadMs: 2_000,
    deadlineMs: 30_000,
    silenceBoundMs: 500,
    plannedPeriodMs: 10_000,
    deliveryBoundMs: 20,
    startMs,
  });

describe("joining", () => {
  it("commits the latest proposal a silence bound before it, once every peer proposes", () => {
    const j = join(100);
    expect(j.proposal).toBe(3_000); // 100 ms + 2 s lead, up to the whole second
    j.heardFrom("b2", { schedule: 3_000, joined: false }, 200);
    // b3 started a second later: its fresh proposal is a second later too.
    j.heardFrom("b3", { schedule: 4_000, joined: false }, 1_100);
    expect(j.tick(1_200)).toBeUndefined();
    expect(j.proposal).toBe(4_000);
    j.heardFrom("b2", { schedule: 4_000, joined: false }, 3_400);
    j.heardFrom("b3", { schedule: 4_000, joined: false }, 3_450);
    expect(j.tick(3_500)).toEqual({ kind: "joined", schedule: 4_000, firstIndex: 0 });
  });

  it("calls it a cold start only while every peer is heard lately, joining, none in fail-safe", () => {
    const j = join(0);
    j.heardFrom("b2", { schedule: 2_000, joined: false }, 100);
    expect(j.allPeersJoining(150)).toBe(false); // b3 not heard yet
    j.heardFrom("b3", { schedule: 2_000, joined: false }, 200);
    expect(j.allPeersJoining(250)).toBe(true);
    expect(j.allPeersJoining(800)).toBe(false); // b2 silent for more than the bound
    // A peer running a schedule: its host's replica may remember; not a cold start.
    j.heardFrom("b2", { schedule: 2_000, joined: true }, 900);
    j.heardFrom("b3", { schedule: 2_000, joined: false }, 900);
    expect(j.allPeersHealthy(950)).toBe(true);
    expect(j.allPeersJoining(950)).toBe(false);
    j.heardFrom(
      "b2",
      { schedule: 2_000, joined: false, failsafe: { origin: "b2", reason: "x" } },
      1_000,
    );
    expect(j.allPeersJoining(1_050)).toBe(false);
  });

  it("takes no proposal from a board in fail-safe, nor one further ahead than a fresh one", () => {
    const j = join(0);
    // A board restarted with its fail-safe latched once advertised a schedule a year out.
    j.heardFrom(
      "b2",
      { schedule: 365 * 86_400_000, joined: false, failsafe: { origin: "b2", reason: "drill" } },
      100,
    );
    j.heardFrom("b3", { schedule: 365 * 86_400_000, joined: false }, 100);
    expect(j.tick(200)).toBeUndefined();
    expect(j.proposal).toBe(2_000);
    // Neither counts as a peer that proposes: at the commit point, a later proposal instead.
    expect(j.tick(1_500)).toBeUndefined();
    expect(j.proposal).toBe(4_000);
  });

  it("follows a peer's fail-safe only if that peer was heard out of it since joining began", () => {
    const j = join(0);
    const failsafe = { origin: "b2", reason: "x" };
    j.heardFrom("b2", { schedule: 0, joined: false, failsafe }, 100);
    // Latched before this join: waited for (an operator may be clearing the boards one by one).
    expect(j.isFreshFailsafe("b2")).toBe(false);
    j.heardFrom("b3", { schedule: 2_000, joined: false }, 100);
    j.heardFrom("b3", { schedule: 2_000, joined: false, failsafe }, 200);
    // Heard healthy, then in fail-safe: a fresh trigger.
    expect(j.isFreshFailsafe("b3")).toBe(true);
  });

  it("calls the peers healthy only once every one was heard lately, none in fail-safe", () => {
    const j = join(0);
    j.heardFrom("b2", { schedule: 2_000, joined: false }, 100);
    expect(j.allPeersHealthy(150)).toBe(false); // b3 not heard yet
    j.heardFrom("b3", { schedule: 2_000, joined: false }, 200);
    expect(j.allPeersHealthy(250)).toBe(true);
    expect(j.allPeersHealthy(700)).toBe(false); // b2 not heard within a silence bound
    j.heardFrom("b2", { schedule: 0, joined: false, failsafe: { origin: "b2", reason: "x" } }, 710);
    expect(j.allPeersHealthy(720)).toBe(false);
  });

  it("joins a running schedule at its next trigger still to come", () => {
    const j = join(25_000);
    j.heardFrom("b2", { schedule: 1_000, joined: true }, 25_100);
    // Triggers at 1 s + i·10 s: 21 s has gone by, 31 s is next.
    expect(j.tick(25_200)).toEqual({ kind: "joined", schedule: 1_000, firstIndex: 3 });
  });

  it("refuses peers that run different schedules", () => {
    const j = join(0);
    j.heardFrom("b2", { schedule: 1_000, joined: true }, 100);
    j.heardFrom("b3", { schedule: 2_000, joined: true }, 100);
    expect(j.tick(200)).toMatchObject({ kind: "failed", reason: /different schedules/ });
  });

  it("fails at its deadline, naming who was in fail-safe and who was never heard", () => {
    const j = join(0);
    for (let t = 0; t < 30_000; t += 100)
      j.heardFrom("b2", { schedule: 0, joined: false, failsafe: { origin: "b2", reason: "x" } }, t);
    expect(j.nextWakeupMs()).toBeLessThanOrEqual(30_000);
    let verdict: ReturnType<JoinCore["tick"]>;
    for (let t = 0; t <= 30_000 && verdict === undefined; t += 100) verdict = j.tick(t);
    expect(verdict).toEqual({
      kind: "failed",
      reason: "joining did not complete within 30000 ms: b2 in fail-safe, nothing heard from b3",
    });
  });
});
