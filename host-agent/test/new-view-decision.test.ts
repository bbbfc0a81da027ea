import { describe, expect, it } from "vitest";
import { batchDigest, type ClientRequest } from "../src/replica/messages.js";
import { decideNewView, type ViewChangeBody } from "../src/replica/new-view-decision.js";
import { quorumsFor } from "../src/replica/quorums.js";

const q6 = quorumsFor(6, 1, 1); // quorum 4, weak 2
const NULL = batchDigest("", []);
const GENESIS = { seq: 0, digest: "0".repeat(64) };
const request = (ts: number): ClientRequest => ({
  client: "c1",
  ts,
  op: { op: "put", key: "k", value: `v${ts}` },
});
const A = [request(1)];
const B = [request(2)];
const dA = batchDigest("r1@0", A);
const dB = batchDigest("r1@0", B);

function vc(parts: Partial<ViewChangeBody>): ViewChangeBody {
  return {
    type: "VIEW_CHANGE",
    newView: 1,
    stable: GENESIS,
    checkpoints: [],
    prepared: [],
    prePrepared: [],
    batches: [],
    keyEpochs: [0, 0, 0, 0],
    ...parts,
  };
}

const preparedA = vc({
  prepared: [{ seq: 1, view: 0, digest: dA }],
  prePrepared: [{ seq: 1, view: 0, digest: dA }],
  batches: [{ digest: dA, origin: "r1@0", requests: A }],
});

describe("the new primary's decision", () => {
  it("waits for a quorum of VIEW_CHANGEs", () => {
    expect(decideNewView([vc({}), vc({}), vc({})], q6, 32, NULL)).toBeUndefined();
  });

  it("re-proposes a batch that prepared at k'+1 replicas (it may have committed)", () => {
    const d = decideNewView([preparedA, preparedA, vc({}), vc({})], q6, 32, NULL);
    expect(d?.proposals).toEqual([{ seq: 1, digest: dA }]);
    expect(d?.batches.get(dA)?.requests).toEqual(A);
  });

  it("does not take a batch only one (possibly Byzantine) replica claims: waits, then nulls it", () => {
    const lone = vc({
      prepared: [{ seq: 1, view: 0, digest: dB }],
      prePrepared: [{ seq: 1, view: 0, digest: dB }],
      batches: [{ digest: dB, origin: "r1@0", requests: B }],
    });
    // Three say nothing prepared, one claims B: neither a null quorum (4) nor k'+1 for B.
    expect(decideNewView([lone, vc({}), vc({}), vc({})], q6, 32, NULL)).toBeUndefined();
    const d = decideNewView([lone, vc({}), vc({}), vc({}), vc({})], q6, 32, NULL);
    expect(d?.proposals).toEqual([{ seq: 1, digest: NULL }]);
  });

  it("prefers the batch prepared in the later view", () => {
    const laterB = vc({
      prepared: [{ seq: 1, view: 2, digest: dB }],
      prePrepared: [
        { seq: 1, view: 2, digest: dB },
        { seq: 1, view: 0, digest: dA },
      ],
      batches: [{ digest: dB, origin: "r1@0", requests: B }],
      newView: 3,
    });
    const earlierA = { ...preparedA, newView: 3 };
    const d = decideNewView([laterB, laterB, earlierA, vc({ newView: 3 })], q6, 32, NULL);
    expect(d?.proposals).toEqual([{ seq: 1, digest: dB }]);
  });

  it("starts from the highest checkpoint k'+1 hold that a quorum is not beyond", () => {
    const cp = { seq: 8, digest: "a".repeat(64) };
    const at8 = vc({ stable: cp });
    const d = decideNewView([at8, at8, vc({}), vc({})], q6, 32, NULL);
    expect(d?.checkpoint).toEqual(cp);
    // One replica alone claiming a checkpoint is not enough: wait for a quorum not beyond genesis.
    expect(decideNewView([at8, vc({}), vc({}), vc({})], q6, 32, NULL)).toBeUndefined();
    const d2 = decideNewView([at8, vc({}), vc({}), vc({}), vc({})], q6, 32, NULL);
    expect(d2?.checkpoint).toEqual(GENESIS);
  });
});
