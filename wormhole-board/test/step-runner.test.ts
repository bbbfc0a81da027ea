/** The key certificates a board issues when its host boots. */
import { generateKeyPairSync } from "node:crypto";
import type { Board, BoardToHost, KeyCertificate } from "@smw/wiring";
import { type BoardLines, type HostLinkPort, StepRunner } from "@smw/wormhole-board";
import { describe, expect, it } from "vitest";

/** Board b1's step runner (it guards h1), with what it sends its host collected in `sent`. */
function runnerWith(overrides: Partial<ConstructorParameters<typeof StepRunner>[0]>) {
  const sent: BoardToHost[] = [];
  const { privateKey } = generateKeyPairSync("ed25519");
  const runner = new StepRunner({
    board: { id: "b1", guards: "h1" } as Board,
    lines: {} as BoardLines,
    hostLink: { send: (m: BoardToHost) => sent.push(m) } as unknown as HostLinkPort,
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
