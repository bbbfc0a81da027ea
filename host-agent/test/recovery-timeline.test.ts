import { describe, expect, it } from "vitest";
import { RecoveryTimeline } from "../src/service/recovery-timeline.js";

describe("a recovering replica's timeline", () => {
  it("names each step of the recovery with its time since the start was asked", () => {
    const t = new RecoveryTimeline(1000, 1030, 1035);
    expect(t.note({ type: "learned", what: "key", host: "h2" }, 1040)).toBeUndefined();
    t.note({ type: "learned", what: "key", host: "h3" }, 1120);
    // A key learned again (a later rejuvenation of the peer) does not move the step.
    t.note({ type: "learned", what: "key", host: "h2" }, 1300);
    t.note({ type: "learned", what: "session", host: "h2" }, 1130);
    t.note({ type: "view", view: 11, primary: "h6" }, 1200);
    t.note({ type: "view", view: 12, primary: "h1" }, 1250);
    t.note({ type: "transfer-started", seq: 144 }, 1210);
    t.note({ type: "transferred", seq: 144, partitions: 8, bytes: 122 }, 1360);
    t.note({ type: "stable", seq: 144, digest: "d1" }, 1360);
    t.note({ type: "stable", seq: 160, digest: "d2" }, 1455);
    expect(t.note({ type: "recovered", seq: 160, digest: "d2" }, 1460)).toBe(
      "recovery steps since the start was asked: replica built +30 ms, listening +35 ms, " +
        "peers' keys learned +120 ms (2, the last h3), " +
        "their sessions +130 ms (1, the last h2), view 11 +200 ms, state of checkpoint 144 asked +210 ms, " +
        "state of checkpoint 144 installed +360 ms, checkpoint 160 stable +455 ms, " +
        "recovered at checkpoint 160 +460 ms",
    );
    // Once only.
    expect(t.note({ type: "recovered", seq: 176, digest: "d3" }, 1600)).toBeUndefined();
  });

  it("leaves out the steps a recovery did not take", () => {
    const t = new RecoveryTimeline(0);
    t.note({ type: "view", view: 3, primary: "h1" }, 50);
    t.note({ type: "stable", seq: 32, digest: "d" }, 70);
    expect(t.note({ type: "recovered", seq: 32, digest: "d" }, 80)).toBe(
      "recovery steps since the start was asked: view 3 +50 ms, checkpoint 32 stable +70 ms, " +
        "recovered at checkpoint 32 +80 ms",
    );
  });
});
