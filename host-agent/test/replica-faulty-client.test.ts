/**
 * A client that sends its requests to too few replicas (SAFETY.md, "A client that sends to too
 * few replicas") costs the service at most one view change, not one per request: real cores,
 * n = 4, k' = 1, the network in the test's hands. c1 is a correct client writing to every
 * replica throughout; c2 is the faulty one.
 */
import { describe, expect, it } from "vitest";
import { replicaCluster } from "./replica-cluster.js";

type Cluster = ReturnType<typeof replicaCluster>;

/** The primary of the highest view any running core is in. */
function currentPrimary(c: Cluster): string {
  let best = { view: -1, primary: "" };
  for (const core of c.cores.values())
    if (core.currentView > best.view) best = { view: core.currentView, primary: core.primary };
  return best.primary;
}

const highestView = (c: Cluster) => Math.max(...[...c.cores.values()].map((x) => x.currentView));

/**
 * `rounds` rounds of 250 ms: in each, c1 writes x = round to every running replica and c2 writes
 * f = round to the replicas `faultyTo` picks; then one more second for what is in flight.
 */
function load(c: Cluster, rounds: number, faultyTo: (primary: string) => readonly string[]) {
  const running = [...c.cores.keys()];
  for (let round = 1; round <= rounds; round++) {
    const correct = c.request(round, { op: "put", key: "x", value: `${round}` });
    for (const id of running) c.fromClient(id, correct);
    const faulty = c.request(round, { op: "put", key: "f", value: `${round}` }, "c2");
    for (const id of faultyTo(currentPrimary(c))) c.fromClient(id, faulty);
    c.run(250, () => true);
  }
  c.run(1_000, () => true);
}

function bootAll(c: Cluster, ids: readonly string[]): void {
  for (const id of ids) c.boot(id, { recovering: false });
  c.deliver(() => true);
}

describe("a client that sends its requests to too few replicas", () => {
  it("to the primary alone: one view change suspects it, and then none follows", () => {
    const c = replicaCluster(4, 1, 0);
    bootAll(c, c.ids);
    load(c, 40, (primary) => [primary]);
    // Its first request stalled a batch: one view change, in which every replica named it.
    expect(highestView(c)).toBe(1);
    for (const [id, core] of c.cores) {
      expect(core.counters.get("clients.suspected"), id).toBe(1);
      // Every write of c1 was executed, the last one included; none of c2's ever was.
      expect(core.readValue("x"), id).toBe("40");
      expect(core.readValue("f"), id).toBeNull();
      expect(core.status, id).toBe("normal");
    }
    // The primary held the suspect's requests back, one at a time.
    expect(c.cores.get("r2")?.counters.get("requests.held-back")).toBeGreaterThan(30);
  });

  it("to one backup alone: no timer starts, no replica leaves the view", () => {
    const c = replicaCluster(4, 1, 0);
    bootAll(c, c.ids);
    load(c, 40, () => ["r3"]);
    expect(highestView(c)).toBe(0);
    for (const [id, core] of c.cores) {
      expect(core.status, id).toBe("normal");
      expect(core.readValue("x"), id).toBe("40");
      expect(core.readValue("f"), id).toBeNull();
    }
    // r3 said it held them; one holder is not enough for a correct primary to propose them.
    expect(c.cores.get("r3")?.counters.get("holds.sent")).toBeGreaterThan(0);
  });

  it("to every backup but not the primary: the primary proposes on their HOLDs, no view change", () => {
    const c = replicaCluster(4, 1, 0);
    bootAll(c, c.ids);
    load(c, 20, (primary) => c.ids.filter((id) => id !== primary));
    expect(highestView(c)).toBe(0);
    for (const [id, core] of c.cores) {
      expect(core.readValue("x"), id).toBe("20");
      expect(core.readValue("f"), id).toBe("20");
    }
    expect(c.cores.get("r1")?.counters.get("requests.from-holds")).toBe(20);
  });

  it("a Byzantine replica's HOLD to one backup alone is relayed: that backup does not suspect a correct primary", () => {
    // r4 is Byzantine and otherwise silent; r1, r2, r3 are correct (q = 3: all of them).
    const c = replicaCluster(4, 1, 0);
    bootAll(c, ["r1", "r2", "r3"]);
    // c2 sends its requests to the primary alone: the batch after c1's next write stalls, one
    // view change follows, and c2 is a suspect.
    load(c, 3, (primary) => [primary]);
    expect(highestView(c)).toBe(1);
    const primary = currentPrimary(c);
    expect(primary).toBe("r2");
    for (const core of c.cores.values()) expect(core.counters.get("clients.suspected")).toBe(1);

    // Now it sends to the primary and r3 alone, and r4 tells r3 alone that it holds it too.
    const request = c.request(7, { op: "put", key: "f", value: "seven" }, "c2");
    c.fromClient("r2", request);
    c.fromClient("r3", request);
    c.hand("r3", c.speakAs("r4", { type: "HOLD", request }));
    c.run(2_000, () => true);
    // r3 counted two holders and relayed r4's HOLD to r2, which then counted two and proposed it.
    expect(c.cores.get("r3")?.counters.get("holds.relayed")).toBeGreaterThan(0);
    for (const [id, core] of c.cores) {
      expect(core.readValue("f"), id).toBe("seven");
      expect(core.status, id).toBe("normal");
    }
    expect(highestView(c)).toBe(1);
  });
});
