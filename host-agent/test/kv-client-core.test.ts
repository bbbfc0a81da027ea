/**
 * The client's side: a result is taken once k'+1 replicas sent the same signed reply; a reply
 * that could change nothing (to no request outstanding) costs no signature check.
 */
import { certificateSigningBytes } from "@smw/wiring";
import { describe, expect, it } from "vitest";
import { KvClientCore } from "../src/client/kv-client-core.js";
import { KeyRing, type Signer } from "../src/replica/key-ring.js";
import { sealEnvelope } from "../src/replica/messages.js";
import { SimCrypto } from "../src/sim/sim-crypto.js";

describe("the client's core", () => {
  it("takes k'+1 matching signed replies, refuses a forged one, and leaves late ones unchecked", () => {
    const crypto = new SimCrypto(5);
    let verified = 0;
    const scheme = {
      verify: (key: string, bytes: Buffer, sig: string) => {
        verified++;
        return crypto.verify(key, bytes, sig);
      },
    };
    const ids = ["r1", "r2", "r3", "r4"];
    const boards = new Map(ids.map((id) => [id, crypto.newSigner(`b-${id}`)]));
    const signers = new Map(ids.map((id) => [id, crypto.newSigner(id)]));
    const ring = new KeyRing(
      scheme,
      new Map([...boards].map(([id, s]) => [id, s.publicKey])),
      new Map(),
    );
    for (const id of ids) {
      const body = {
        host: id,
        board: id,
        period: 1,
        publicKey: (signers.get(id) as Signer).publicKey,
        issuedAt: "t",
      };
      ring.install({
        ...body,
        signature: (boards.get(id) as Signer).sign(certificateSigningBytes(body)),
      });
    }
    const client = new KvClientCore(
      { id: "c1", replicas: ids, weakQuorum: 2, retransmitMs: 500, firstTs: 0 },
      ring,
      crypto.newSigner("c1"),
    );
    client.submit({ op: "get", key: "x" }, 0);
    const reply = (id: string, value: string, signer = signers.get(id) as Signer) =>
      sealEnvelope(
        id,
        1,
        { type: "REPLY", view: 0, client: "c1", ts: 1, result: { op: "get", value } },
        (b) => signer.sign(b),
      );
    verified = 0;
    // r4's reply signed with r1's key: refused.
    const forged = client.onMessage("r4", reply("r4", "evil", signers.get("r1")), 1);
    expect(forged).toEqual([{ type: "problem", from: "r4", detail: "a REPLY with bad-signature" }]);
    expect(client.onMessage("r1", reply("r1", "good"), 2)).toEqual([]);
    const done = client.onMessage("r2", reply("r2", "good"), 3);
    expect(done).toMatchObject([{ type: "complete", result: { op: "get", value: "good" } }]);
    expect(verified).toBe(3);
    // The rest arrive after the result was taken: no signature is checked for them.
    expect(client.onMessage("r3", reply("r3", "good"), 4)).toEqual([]);
    expect(client.onMessage("r4", reply("r4", "good"), 5)).toEqual([]);
    expect(verified).toBe(3);
    expect(client.counters.get("replies.late")).toBe(2);
  });
});
