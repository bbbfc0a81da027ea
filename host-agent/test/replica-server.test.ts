import { describe, expect, it } from "vitest";
import { KvClient } from "../src/client/kv-client.js";
import { Ed25519Scheme, newReplicaSigner } from "../src/replica/ed25519.js";
import { ReplicaServer } from "../src/service/replica-server.js";
import {
  boardPublicKeys,
  certifyWithBoardKey,
  clientPublicKeys,
  clientSigner,
} from "../src/service/service-keys.js";
import { makeServiceTestbed } from "../src/service/service-testbed.js";

describe("replicas over TCP on loopback", () => {
  it("serves a client with n = 4 (k' = 1, k = 0) and keeps serving with one replica stopped", async () => {
    const bed = makeServiceTestbed({
      n: 4,
      kPrime: 1,
      k: 0,
      basePort: 27400,
      checkpointInterval: 8,
    });
    const scheme = new Ed25519Scheme();
    const boardKeys = boardPublicKeys(bed.testbed);
    const clientKeys = clientPublicKeys(bed.testbed);
    const servers = bed.testbed.hosts.map((h) => {
      const signer = newReplicaSigner();
      return new ReplicaServer({
        testbed: bed.testbed,
        hostId: h.id,
        scheme,
        signer,
        certificate: certifyWithBoardKey(bed.testbed, h.id, signer, 0),
        boardKeys,
        clientKeys,
        recovering: false,
        k: 0,
      });
    });
    const client = KvClient.forTestbed(bed.testbed, {
      id: "client1",
      scheme,
      signer: clientSigner(bed.testbed, "client1"),
      boardKeys,
      k: 0,
    });
    try {
      await Promise.all(servers.map((s) => s.start()));
      client.start();
      expect((await client.call({ op: "put", key: "a", value: "1" })).result).toEqual({
        op: "put",
        previous: null,
      });
      expect(
        (await client.call({ op: "cas", key: "a", expected: "1", value: "2" })).result,
      ).toEqual({ op: "cas", ok: true, current: "2" });
      for (let i = 0; i < 20; i++) await client.call({ op: "put", key: `k${i}`, value: `${i}` });
      // The primary (h1) goes away: a view change, and the service goes on.
      await servers[0]?.close();
      const answer = await client.call({ op: "get", key: "a" }, 20_000);
      expect(answer.result).toEqual({ op: "get", value: "2" });
      const scan = await client.call({ op: "scan", from: "k1", to: "k2", limit: 5 });
      expect(scan.result).toEqual({
        op: "scan",
        entries: [
          ["k1", "1"],
          ["k10", "10"],
          ["k11", "11"],
          ["k12", "12"],
          ["k13", "13"],
        ],
      });
      expect(servers[1]?.core.currentView).toBeGreaterThan(0);
    } finally {
      await client.close();
      await Promise.all(servers.map((s) => s.close()));
      bed.remove();
    }
  }, 40_000);
});
