/** The six-board testbed the simulation tests run, one host per group. */
import type { BoardCoreConfig, SimConfig } from "@smw/wormhole-board";

export const boards = ["b1", "b2", "b3", "b4", "b5", "b6"];

export const base: SimConfig = {
  seed: 1,
  boards,
  groups: boards.map((b) => [b]),
  k: 1,
  // T_localexec = 2 s; six groups with hand-offs: T_Xmax = 12.12 s.
  budgets: {
    tShutdownMs: 200,
    tCheckcodeMs: 100,
    tRestorecodeMs: 200,
    tBootMs: 400,
    tTransferMs: 800,
  },
  tPMs: 16_000,
  tDMs: 13_000,
  latenessBoundMs: 2,
  heartbeatMs: 100,
  silenceBoundMs: 500,
  deliveryBoundMs: 20,
  periods: 3,
};

/** One board's core on the testbed above (hold-reset on fail-safe); the rest as `overrides` say. */
export const coreConfig = (
  overrides: Partial<BoardCoreConfig> & { self: string; startMs: number },
): BoardCoreConfig => ({
  boards,
  groups: base.groups,
  budgets: base.budgets,
  tPMs: base.tPMs,
  tDMs: base.tDMs,
  latenessBoundMs: base.latenessBoundMs,
  heartbeatMs: base.heartbeatMs,
  silenceBoundMs: base.silenceBoundMs,
  deliveryBoundMs: base.deliveryBoundMs,
  authFailureLimit: 5,
  failsafePolicy: [{ kind: "hold-reset" }],
  ...overrides,
});
