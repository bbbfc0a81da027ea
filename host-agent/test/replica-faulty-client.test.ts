/**
 * A client that sends its requests to too few replicas (SAFETY.md, "A client that sends to too
 * few replicas") costs the service at most one view change, not one per request: real cores,
 * n = 4, k' = 1, the network in the test's hands. c1 is a correct client writing to every
 * replica throughout; c2 is the faulty one.
 */
import { describe, expect, it } from "vitest";
import {
  batchDigest,
  holdOf,
  parseEnvelope,
  type ReplicaBody,
  type ReplicaEnvelope,
} from "../src/replica/messages.js";
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

  it("to the primary alone, with nothing else pending anywhere: the stalled slot is timed itself", () => {
    // No correct client has a request waiting, so no backup times a request of its own; the
    // slot the primary filled with c2's request stalls every later one all the same (in the
    // simulation, seed 1150: after a cold start, the replies to c1 waited on a checkpoint
    // behind it). The backups time the slot, change views, and suspect c2.
    const c = replicaCluster(4, 1, 0);
    bootAll(c, c.ids);
    const request = c.request(1, { op: "put", key: "f", value: "1" }, "c2");
    c.fromClient("r1", request);
    c.run(2_000, () => true);
    expect(highestView(c)).toBe(1);
    for (const [id, core] of c.cores) {
      expect(core.counters.get("clients.suspected"), id).toBe(1);
      expect(core.status, id).toBe("normal");
    }
    // The view goes on: a correct write after it executes everywhere.
    const write = c.request(1, { op: "put", key: "x", value: "after" });
    for (const id of c.ids) c.fromClient(id, write);
    c.run(1_000, () => true);
    for (const [id, core] of c.cores) expect(core.readValue("x"), id).toBe("after");
  });

  it("a suspicion lapses after its time, and the next one lasts twice as long", () => {
    // T = 500 ms: a first suspicion lasts 32 T = 16 s, the second 64 T = 32 s.
    const c = replicaCluster(4, 1, 0);
    bootAll(c, c.ids);
    const counter = (name: string) =>
      [...c.cores.values()].map((core) => core.counters.get(name) ?? 0);
    c.fromClient(currentPrimary(c), c.request(1, { op: "put", key: "f", value: "1" }, "c2"));
    c.run(2_000, () => true);
    expect(highestView(c)).toBe(1);
    expect(counter("clients.suspected")).toEqual([1, 1, 1, 1]);
    c.run(12_000, () => true);
    expect(counter("clients.suspicion-lapsed")).toEqual([0, 0, 0, 0]);
    c.run(3_000, () => true);
    expect(counter("clients.suspicion-lapsed")).toEqual([1, 1, 1, 1]);
    // Back on the direct path: a write it sends to every replica is proposed at once.
    const heldBefore = counter("requests.held-back");
    const direct = c.request(2, { op: "put", key: "f", value: "2" }, "c2");
    for (const id of c.ids) c.fromClient(id, direct);
    c.run(200, () => true);
    for (const [id, core] of c.cores) expect(core.readValue("f"), id).toBe("2");
    expect(counter("requests.held-back")).toEqual(heldBefore);
    // Faulty again: one more view change suspects it, now for 64 T.
    c.fromClient(currentPrimary(c), c.request(3, { op: "put", key: "f", value: "3" }, "c2"));
    c.run(2_000, () => true);
    expect(highestView(c)).toBe(2);
    expect(counter("clients.suspected")).toEqual([2, 2, 2, 2]);
    c.run(28_000, () => true);
    expect(counter("clients.suspicion-lapsed")).toEqual([1, 1, 1, 1]);
    c.run(4_000, () => true);
    expect(counter("clients.suspicion-lapsed")).toEqual([2, 2, 2, 2]);
    expect(highestView(c)).toBe(2);
  });

  it("a suspicion a restarted replica noted later is not renewed by it and one Byzantine replica", () => {
    // c2 is suspected everywhere at about 2 s, until about 18 s. r4 is rejuvenated at 10 s and
    // notes the suspicion from the NEW_VIEW its peers send on to it (of view 1, which noted it),
    // so until about 26 s. At 19 s, when the others' suspicion has lapsed, r1 is rejuvenated, and
    // r3 (Byzantine) names c2 in its VIEW_CHANGE for the view made fresh for r1. Were VIEW_CHANGEs
    // to name the clients their senders still suspect, r4 would name c2 too: k' + 1, and the
    // others would suspect c2 again, for twice as long.
    const c = replicaCluster(4, 1, 0);
    bootAll(c, c.ids);
    const counter = (id: string, name: string) => c.cores.get(id)?.counters.get(name) ?? 0;
    c.fromClient(currentPrimary(c), c.request(1, { op: "put", key: "f", value: "1" }, "c2"));
    c.run(2_000, () => true);
    for (const id of c.ids) expect(counter(id, "clients.suspected"), id).toBe(1);
    c.run(8_000, () => true);
    c.rejuvenate("r4", { recovering: true });
    c.run(9_000, () => true);
    expect(counter("r2", "clients.suspicion-lapsed")).toBe(1);
    const viewBefore = highestView(c);
    c.rejuvenate("r1", { recovering: true });
    const naming = (m: InFlight) => {
      if (m.from !== "r3" || typeOf(m) !== "VIEW_CHANGE") return true;
      const body = parseEnvelope(m.message)?.body as Extract<ReplicaBody, { type: "VIEW_CHANGE" }>;
      c.hand(m.to, c.speakAs("r3", { ...body, suspects: ["c2"] }));
      return false;
    };
    c.run(3_000, naming);
    expect(highestView(c)).toBeGreaterThan(viewBefore);
    for (const id of ["r2", "r3"]) expect(counter(id, "clients.suspected"), id).toBe(1);
    expect(counter("r4", "clients.suspected")).toBe(1);
    // c2, correct now, is served on the direct path at once.
    const direct = c.request(2, { op: "put", key: "f", value: "2" }, "c2");
    for (const id of c.ids) c.fromClient(id, direct);
    c.run(300, () => true);
    for (const [id, core] of c.cores) expect(core.readValue("f"), id).toBe("2");
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
    // Proposed without a copy of its own; the writes c2 gave up on before they were proposed
    // (it sends the next every 250 ms) were dropped for the newer ones.
    expect(c.cores.get("r1")?.counters.get("requests.from-holds")).toBeGreaterThanOrEqual(5);
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
    c.hand("r3", c.speakAs("r4", holdOf(request)));
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

type InFlight = { from: string; to: string; message: Buffer };
const typeOf = (m: InFlight) =>
  (JSON.parse(m.message.toString("utf8").split("\n")[1] as string) as { type: string }).type;

describe("a faulty client with Byzantine replicas on its side", () => {
  it("n = 7, k' = 2: a request shown proposed to two backups only is still announced by them", () => {
    // c1's request R reaches r2 to r6. A PRE_PREPARE with R, in the primary's name, reaches r2
    // and r3 alone; the others get another batch at that number. Had r2 and r3 stopped
    // announcing R once they saw it proposed, the others would count three holders, fewer than
    // 2k' = 4, and no one would ever propose R or time it.
    const c = replicaCluster(7, 2, 0);
    bootAll(c, c.ids);
    const toTwo = (m: InFlight) =>
      !(m.from === "r1" && ["r2", "r3"].includes(m.to) && typeOf(m) === "PRE_PREPARE");
    const R = c.request(1, { op: "put", key: "x", value: "1" });
    for (const id of ["r2", "r3", "r4", "r5", "r6"]) c.fromClient(id, R);
    const origin = c.originOf("r1");
    const prePrepare = c.speakAs("r1", {
      type: "PRE_PREPARE",
      view: 0,
      seq: 1,
      digest: batchDigest(origin, [R]),
      origin,
      requests: [R],
    });
    c.hand("r2", prePrepare);
    c.hand("r3", prePrepare);
    const other = c.request(1, { op: "put", key: "q", value: "1" }, "c2");
    for (const id of c.ids) c.fromClient(id, other);
    c.run(10_000, toTwo);
    // r2 and r3 go on saying they hold R although they saw it proposed, so the others count
    // five holders: R is proposed by a primary that never had it (here r1 is a correct core
    // whose own PRE_PREPAREs r2 and r3 do not see) and executed everywhere.
    for (const id of ["r2", "r3", "r4", "r5", "r6"])
      expect(c.cores.get(id)?.readValue("x"), id).toBe("1");
    expect(c.cores.get("r1")?.counters.get("requests.from-holds")).toBe(1);
  });

  it("two requests held by different backups never share a batch", () => {
    // c2 and c3 give one request each to a different backup; r4 is Byzantine and silent but
    // for its HOLDs of both, to the primary and to the backup holding each, while c1's write is
    // in flight. In one batch, each
    // backup would wait for the request the other holds, and neither would vote.
    const c = replicaCluster(4, 1, 0);
    bootAll(c, ["r1", "r2", "r3"]);
    let ts = 0;
    for (let round = 1; round <= 3; round++) {
      const primary = currentPrimary(c);
      const [b1, b2] = ["r1", "r2", "r3"].filter((id) => id !== primary) as [string, string];
      const a = c.request(++ts, { op: "put", key: "f", value: `a${ts}` }, "c2");
      const b = c.request(++ts, { op: "put", key: "g", value: `b${ts}` }, "c3");
      c.fromClient(b1, a);
      c.fromClient(b2, b);
      c.run(300, () => true);
      const x = c.request(round, { op: "put", key: "x", value: `${round}` });
      c.fromClient(primary, x);
      c.hand(primary, c.speakAs("r4", holdOf(a)));
      c.hand(primary, c.speakAs("r4", holdOf(b)));
      // And to the backup holding each: with its own, two holders, whose HOLDs it relays.
      c.hand(b1, c.speakAs("r4", holdOf(a)));
      c.hand(b2, c.speakAs("r4", holdOf(b)));
      for (const id of [b1, b2]) c.fromClient(id, x);
      c.run(3_000, () => true);
    }
    expect(highestView(c)).toBe(0);
    for (const [id, core] of c.cores) expect(core.readValue("x"), id).toBe("3");
    // The primary proposed each from a backup's HOLDERS, never having had a copy of its own.
    const fromHolds = [...c.cores.values()].map(
      (core) => core.counters.get("requests.from-holds") ?? 0,
    );
    expect(fromHolds.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(6);
    for (const [id, core] of c.cores) {
      expect(core.readValue("f"), id).toBe(`a${ts - 1}`);
      expect(core.readValue("g"), id).toBe(`b${ts}`);
    }
  });

  it("a Byzantine HOLD that displaces its own at the primary does not keep the primary from counting it", () => {
    // r4 tells the primary it holds a made-up newer request of c2's, and sends its real HOLDs
    // to the backups only: the backup that counts two holders sends both HOLDs on, as signed.
    const c = replicaCluster(4, 1, 0);
    bootAll(c, c.ids);
    const notToPrimary = (m: InFlight) =>
      !(m.from === "r4" && m.to === currentPrimary(c) && typeOf(m) === "HOLD");
    for (let round = 0; round < 3; round++) {
      const primary = currentPrimary(c);
      const fake = c.request(10 * round + 5, { op: "put", key: "f", value: "fake" }, "c2");
      c.hand(primary, c.speakAs("r4", holdOf(fake)));
      const real = c.request(10 * round + 1, { op: "put", key: "f", value: `${round}` }, "c2");
      c.fromClient("r3", real);
      c.fromClient("r4", real);
      c.run(3_000, notToPrimary);
    }
    expect(highestView(c)).toBe(0);
    for (const [id, core] of c.cores) expect(core.readValue("f"), id).toBe("2");
    expect(c.cores.get("r1")?.counters.get("holders.received")).toBeGreaterThanOrEqual(3);
  });

  it("a flood of requests a client gave to one backup each crowds out no correct client's", () => {
    // r1, the primary, is silent. c2 gives 400 requests to each backup, none to any other.
    const c = replicaCluster(4, 1, 0);
    const correct = ["r2", "r3", "r4"];
    bootAll(c, correct);
    correct.forEach((id, i) => {
      for (let j = 1; j <= 400; j++)
        c.fromClient(id, c.request(i * 10_000 + j, { op: "put", key: "j", value: `${j}` }, "c2"));
    });
    c.run(300, () => true);
    const R = c.request(1, { op: "put", key: "x", value: "1" });
    for (const id of correct) c.fromClient(id, R);
    c.run(10_000, () => true);
    expect(highestView(c)).toBeGreaterThan(0);
    for (const id of correct) expect(c.cores.get(id)?.readValue("x"), id).toBe("1");
    // Each backup kept one of c2's at a time, the newest.
    for (const id of correct)
      expect(c.cores.get(id)?.counters.get("requests.superseded"), id).toBe(399);
  });
});

/** Settings as a testbed has them: a wider window, fuller batches, a longer timeout. */
const TESTBED_LIKE = {
  checkpointInterval: 64,
  batchMax: 16,
  maxInFlight: 4,
  viewChangeTimeoutMs: 2_000,
};

describe("what a Byzantine primary leaves behind for the views after it", () => {
  it("n = 7, k' = 2: thousands of junk requests from one view crowd out no correct client's HOLD", () => {
    // r1 (Byzantine, driven by the test) shows each of r3 to r7 its own 128 batches of 16 of
    // c2's requests, which c2 gives to that backup alone: 2048 each, more than the HOLDs a
    // replica sends in half a timeout. A view change follows; then r2, primary of view 1,
    // stands in for a Byzantine primary that ignores c1's request and every HOLD.
    const c = replicaCluster(7, 2, 0, TESTBED_LIKE);
    bootAll(c, c.ids.slice(1));
    const victims = ["r3", "r4", "r5", "r6", "r7"];
    let ts = 0;
    const origin = c.originOf("r1");
    for (const backup of victims) {
      const junk = [];
      for (let seq = 1; seq <= 128; seq++) {
        const requests = Array.from({ length: 16 }, () =>
          c.request(++ts, { op: "put", key: "j", value: `${ts}` }, "c2"),
        );
        junk.push(...requests);
        const digest = batchDigest(origin, requests);
        c.hand(
          backup,
          c.speakAs("r1", { type: "PRE_PREPARE", view: 0, seq, digest, origin, requests }),
        );
      }
      for (const request of junk) c.fromClient(backup, request);
    }
    c.run(6_000, () => true);
    expect(highestView(c)).toBe(1);
    const censoring = (m: InFlight) => !(m.to === "r2" && ["HOLD", "HOLDERS"].includes(typeOf(m)));
    const R = c.request(1, { op: "put", key: "x", value: "1" });
    for (const id of victims) c.fromClient(id, R);
    c.run(20_000, censoring);
    // Each backup kept one of c2's requests; c1's was announced, timed, and r2 replaced.
    for (const id of victims) expect(c.cores.get(id)?.readValue("x"), id).toBe("1");
    expect(highestView(c)).toBeGreaterThan(1);
  });

  it("clients a Byzantine primary made suspects of still have their requests batched together", () => {
    // r1 proposes made-up requests in the names of c1, c2 and c3 and ignores a real one: every
    // correct VIEW_CHANGE names all three. In view 1, a closed-loop load of the three.
    const c = replicaCluster(4, 1, 0, TESTBED_LIKE);
    const correct = ["r2", "r3", "r4"];
    bootAll(c, correct);
    const clients = ["c1", "c2", "c3"];
    const fake = clients.map((id) => c.request(1e9, { op: "put", key: "z", value: "fake" }, id));
    const origin = c.originOf("r1");
    const prePrepare = c.speakAs("r1", {
      type: "PRE_PREPARE",
      view: 0,
      seq: 1,
      digest: batchDigest(origin, fake),
      origin,
      requests: fake,
    });
    for (const id of correct) c.hand(id, prePrepare);
    const ignored = c.request(1, { op: "put", key: "c1", value: "1" });
    for (const id of correct) c.fromClient(id, ignored);
    c.run(6_000, () => true);
    expect(highestView(c)).toBe(1);
    const primary = c.cores.get("r2");
    expect(primary?.counters.get("clients.suspected")).toBe(3);
    const batchesBefore = primary?.counters.get("batches.proposed") ?? 0;
    const requestsBefore = primary?.counters.get("requests.proposed") ?? 0;
    const next = new Map([
      ["c1", 1],
      ["c2", 0],
      ["c3", 0],
    ]);
    const send = (client: string) => {
      const ts = (next.get(client) ?? 0) + 1;
      next.set(client, ts);
      const request = c.request(ts, { op: "put", key: client, value: `${ts}` }, client);
      for (const id of correct) c.fromClient(id, request);
    };
    for (const client of clients) send(client);
    let done = 0;
    for (let step = 0; step < 1_000; step++) {
      c.run(10, () => true);
      for (const client of clients)
        if (primary?.readValue(client) === `${next.get(client)}`) {
          done++;
          send(client);
        }
    }
    const batches = (primary?.counters.get("batches.proposed") ?? 0) - batchesBefore;
    const requests = (primary?.counters.get("requests.proposed") ?? 0) - requestsBefore;
    expect(done).toBeGreaterThan(100);
    // Every correct backup holds each suspect's request: they share a batch (one each: 1.0).
    expect(requests / batches).toBeGreaterThan(1.3);
    expect(highestView(c)).toBe(1);
    // Simulated time, a thousand rounds of four cores: 5 s alone, over 20 s on a loaded machine.
  }, 60_000);
});

describe("a HOLD whose sender was rejuvenated since", () => {
  it("no longer counts: the primary could not check it under the sender's new key", () => {
    // c2 gives its write to r4 alone, which says so to all; r4 is rejuvenated; then c2 gives it
    // to one backup. Counting r4's old HOLD and its own, that backup had 2k' = 2 holders: it
    // timed the write and sent the primary a HOLDERS whose old signature no correct primary
    // takes, and suspected it.
    const c = replicaCluster(4, 1, 0);
    bootAll(c, c.ids);
    c.run(300, () => true);
    const request = c.request(1, { op: "put", key: "f", value: "1" }, "c2");
    c.fromClient("r4", request);
    c.run(1_000, () => true);
    c.rejuvenate("r4", { recovering: true });
    c.run(3_000, () => true);
    const view = highestView(c);
    const backup = ["r1", "r2", "r3"].find((id) => id !== currentPrimary(c)) as string;
    const core = c.cores.get(backup);
    expect(core?.counters.get("holds.received")).toBeGreaterThan(0);
    const timeouts = core?.counters.get("view-change.timeout") ?? 0;
    c.fromClient(backup, request);
    c.run(5_000, () => true);
    expect(core?.counters.get("holds.sent")).toBeGreaterThan(0);
    expect(core?.counters.get("holds.relayed")).toBeUndefined();
    expect(core?.counters.get("view-change.timeout") ?? 0).toBe(timeouts);
    expect(highestView(c)).toBe(view);
    expect(core?.readValue("f")).toBeNull();
  });
});

describe("a HOLD from a Byzantine backup", () => {
  it("signed over a body that is not canonical is refused, as the primary would refuse it in a HOLDERS", () => {
    const c = replicaCluster(4, 1, 0);
    bootAll(c, c.ids);
    const request = c.request(1, { op: "put", key: "f", value: "1" }, "c2");
    // The same HOLD, its keys in another order: its signature checks over the bytes as sent.
    const text = JSON.stringify(holdOf(request));
    expect(parseEnvelope(c.speakAsText("r4", text))?.body).toEqual(holdOf(request));
    const before = c.sent.get("r3")?.length ?? 0;
    c.hand("r3", c.speakAsText("r4", text));
    const since = (c.sent.get("r3") ?? []).slice(before);
    expect(since.filter((a) => a.type === "problem" && a.kind === "bad-holders")).toHaveLength(1);
    expect(c.cores.get("r3")?.counters.get("holds.received")).toBeUndefined();
    // Written canonically, the same HOLD counts.
    c.hand("r3", c.speakAs("r4", holdOf(request)));
    expect(c.cores.get("r3")?.counters.get("holds.received")).toBe(1);
  });
});

describe("a HOLDERS message from a Byzantine backup", () => {
  it("with more HOLDs than there are backups is refused before any signature is checked", () => {
    const c = replicaCluster(4, 1, 0);
    bootAll(c, c.ids);
    const request = c.request(1, { op: "put", key: "f", value: "1" }, "c2");
    const hold = parseEnvelope(c.speakAs("r3", holdOf(request))) as ReplicaEnvelope;
    const signed = { from: hold.from, epoch: hold.epoch, sig: hold.sig };
    const before = c.sent.get("r1")?.length ?? 0;
    c.hand(
      "r1",
      c.speakAs("r4", { type: "HOLDERS", request, holds: Array.from({ length: 4 }, () => signed) }),
    );
    const problems = (c.sent.get("r1") ?? [])
      .slice(before)
      .filter((a) => a.type === "problem" && a.kind === "bad-holders");
    expect(problems).toHaveLength(1);
    expect(c.cores.get("r1")?.counters.get("holders.received")).toBeUndefined();
  });
});
