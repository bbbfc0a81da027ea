/**
 * Large messages sent again, spaced out (`large-resends.ts`): with writes of 1 MiB on a starved
 * CPU, copies sent again at fixed intervals filled every link ahead of the votes behind them, and
 * no write executed in 40 s. Small messages keep their fixed interval.
 */
import { describe, expect, it } from "vitest";
import { KvClientCore } from "../src/client/kv-client-core.js";
import { KeyRing } from "../src/replica/key-ring.js";
import {
  LARGE_MESSAGE_BYTES,
  LargeResends,
  MAX_DOUBLINGS,
  resendWaitMs,
} from "../src/replica/large-resends.js";
import { parseClientMessage } from "../src/replica/messages.js";
import { SimCrypto } from "../src/sim/sim-crypto.js";

describe("the wait before sending a message again", () => {
  it("is fixed for small messages and doubles for large ones, up to a bound", () => {
    expect(resendWaitMs(100, LARGE_MESSAGE_BYTES - 1, 5)).toBe(100);
    expect([0, 1, 2, 3].map((t) => resendWaitMs(100, LARGE_MESSAGE_BYTES, t))).toEqual([
      100, 200, 400, 800,
    ]);
    expect(resendWaitMs(100, 1 << 20, 50)).toBe(100 * 2 ** MAX_DOUBLINGS);
  });

  it("is kept per receiver", () => {
    const resends = new LargeResends();
    const large = LARGE_MESSAGE_BYTES;
    const at = (nowMs: number, to = "r2") => resends.take(to, large, 100, nowMs);
    expect([at(0), at(50), at(100), at(150), at(250), at(300), at(500)]).toEqual([
      true,
      false,
      true,
      false,
      false,
      true,
      false,
    ]);
    // Another receiver has its own count; a small message always goes.
    expect(at(10, "r3")).toBe(true);
    expect(resends.take("r2", 100, 100, 1)).toBe(true);
  });
});

describe("a client's request sent again", () => {
  function client() {
    const crypto = new SimCrypto(5);
    const ids = ["r1", "r2", "r3", "r4"];
    const ring = new KeyRing(crypto, new Map(), new Map());
    return new KvClientCore(
      { id: "c1", replicas: ids, replyQuorum: 3, retransmitMs: 500, firstTs: 1 },
      ring,
      crypto.newSigner("c1"),
    );
  }
  /** When (ms) the request went to r1 again, over 20 s of ticks every 10 ms. */
  function resentAt(value: string): number[] {
    const core = client();
    core.submit({ op: "put", key: "k", value }, 0);
    const at: number[] = [];
    for (let now = 10; now <= 20_000; now += 10)
      for (const a of core.tick(now))
        if (a.type === "send" && a.to === "r1" && parseClientMessage(a.message)?.type === "REQUEST")
          at.push(now);
    return at;
  }

  it("every retransmission interval when small, twice as long each time when large", () => {
    expect(resentAt("v")).toHaveLength(40);
    // 4 s at most between copies: a caller's timeout of 10 s still sees several.
    expect(resentAt("v".repeat(LARGE_MESSAGE_BYTES))).toEqual([
      500, 1000, 2000, 4000, 8000, 12000, 16000, 20000,
    ]);
  });
});
