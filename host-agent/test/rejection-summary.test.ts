import { describe, expect, it } from "vitest";
import { type ReplicaAction, senderProven } from "../src/replica/replica-core.js";
import { RejectionSummary } from "../src/service/rejection-summary.js";
import { fourReplicas } from "./replica-harness.js";

describe("a replica's refusals in its log", () => {
  it("writes the first of each kind from each sender, then one summary line per interval", () => {
    const lines: string[] = [];
    const summary = new RejectionSummary((line) => lines.push(line), 5_000);
    for (let i = 0; i < 1_000; i++)
      summary.note("unknown-epoch", "h3", `STATUS under epoch ${i}`, i);
    summary.note("bad-signature", "h2", "PREPARE", 10);
    summary.note("bad-signature", "h2", "PREPARE", 11);
    summary.flush(4_000);
    expect(lines).toEqual([
      "rejected unknown-epoch from h3: STATUS under epoch 0 (first of its kind; more are counted)",
      "rejected bad-signature from h2: PREPARE (first of its kind; more are counted)",
    ]);
    summary.flush(5_001);
    expect(lines.slice(2)).toEqual([
      "rejected in the last 5.0 s: 999 unknown-epoch from h3, 1 bad-signature from h2",
    ]);
    // Nothing new: no line.
    summary.flush(20_000);
    expect(lines).toHaveLength(3);
  });

  it("keeps its memory bounded whatever senders a flood names", () => {
    const lines: string[] = [];
    const summary = new RejectionSummary((line) => lines.push(line), 1_000, 4);
    for (let i = 0; i < 10_000; i++) summary.note("malformed", `forged-${i}`, "x", 0);
    summary.flush(1_000);
    expect(lines).toHaveLength(5);
    expect(lines[4]).toBe(
      "rejected in the last 1.0 s: 9992 malformed from others, 1 malformed from forged-4, 1 malformed from forged-5, 1 malformed from forged-6, 1 malformed from forged-7",
    );
  });

  it("says a sender was only named, not proven, where nothing proved it sent the message", () => {
    const lines: string[] = [];
    const summary = new RejectionSummary((line) => lines.push(line), 1_000);
    summary.note("bad-mac", "h2", "PREPARE under epoch 3", 0, false);
    summary.note("bad-mac", "h2", "PREPARE under epoch 3", 1, false);
    summary.note("bad-pre-prepare", "h2", "PRE_PREPARE 9: batch does not check out", 2, true);
    summary.flush(1_001);
    expect(lines).toEqual([
      "rejected bad-mac said to be from h2: PREPARE under epoch 3 (first of its kind; more are counted)",
      "rejected bad-pre-prepare from h2: PRE_PREPARE 9: batch does not check out (first of its kind; more are counted)",
      "rejected in the last 1.0 s: 1 bad-mac said to be from h2",
    ]);
  });

  it("names the sender of what only a proven sender can be refused for, and no other", () => {
    for (const kind of [
      "bad-mac",
      "bad-signature",
      "stale-epoch",
      "unknown-epoch",
      "revoked-key",
      "no-session",
      "malformed",
      "bad-certificate",
      "unknown-client",
    ] as const)
      expect(senderProven(kind), kind).toBe(false);
    for (const kind of [
      "bad-pre-prepare",
      "bad-view-change",
      "bad-new-view",
      "diverged",
      "handler-fault",
      "bad-request",
      "bad-holders",
    ] as const)
      expect(senderProven(kind), kind).toBe(true);
  });

  it("a caller that knows the sender proven says so: a client on its proven connection, a certificate in a checked KEYS", () => {
    const { core, from, cert } = fourReplicas("r2");
    const problems = (actions: ReplicaAction[]) =>
      actions.flatMap((a) => (a.type === "problem" ? [[a.kind, a.senderProven]] : []));
    // A client's message that does not parse: its connection proved the client.
    expect(problems(core.onClientMessage("c1", Buffer.from("not json"), 1))).toEqual([
      ["malformed", true],
    ]);
    // A certificate whose board signature fails: in r3's KEYS (signed by r3, checked), r3 sent
    // it; in a NEW_KEY, read before any signature of its sender's, no one is proven.
    const forged = { ...cert("r4", 3), signature: cert("r4", 4).signature };
    expect(
      problems(core.onMessage(from("r3", { type: "KEYS", certificates: [forged] }), 2)),
    ).toEqual([["bad-certificate", true]]);
    expect(
      problems(core.onMessage(from("r4", { type: "NEW_KEY", certificate: forged }), 3)),
    ).toEqual([["bad-certificate", false]]);
  });
});
