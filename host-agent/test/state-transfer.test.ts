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

describe("a state transfer whose checkpoint its vouchers no longer hold", () => {
  const transferOf = () =>
    new StateTransfer({ seq: 32, digest: "d32" }, new KvStore().snapshot(), ["r2", "r3"], 0, 200);
  const gone = { type: "NO_CHECKPOINT", seq: 32 } as const;

  it("asks each voucher once, then ends instead of going round them again", () => {
    const transfer = transferOf();
    transfer.start();
    const first = transfer.onReply("r2", gone, 5);
    expect(first.send).toEqual([{ to: "r3", body: { type: "FETCH_META", seq: 32 } }]);
    const last = transfer.onReply("r3", gone, 6);
    expect(last).toEqual({ send: [], gone: true });
    expect(transfer.finished).toBe(true);
    // Nothing more, whatever comes or however long it waits.
    expect(transfer.onReply("r2", gone, 7).send).toEqual([]);
    expect(transfer.tick(10_000).send).toEqual([]);
  });

  it("takes a NO_CHECKPOINT only from the voucher it asked: a replayed one does not end it", () => {
    const transfer = transferOf();
    transfer.start();
    // r3 was not asked: its answer (replayed, or forged in its name) changes nothing.
    expect(transfer.onReply("r3", gone, 5)).toEqual({ send: [] });
    const step = transfer.onReply("r2", gone, 6);
    expect(step.gone).toBeUndefined();
    expect(step.send).toEqual([{ to: "r3", body: { type: "FETCH_META", seq: 32 } }]);
  });

  it("goes on with the next voucher while one that was silent may still hold it", () => {
    const transfer = transferOf();
    transfer.start();
    // r2 is silent: after the retry interval r3 is asked, and says it no longer holds it; r2 is
    // asked again (it never said so).
    expect(transfer.tick(250).send).toEqual([{ to: "r3", body: { type: "FETCH_META", seq: 32 } }]);
    const step = transfer.onReply("r3", gone, 260);
    expect(step.gone).toBeUndefined();
    expect(step.send).toEqual([{ to: "r2", body: { type: "FETCH_META", seq: 32 } }]);
  });
});
