/** The key certificates a board issues when its host boots, and its leases on them. */
import { generateKeyPairSync, verify } from "node:crypto";
import { type Board, type BoardToHost, type KeyCertificate, leaseSigningBytes } from "@smw/wiring";
import {
  type BoardLines,
  HAND_OFF_FLOOR_MS,
  type HostLinkPort,
  StepRunner,
} from "@smw/wormhole-board";
import { describe, expect, it } from "vitest";

/** Board b1's step runner (it guards h1), with what it sends its host collected in `sent`. */
function runnerWith(overrides: Partial<ConstructorParameters<typeof StepRunner>[0]>) {
  const sent: BoardToHost[] = [];
  const { privateKey } = generateKeyPairSync("ed25519");
  const runner = new StepRunner({
    board: { id: "b1", guards: "h1" } as Board,
    lines: {} as BoardLines,
    // A host that never answers (a shutdown goes ahead without its acknowledgement).
    hostLink: {
      send: (m: BoardToHost) => sent.push(m),
      waitFor: async () => undefined,
      flush: () => {},
    } as unknown as HostLinkPort,
    operatorKey: privateKey,
    signingKey: privateKey,
    budgets: { tShutdownMs: 1, tBootMs: 1, tTransferMs: 1 },
    ...overrides,
  });
  return { runner, sent };
}

describe("key certificates", () => {
  it("have epochs that only go up, across restarts and a clock set back", () => {
    const kept: number[] = [];
    // The board last certified an epoch an hour ahead of its clock now (it lost its time).
    const lastEpoch = Math.floor(Date.now() / 1000) + 3_600;
    const { runner, sent } = runnerWith({
      certificateEpochs: { last: lastEpoch, issued: (epoch) => kept.push(epoch) },
    });
    runner.certify("A".repeat(43));
    runner.certify("B".repeat(43));
    const epochs = sent.flatMap((m) =>
      m.type === "CERT" ? [(m.certificate as KeyCertificate).period] : [],
    );
    expect(epochs).toEqual([lastEpoch + 1, lastEpoch + 2]);
    // Each kept on disk before its certificate left.
    expect(kept).toEqual(epochs);
  });

  it("never go below a join's key floor, and go out after the revocations in force", () => {
    const { runner, sent } = runnerWith({
      now: () => 1_000_000,
      certificateEpochs: { last: 10, issued: () => {} },
      revokedKeys: () =>
        new Map([
          ["h1", 7],
          ["h2", 4_001],
          ["h3", 4_001],
        ]),
    });
    runner.certifyNoneBelow(5_000);
    runner.certify("A".repeat(43), { coldStart: true });
    expect(sent.map((m) => m.type)).toEqual(["REVOKE", "CERT"]);
    // Its own host is not revoked; the peers' keys below their boards' floors are.
    expect(sent[0]).toEqual({ type: "REVOKE", hosts: ["h2", "h3"], before: 4_001 });
    const cert = sent[1];
    expect(cert?.type === "CERT" && cert.certificate.period).toBe(5_000);
    expect(cert?.type === "CERT" && cert.coldStart).toBe(true);
  });
});

