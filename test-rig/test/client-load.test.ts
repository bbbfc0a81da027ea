/**
 * A client load stopped while the service does not answer (every host held, as in a fail-safe
 * drill) ends when told: the calls still waiting are recorded as of unknown outcome, not waited
 * out to their timeout. By default a waiting call has its timeout to be answered.
 */
import { connectClient, KvClientClosedError, makeServiceTestbed } from "@smw/host-agent";
import { afterAll, describe, expect, it } from "vitest";
import { ClientLoad } from "../src/load/client-load.js";

describe("a client load against a service that does not answer", () => {
  // No replica is started: nothing listens on the testbed's addresses.
  const bed = makeServiceTestbed({ n: 6, kPrime: 1, k: 1, basePort: 28340, clients: 2 });
  afterAll(() => bed.remove());

  it("stops at once when told not to wait, each waiting call recorded as of unknown outcome", async () => {
    const load = new ClientLoad(bed.testbed, bed.clientIds, { opTimeoutMs: 60_000 });
    load.start();
    await new Promise((resolve) => setTimeout(resolve, 300));
    const stoppingMs = performance.now();
    const figures = await load.stop(0);
    // Far below the calls' 60 s timeout: closing the clients settled them.
    expect(performance.now() - stoppingMs).toBeLessThan(5_000);
    expect(figures.completed).toBe(0);
    // Stopping is not a failure of the service.
    expect(figures.failed).toBe(0);
    expect(figures.history.map((e) => `${e.process} ${e.type}`).sort()).toEqual([
      "0 info",
      "0 invoke",
      "1 info",
      "1 invoke",
    ]);
  });

  it("a closed client refuses a call, and one waiting fails as closed", async () => {
    const client = connectClient(bed.testbed, { clientId: bed.clientIds[0] as string });
    const waiting = expect(client.call({ op: "get", key: "a" }, 60_000)).rejects.toBeInstanceOf(
      KvClientClosedError,
    );
    await client.close();
    await waiting;
    await expect(client.call({ op: "get", key: "a" })).rejects.toBeInstanceOf(KvClientClosedError);
  });

  it("by default gives a waiting call its timeout to be answered before it counts as unknown", async () => {
    const load = new ClientLoad(bed.testbed, bed.clientIds, { opTimeoutMs: 1_500 });
    load.start();
    const startedMs = performance.now();
    await new Promise((resolve) => setTimeout(resolve, 300));
    const figures = await load.stop();
    // The calls began as the load did: stopping waited out their 1.5 s.
    expect(performance.now() - startedMs).toBeGreaterThanOrEqual(1_400);
    expect(figures.history.filter((e) => e.type === "info")).toHaveLength(2);
  });
});
