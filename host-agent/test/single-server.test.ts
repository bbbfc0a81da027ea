/**
 * The unreplicated baseline (`smw kv serve --single`) takes requests as a replica does: on the
 * client's MAC under their session, so the benchmark's ratio compares like with like. A request
 * without one is not executed.
 */
import { describe, expect, it, vi } from "vitest";
import { KvClient } from "../src/client/kv-client.js";
import { ClientConnections } from "../src/net/client-connection.js";
import { Ed25519Scheme } from "../src/replica/ed25519.js";
import { encodeClientMessage, parseEnvelope } from "../src/replica/messages.js";
import { boardPublicKeys, clientSigner } from "../src/service/service-keys.js";
import { startSingle } from "../src/service/service-runtime.js";
import { makeServiceTestbed } from "../src/service/service-testbed.js";

describe("the unreplicated baseline", () => {
  it("executes MAC'd requests, answers reads, and executes no request without a MAC", async () => {
    const bed = makeServiceTestbed({ n: 4, kPrime: 1, k: 0, basePort: 27540 });
    const server = await startSingle(bed.testbed);
    const h1 = bed.testbed.hosts[0];
    if (h1 === undefined) throw new Error("no h1");
    const signer = clientSigner(bed.testbed, "client1");
    const client = new KvClient({
      id: "client1",
      replicas: { [h1.id]: h1.address },
      replyQuorum: 1,
      scheme: new Ed25519Scheme(),
      signer,
      boardKeys: boardPublicKeys(bed.testbed),
    });
    // A second connection as the same client (it proves the client's key), sending raw frames.
    const raw = new ClientConnections({
      clientId: "client1",
      replicas: { [h1.id]: h1.address },
      proveHello: (signed) => signer.sign(signed),
    });
    const received: string[] = [];
    raw.on("message", (_replica, payload) => {
      received.push(parseEnvelope(payload)?.body.type ?? payload.toString("utf8").slice(0, 40));
    });
    try {
      client.start();
      raw.start();
      expect((await client.call({ op: "put", key: "a", value: "1" })).result).toEqual({
        op: "put",
        previous: null,
      });
      expect(
        (await client.call({ op: "cas", key: "a", expected: "1", value: "2" })).result,
      ).toEqual({ op: "cas", ok: true, current: "2" });
      expect((await client.call({ op: "get", key: "a" })).result).toEqual({
        op: "get",
        value: "2",
      });
      const before = server.rejected;
      raw.send(
        h1.id,
        encodeClientMessage({
          type: "REQUEST",
          request: {
            client: "client1",
            ts: Date.now() * 1000 + 1e9,
            op: { op: "put", key: "a", value: "forged" },
          },
        }),
      );
      await vi.waitFor(() => expect(server.rejected).toBe(before + 1), { timeout: 5_000 });
      // Not executed.
      expect((await client.call({ op: "get", key: "a" })).result).toEqual({
        op: "get",
        value: "2",
      });
      // Replies go over every connection the client has open: none came for the forged one.
      expect(received.filter((type) => type === "REPLY")).toHaveLength(2);
      // Its summary, as `smw kv serve --single` prints it when stopped: two writes executed, the
      // gets answered as reads, the refusals (the forged request among them) counted.
      expect(server.summary()).toMatch(
        new RegExp(
          `^stopping after \\d+\\.\\d s: executed 2 requests, 2 reads answered, rejected ${server.rejected} messages, frames in \\d+ out \\d+, bytes in \\d+ out \\d+, dropped 0$`,
        ),
      );
    } finally {
      await client.close();
      await raw.close();
      await server.close();
      bed.remove();
    }
  }, 30_000);

  it("never gives a client another request's result: a client restarted with its clock set back reuses a number", async () => {
    const bed = makeServiceTestbed({ n: 4, kPrime: 1, k: 0, basePort: 27560 });
    const server = await startSingle(bed.testbed);
    const h1 = bed.testbed.hosts[0];
    if (h1 === undefined) throw new Error("no h1");
    // Both clients start at the same clock reading, so both number their first request alike.
    const clockMs = Date.now();
    const now = vi.spyOn(Date, "now").mockReturnValue(clockMs);
    const make = () =>
      new KvClient({
        id: "client1",
        replicas: { [h1.id]: h1.address },
        replyQuorum: 1,
        scheme: new Ed25519Scheme(),
        signer: clientSigner(bed.testbed, "client1"),
        boardKeys: boardPublicKeys(bed.testbed),
        retransmitMs: 100,
      });
    const first = make();
    const second = make();
    now.mockRestore();
    try {
      first.start();
      expect((await first.call({ op: "put", key: "a", value: "1" })).result).toEqual({
        op: "put",
        previous: null,
      });
      await first.close();
      second.start();
      // The server answers the number from its client table with put(a, 1)'s result: refused,
      // and the call fails saying why, rather than reporting a write that never happened.
      await expect(second.call({ op: "put", key: "a", value: "2" }, 1_500)).rejects.toThrow(
        /replies refused meanwhile: \d+ other-request; replicas answered this request's number with the result of another request of client client1: its request numbers were used before/,
      );
      expect(server.summary()).toMatch(/executed 1 requests/);
    } finally {
      await first.close();
      await second.close();
      await server.close();
      bed.remove();
    }
  }, 30_000);
});