describe("key leases", () => {
  it("vouch for the host's key from its certificate on, each signed and a lease long by the wall clock", () => {
    let nowMs = 1_000_000;
    // The board's own clock has drifted 700 ms from the wall clock the clients share.
    const { publicKey, privateKey } = generateKeyPairSync("ed25519");
    const { runner, sent } = runnerWith({
      now: () => nowMs - 700,
      wallNow: () => nowMs,
      signingKey: privateKey,
      keyLeaseMs: 2_000,
      certificateEpochs: { last: 10, issued: () => {} },
    });
    // Nothing to vouch for before a key is certified.
    runner.renewLease();
    expect(sent).toEqual([]);
    runner.certify("A".repeat(43));
    nowMs += 500;
    runner.renewLease();
    const leases = sent.flatMap((m) => (m.type === "LEASE" ? [m.lease] : []));
    expect(sent.map((m) => m.type)).toEqual(["CERT", "LEASE", "LEASE"]);
    const epoch = sent[0]?.type === "CERT" ? sent[0].certificate.period : -1;
    expect(leases.map((l) => [l.host, l.board, l.epoch, l.notAfterMs])).toEqual([
      ["h1", "b1", epoch, 1_002_000],
      ["h1", "b1", epoch, 1_002_500],
    ]);
    // A host held now would run again only once the last of them lapsed (on the board's clock).
    expect(runner.lastLeaseLapsesAtMs).toBe(1_001_800);
    for (const { signature, ...body } of leases)
      expect(
        verify(null, leaseSigningBytes(body), publicKey, Buffer.from(signature, "base64")),
      ).toBe(true);
  });

  it("stop when told (the host's group began, fail-safe, the host held) until the next key", () => {
    const { runner, sent } = runnerWith({
      now: () => 5_000_000,
      keyLeaseMs: 1_000,
      certificateEpochs: { last: 10, issued: () => {} },
    });
    runner.certify("A".repeat(43));
    runner.stopLeases();
    expect(runner.leasing).toBe(false);
    runner.renewLease();
    runner.renewLease();
    expect(sent.map((m) => m.type)).toEqual(["CERT", "LEASE"]);
    runner.certify("B".repeat(43));
    expect(sent.map((m) => m.type)).toEqual(["CERT", "LEASE", "CERT", "LEASE"]);
    const last = sent[3];
    const cert = sent[2];
    expect(last?.type === "LEASE" && cert?.type === "CERT" && last.lease.epoch).toBe(
      cert?.type === "CERT" && cert.certificate.period,
    );
  });

  it("stop at the shutdown step, and the host is held in reset only once the last one lapsed", async () => {
    const lines: Array<[string, string, number]> = [];
    const { runner, sent } = runnerWith({
      keyLeaseMs: 300,
      certificateEpochs: { last: 10, issued: () => {} },
      lines: {
        set: (line: string, level: string) => lines.push([line, level, Date.now()]),
        has: () => false,
      } as unknown as BoardLines,
    });
    runner.certify("A".repeat(43));
    expect(runner.leasing).toBe(true);
    const lapsesAtMs = runner.lastLeaseLapsesAtMs;
    const outcome = await runner.run("shutdown", 3, new AbortController().signal);
    expect(outcome.ok).toBe(true);
    expect(runner.leasing).toBe(false);
    runner.renewLease();
    expect(sent.map((m) => m.type)).toEqual(["CERT", "LEASE", "PREPARE_SHUTDOWN"]);
    // The adversary may leave the host at its reset: by then no client counts its key.
    expect(lines).toHaveLength(1);
    const [line, level, atMs] = lines[0] as [string, string, number];
    expect([line, level]).toEqual(["reset", "active"]);
    expect(atMs).toBeGreaterThanOrEqual(lapsesAtMs);
    expect(outcome.ok && outcome.detail).toMatch(/reset once its key's last lease lapsed/);
  });

  it("give a host that never acknowledges until its lease lapses to hand off, at least the floor, not half the budget", async () => {
    const ackWaitsMs: number[] = [];
    const silentHost = {
      send: () => {},
      waitFor: async (_match: unknown, timeoutMs: number, signal: AbortSignal) => {
        ackWaitsMs.push(timeoutMs);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, timeoutMs);
          signal.addEventListener("abort", () => {
            clearTimeout(timer);
            resolve();
          });
        });
        return undefined;
      },
      flush: () => {},
    } as unknown as HostLinkPort;
    const lines = { set: () => {}, has: () => false } as unknown as BoardLines;
    const budgets = { tShutdownMs: 60_000, tBootMs: 1, tTransferMs: 1 };
    const shutdownWith = async (keyLeaseMs: number) => {
      const { runner } = runnerWith({
        keyLeaseMs,
        certificateEpochs: { last: 10, issued: () => {} },
        hostLink: silentHost,
        lines,
        budgets,
      });
      runner.certify("A".repeat(43));
      return runner.run("shutdown", 3, new AbortController().signal);
    };
    // A lease of 700 ms: until it lapses.
    const outcome = await shutdownWith(700);
    expect(outcome.ok && outcome.detail).toMatch(/^no acknowledgement from the host; reset anyway/);
    expect(ackWaitsMs[0]).toBeGreaterThan(HAND_OFF_FLOOR_MS);
    expect(ackWaitsMs[0]).toBeLessThanOrEqual(700);
    // A lease shorter than the floor: the floor, time for a correct host's agent to answer.
    await shutdownWith(100);
    expect(ackWaitsMs[1]).toBe(HAND_OFF_FLOOR_MS);
    // Without leases, nothing else bounds the hand-off: half the budget.
    const unleased = runnerWith({ hostLink: silentHost, lines, budgets }).runner;
    const abort = new AbortController();
    const step = unleased.run("shutdown", 4, abort.signal);
    expect(ackWaitsMs[2]).toBe(30_000);
    abort.abort();
    await step;
  });

  it("at a shutdown cut short (a fail-safe, the daemon stopping), reset nothing: the fail-safe policy decides", async () => {
    const lines: string[] = [];
    const { runner } = runnerWith({
      keyLeaseMs: 60_000,
      certificateEpochs: { last: 10, issued: () => {} },
      lines: {
        set: (line: string, level: string) => lines.push(`${line} ${level}`),
        has: () => false,
      } as unknown as BoardLines,
    });
    runner.certify("A".repeat(43));
    const abort = new AbortController();
    const step = runner.run("shutdown", 3, abort.signal);
    abort.abort();
    expect(await step).toEqual({ ok: false, reason: "cut short before the reset; nothing reset" });
    expect(lines).toEqual([]);
  });

  it("wait for the last lease on both clocks: a wall clock stepped forward ends nothing early", async () => {
    const startedMs = Date.now();
    let stepMs = 0;
    const { runner } = runnerWith({
      keyLeaseMs: 200,
      certificateEpochs: { last: 10, issued: () => {} },
      wallNow: () => Date.now() + stepMs,
    });
    runner.certify("A".repeat(43));
    // The wall clock is stepped 10 s forward: by it the lease lapsed long ago.
    stepMs = 10_000;
    const waitedMs = await runner.untilLeaseLapsed(new AbortController().signal);
    expect(Date.now() - startedMs).toBeGreaterThanOrEqual(200);
    expect(waitedMs).toBeGreaterThan(150);
  });

  it("end for good once the runner is retired (the daemon stopping): no certificate, no lease", async () => {
    const { runner, sent } = runnerWith({
      keyLeaseMs: 200,
      certificateEpochs: { last: 10, issued: () => {} },
    });
    runner.certify("A".repeat(43));
    const lapsesAtMs = runner.lastLeaseLapsesAtMs;
    runner.retire();
    // A BOOTED heard while it stops, a boot step ending, the lease timer firing: nothing goes out.
    runner.certify("B".repeat(43));
    runner.renewLease();
    expect(sent.map((m) => m.type)).toEqual(["CERT", "LEASE"]);
    expect(runner.lastLeaseLapsesAtMs).toBe(lapsesAtMs);
    expect(runner.leasing).toBe(false);
  });

  it("are not issued by a board that has no lease length", () => {
    const { runner, sent } = runnerWith({ certificateEpochs: { last: 10, issued: () => {} } });
    runner.certify("A".repeat(43));
    runner.renewLease();
    expect(sent.map((m) => m.type)).toEqual(["CERT"]);
  });
});
