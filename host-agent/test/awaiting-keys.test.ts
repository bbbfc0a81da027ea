/**
 * The store of messages a replica cannot check yet (`awaiting-keys.ts`): what becomes due when,
 * what is dropped, and its bounds.
 */
import { describe, expect, it } from "vitest";
import {
  AWAITING_SESSION_BYTES_PER_PEER,
  AwaitingKeys,
  KEPT_MESSAGE_OVERHEAD_BYTES,
  type KeptFor,
  MAX_KEPT_SESSION_BYTES,
} from "../src/replica/awaiting-keys.js";

const message = (text: string, epoch: number, keptFor: KeptFor = "unknown-epoch") => ({
  wire: Buffer.from(text),
  epoch,
  keptFor,
});
const texts = (store: AwaitingKeys) => store.takeDue().map((m) => m.wire.toString());

describe("messages awaiting their sender's key or half", () => {
  it("are due when the key of the epoch they name comes, SESSIONs first; earlier epochs dropped, later ones kept", () => {
    const store = new AwaitingKeys();
    store.keep("r2", message("a@5", 5), false);
    store.keep("r2", message("b@6", 6), false);
    store.keep("r2", message("c@7", 7), false);
    store.keep("r2", message("s@6", 6), true);
    store.keep("r3", message("d@6", 6), false);
    store.keyInstalled("r2", 6);
    expect(texts(store)).toEqual(["s@6", "b@6"]);
    // a@5 was dropped (stale under key 6); c@7 waits for key 7.
    store.keyInstalled("r2", 7);
    expect(texts(store)).toEqual(["c@7"]);
    store.keyInstalled("r2", 5);
    expect(texts(store)).toEqual([]);
    // Another peer's are its own.
    expect(store.bytesOf("r3").messages).toBe(3 + KEPT_MESSAGE_OVERHEAD_BYTES);
  });

  it("kept for a half are due only when a half at their epoch comes, and only those", () => {
    const store = new AwaitingKeys();
    store.keep("r2", message("m@6", 6, "no-session"), false);
    store.keep("r2", message("u@7", 7), false);
    store.halfLearned("r2", 5);
    expect(texts(store)).toEqual([]);
    store.halfLearned("r2", 6);
    expect(texts(store)).toEqual(["m@6"]);
    store.halfLearned("r2", 6);
    expect(texts(store)).toEqual([]);
    expect(store.bytesOf("r2").messages).toBe(3 + KEPT_MESSAGE_OVERHEAD_BYTES);
  });

  it("are bounded in bytes per peer, the oldest dropped first, each counted with its overhead", () => {
    const bound = 10 * (100 + KEPT_MESSAGE_OVERHEAD_BYTES);
    const store = new AwaitingKeys(bound);
    for (let i = 0; i < 10; i++)
      expect(store.keep("r2", message(`${i}`.padEnd(100, "."), 6), false)).toEqual({
        kept: true,
        dropped: 0,
      });
    expect(store.keep("r2", message("x".repeat(150), 6), false)).toEqual({
      kept: true,
      dropped: 2,
    });
    expect(store.bytesOf("r2").messages).toBe(8 * 100 + 150 + 9 * KEPT_MESSAGE_OVERHEAD_BYTES);
    // Larger than the bound: not kept, nothing dropped.
    expect(store.keep("r2", message("y".repeat(bound), 6), false)).toEqual({
      kept: false,
      dropped: 0,
    });
    store.keyInstalled("r2", 6);
    const due = texts(store);
    expect(due).toHaveLength(9);
    expect(due[0]?.[0]).toBe("2");
    expect(due.at(-1)).toBe("x".repeat(150));
    expect(store.bytesOf("r2").messages).toBe(0);
  });

  it("keep SESSIONs apart: others' traffic cannot push one out, a duplicate or an oversized one is not kept", () => {
    const store = new AwaitingKeys(4 * (100 + KEPT_MESSAGE_OVERHEAD_BYTES));
    store.keep("r2", message("session", 6), true);
    for (let i = 0; i < 100; i++) store.keep("r2", message(`${i}`.padEnd(100, "."), 6), false);
    expect(store.keep("r2", message("session", 6), true).kept).toBe(false);
    expect(store.keep("r2", message("s".repeat(MAX_KEPT_SESSION_BYTES + 1), 6), true).kept).toBe(
      false,
    );
    expect(store.bytesOf("r2").sessions).toBe(7 + KEPT_MESSAGE_OVERHEAD_BYTES);
    store.keyInstalled("r2", 6);
    const due = texts(store);
    expect(due[0]).toBe("session");
    expect(due).toHaveLength(5);
  });

  it("SESSIONs fill a budget of their own, the oldest pushed out first", () => {
    const store = new AwaitingKeys();
    const each = 200;
    const fit = Math.floor(AWAITING_SESSION_BYTES_PER_PEER / (each + KEPT_MESSAGE_OVERHEAD_BYTES));
    for (let i = 0; i <= fit; i++) store.keep("r2", message(`${i}`.padEnd(each, "."), 6), true);
    store.keyInstalled("r2", 6);
    const due = texts(store);
    expect(due).toHaveLength(fit);
    expect(due[0]?.startsWith("1.")).toBe(true);
  });

  it("copy what they keep out of the buffer it came in", () => {
    const store = new AwaitingKeys();
    const pooled = Buffer.from("a small frame");
    expect(pooled.buffer.byteLength).toBeGreaterThan(pooled.length);
    store.keep("r2", { wire: pooled, epoch: 6, keptFor: "unknown-epoch" }, false);
    pooled.write("overwritten!!");
    store.keyInstalled("r2", 6);
    const [kept] = store.takeDue();
    expect(kept?.wire.toString()).toBe("a small frame");
    expect(kept?.wire.buffer.byteLength).toBe(kept?.wire.length);
  });
});
