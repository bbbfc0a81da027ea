import { describe, expect, it } from "vitest";
import type { KvOperation, KvResult } from "../src/kv/kv-operation.js";
import type { ClientRequest } from "../src/replica/messages.js";
import { HistoryChecker } from "../src/sim/history-checker.js";

const req = (client: string, ts: number, op: KvOperation): ClientRequest => ({
  client,
  ts,
  op,
});
const put = (key: string, value: string): KvOperation => ({ op: "put", key, value });
const get = (key: string): KvOperation => ({ op: "get", key });

function done(
  client: string,
  ts: number,
  op: KvOperation,
  result: KvResult,
  invokedMs: number,
  completedMs: number,
) {
  return { client, ts, op, result, invokedMs, completedMs };
}

describe("the history checker", () => {
  it("accepts a history the execution order explains", () => {
    const h = new HistoryChecker();
    h.onExecuted("r1", 1, "d1", [req("a", 1, put("x", "1"))]);
    h.onExecuted("r2", 1, "d1", [req("a", 1, put("x", "1"))]);
    h.onExecuted("r1", 2, "d2", [req("b", 1, get("x"))]);
    h.onCompleted(done("a", 1, put("x", "1"), { op: "put", previous: null }, 0, 10));
    h.onCompleted(done("b", 1, get("x"), { op: "get", value: "1" }, 5, 20));
    h.checkLinearizable();
    expect(h.violations).toEqual([]);
  });

  it("catches two correct replicas executing different batches at one sequence number", () => {
    const h = new HistoryChecker();
    h.onExecuted("r1", 1, "d1", []);
    h.onExecuted("r2", 1, "d9", []);
    expect(h.violations[0]).toMatch(/agreement: r2 executed batch d9 at seq 1, r1 executed d1/);
  });

  it("catches different checkpoint digests", () => {
    const h = new HistoryChecker();
    h.onCheckpoint("r1", 8, "aaaa");
    h.onCheckpoint("r3", 8, "bbbb");
    expect(h.violations[0]).toMatch(/agreement: r3 has checkpoint bbbb at seq 8/);
  });

  it("catches a result the model would not give (e.g. a forged reply accepted)", () => {
    const h = new HistoryChecker();
    h.onExecuted("r1", 1, "d1", [req("a", 1, get("x"))]);
    h.onCompleted(done("a", 1, get("x"), { op: "get", value: "forged" }, 0, 10));
    h.checkLinearizable();
    expect(h.violations[0]).toMatch(/returned .*forged.*the model says .*null/);
  });

  it("catches an order that contradicts real time", () => {
    const h = new HistoryChecker();
    // b's read was invoked after a's write completed, yet executed before it.
    h.onExecuted("r1", 1, "d1", [req("b", 1, get("x"))]);
    h.onExecuted("r1", 2, "d2", [req("a", 1, put("x", "1"))]);
    h.onCompleted(done("a", 1, put("x", "1"), { op: "put", previous: null }, 0, 10));
    h.onCompleted(done("b", 1, get("x"), { op: "get", value: null }, 20, 30));
    h.checkLinearizable();
    expect(h.violations.join("\n")).toMatch(
      /b#1 was ordered before a#1, which completed before it was invoked/,
    );
  });

  it("catches a completed operation no correct replica executed, and gaps", () => {
    const h = new HistoryChecker();
    h.onCompleted(done("a", 1, put("x", "1"), { op: "put", previous: null }, 0, 10));
    h.checkLinearizable();
    expect(h.violations[0]).toMatch(/a#1 completed but no correct replica executed it/);
    const g = new HistoryChecker();
    g.onExecuted("r1", 2, "d2", []);
    g.checkLinearizable();
    expect(g.violations[0]).toMatch(/no correct replica executed seq 1/);
  });

  it("executes a retransmitted request once, as the replicas do", () => {
    const h = new HistoryChecker();
    h.onExecuted("r1", 1, "d1", [req("a", 1, put("x", "1"))]);
    h.onExecuted("r1", 2, "d2", [req("a", 1, put("x", "1")), req("a", 2, put("x", "2"))]);
    h.onCompleted(done("a", 2, put("x", "2"), { op: "put", previous: "1" }, 0, 10));
    h.checkLinearizable();
    expect(h.violations).toEqual([]);
  });

  describe("a cold start whose correct replicas settled on different checkpoints", () => {
    // A Byzantine primary showed two NEW_VIEWs for the cold start's first view: r1 settled on
    // checkpoint 4, r5 on checkpoint 2, reported in that order. The era starts from the one its
    // first execution follows (seed 2658: the checker took the last reported, and called the
    // era's executions from 5 on a gap at 3).
    const era = () => {
      const h = new HistoryChecker();
      for (let seq = 1; seq <= 4; seq++) {
        h.onExecuted("r1", seq, `d${seq}`, [req("a", seq, put("x", String(seq)))]);
        h.onCompleted(
          done(
            "a",
            seq,
            put("x", String(seq)),
            {
              op: "put",
              previous: seq === 1 ? null : String(seq - 1),
            },
            10 * seq,
            10 * seq + 5,
          ),
        );
      }
      h.onCheckpoint("r1", 2, "cp2");
      h.onCheckpoint("r1", 4, "cp4");
      h.beginColdStart();
      h.onColdStartCheckpoint("r1", 4, "cp4");
      h.onColdStartCheckpoint("r5", 2, "cp2");
      return h;
    };

    it("starts from the later one when the era goes on from there", () => {
      const h = era();
      h.onExecuted("r1", 5, "e5", [req("a", 5, put("x", "5"))]);
      h.onCompleted(done("a", 5, put("x", "5"), { op: "put", previous: "4" }, 100, 110));
      h.checkLinearizable();
      expect(h.violations).toEqual([]);
      expect(h.lostCount).toBe(0);
    });

    it("starts from the earlier one when the era goes on from there, the writes after it lost", () => {
      const h = era();
      h.onExecuted("r5", 3, "e3", [req("a", 5, put("x", "5"))]);
      h.onCompleted(done("a", 5, put("x", "5"), { op: "put", previous: "2" }, 100, 110));
      h.checkLinearizable();
      expect(h.violations).toEqual([]);
      expect(h.lostCount).toBe(2);
    });
  });

  describe("unordered reads", () => {
    const read = (
      client: string,
      ts: number,
      value: string | null,
      atSeq: number,
      from: number,
      to: number,
    ) => ({
      ...done(client, ts, get("x"), { op: "get", value }, from, to),
      readAtSeq: atSeq,
    });
    const history = () => {
      const h = new HistoryChecker();
      h.onExecuted("r1", 1, "d1", [req("a", 1, put("x", "1"))]);
      h.onExecuted("r1", 2, "d2", [req("a", 2, put("y", "2"))]);
      h.onExecuted("r1", 3, "d3", [req("a", 3, put("x", "3"))]);
      h.onCompleted(done("a", 1, put("x", "1"), { op: "put", previous: null }, 0, 10));
      h.onCompleted(done("a", 2, put("y", "2"), { op: "put", previous: null }, 11, 20));
      h.onCompleted(done("a", 3, put("x", "3"), { op: "put", previous: "1" }, 21, 30));
      return h;
    };

    it("places a read after everything that completed before it, where its result still holds", () => {
      // Answers agreed on the state after seq 1; y's write (seq 2) completed before the read
      // was invoked and x did not change until seq 3: the read sits after seq 2.
      const h = history();
      h.onCompleted(read("b", 1, "1", 1, 25, 26));
      h.checkLinearizable();
      expect(h.violations).toEqual([]);
    });

    it("catches a stale read: its result no longer held after what completed before it", () => {
      const h = history();
      h.onCompleted(read("b", 1, "1", 1, 31, 40));
      h.checkLinearizable();
      expect(h.violations.join("\n")).toMatch(
        /b#1 .*returned .*"1".*which no state from seq 1 to 3, after everything that completed before it was invoked, gives/,
      );
    });

    it("catches reads out of real-time order: a later read of an older state", () => {
      const h = history();
      // c's read saw seq 3's write and completed before d's read began, which saw the value before it.
      h.onCompleted(read("c", 1, "3", 3, 22, 24));
      h.onCompleted(read("d", 1, "1", 1, 25, 29));
      h.checkLinearizable();
      expect(h.violations.join("\n")).toMatch(/d#1 .*returned .*"1"/);
    });

    it("checks a read whose agreed state a later cold start kept, whatever later states answered it", () => {
      const h = history();
      for (let seq = 4; seq <= 12; seq++) h.onExecuted("r1", seq, `e${seq}`, []);
      h.onCheckpoint("r1", 10, "cp10");
      // Stale (x was 3 from seq 3 on, completed at 30); agreed at 1; one correct answer from 12.
      h.onReadAnswered("b", 1, { since: 1, seq: 2, result: { op: "get", value: "1" } });
      h.onReadAnswered("b", 1, { since: 3, seq: 12, result: { op: "get", value: "3" } });
      h.onCompleted(read("b", 1, "1", 1, 31, 40));
      h.beginColdStart();
      h.onColdStartCheckpoint("r1", 10, "cp10");
      h.checkLinearizable();
      expect(h.violations.join("\n")).toMatch(/b#1 .*returned .*"1"/);
    });

    it("places a read no later than any correct replica had executed when it completed", () => {
      const h = history();
      // x is "1" again only at seq 4, executed after the read completed: not its place.
      h.onCompleted(read("b", 1, "1", 1, 31, 40));
      h.onExecuted("r1", 4, "d4", [req("a", 4, put("x", "1"))]);
      h.checkLinearizable();
      expect(h.violations.join("\n")).toMatch(/b#1 .*returned .*"1".*no state from seq 1 to 3/);
    });

    it("catches a correct replica's answer whose interval claims more than its states hold", () => {
      const h = history();
      // x was written at seq 3: "3" did not hold from seq 1.
      h.onReadAnswered("b", 1, { since: 1, seq: 3, result: { op: "get", value: "3" } });
      h.onCompleted(read("b", 1, "3", 3, 31, 40));
      h.checkLinearizable();
      expect(h.violations.join("\n")).toMatch(
        /read answer: a correct replica answered b#1 .* with .*"3".* over seq 1 to 3; the state at seq 1 gives .*"1"/,
      );
    });

    it("catches a read of a state no correct replica reached", () => {
      const h = history();
      h.onCompleted(read("b", 1, "3", 7, 31, 40));
      h.checkLinearizable();
      expect(h.violations.join("\n")).toMatch(
        /b#1 read the state at seq 7, which no correct replica executed/,
      );
    });
  });
});
