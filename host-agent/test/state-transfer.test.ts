import { describe, expect, it } from "vitest";
import { KvStore } from "../src/kv/kv-store.js";
import { FANOUT } from "../src/kv/partition-tree.js";
import { StateTransfer } from "../src/replica/state-transfer.js";

describe("a state transfer", () => {
  it("takes an answer for a checkpoint it no longer targets as stale, not as a peer's fault", () => {
    const transfer = new StateTransfer(
      { seq: 32, digest: "d32" },
      new KvStore().snapshot(),
      ["r2", "r3"],
      0,
      200,
    );
    expect(transfer.start().send).toEqual([{ to: "r2", body: { type: "FETCH_META", seq: 32 } }]);
    // r2's answer to a request this replica made for checkpoint 16, before it moved to 32.
    const step = transfer.onReply(
      "r2",
      { type: "META", seq: 16, kvRoot: "00", clients: [], metas: [] },
      10,
    );
    expect(step).toEqual({ send: [], stale: true });
    expect(transfer.finished).toBe(false);
  });

  it("names what is wrong with an answer for its checkpoint that does not check out", () => {
    const transfer = new StateTransfer(
      { seq: 32, digest: "d32" },
      new KvStore().snapshot(),
      ["r2", "r3"],
      0,
      200,
    );
    transfer.start();
    const metas = Array.from({ length: FANOUT }, () => "00".repeat(32));
    const step = transfer.onReply(
      "r2",
      { type: "META", seq: 32, kvRoot: "00", clients: [], metas },
      10,
    );
    expect(step.stale).toBeUndefined();
    expect(step.rejected).toBe("META does not match the checkpoint digest");
    // And the next peer is asked.
    expect(step.send).toEqual([{ to: "r3", body: { type: "FETCH_META", seq: 32 } }]);
  });
});
