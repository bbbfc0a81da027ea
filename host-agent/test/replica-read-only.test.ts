/**
 * A replica answers an unordered READ at once from its executed state, naming the sequence
 * number and the read it answers; never while its state is not known good, never a write.
 */
import { describe, expect, it } from "vitest";
import {
  encodeClientMessage,
  parseClientMessage,
  parseEnvelope,
  readDigest,
} from "../src/replica/messages.js";
import type { ReplicaAction } from "../src/replica/replica-core.js";
import { fourReplicas } from "./replica-harness.js";

const replies = (actions: ReplicaAction[]) =>
  actions.flatMap((a) => (a.type === "reply" ? [parseEnvelope(a.message)?.body] : []));
const problems = (actions: ReplicaAction[]) =>
  actions.filter((a) => a.type === "problem").map((a) => (a as { kind: string }).kind);

describe("a replica's unordered reads", () => {
  const read = { client: "c1", ts: 42, op: { op: "get", key: "x" } } as const;
  const message = encodeClientMessage({ type: "READ", ...read });

  it("answers a read at once, from the state after the last batch it executed", () => {
    const { core } = fourReplicas("r2");
    core.start(0);
    expect(replies(core.onClientMessage("c1", message, 1))).toEqual([
      {
        type: "READ_REPLY",
        client: "c1",
        ts: 42,
        since: 0,
        seq: 0,
        op: readDigest(message),
        result: { op: "get", value: null },
      },
    ]);
  });

  it("names the read by the digest of the bytes it got: another read at the same number, another digest", () => {
    const { core } = fourReplicas("r2");
    core.start(0);
    const other = encodeClientMessage({ type: "READ", ...read, op: { op: "get", key: "y" } });
    const [first] = replies(core.onClientMessage("c1", message, 1));
    const [second] = replies(core.onClientMessage("c1", other, 2));
    expect(first).toMatchObject({ ts: 42, op: readDigest(message) });
    expect(second).toMatchObject({ ts: 42, op: readDigest(other) });
    expect(readDigest(other)).not.toBe(readDigest(message));
  });

  it("refuses a read on another client's connection, and a write sent as a read", () => {
    const { core } = fourReplicas("r2");
    core.start(0);
    expect(problems(core.onClientMessage("c2", message, 1))).toEqual(["bad-request"]);
    const write = Buffer.from(
      JSON.stringify({
        type: "READ",
        client: "c1",
        ts: 43,
        op: { op: "put", key: "x", value: "v" },
      }),
    );
    expect(parseClientMessage(write)).toBeUndefined();
    const actions = core.onClientMessage("c1", write, 2);
    expect(problems(actions)).toEqual(["malformed"]);
    expect(replies(actions)).toEqual([]);
  });

  it("does not answer while recovering: its state may be what an intruder left on its disk", () => {
    const { core } = fourReplicas("r2", {}, { recovering: true });
    core.start(0);
    expect(replies(core.onClientMessage("c1", message, 1))).toEqual([]);
    expect(core.counters.get("reads.not-answered")).toBe(1);
  });
});
