import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { runSimulation } from "../src/sim/cluster-sim.js";
import { type Scenario, scenarioFor } from "../src/sim/sim-scenario.js";
import { CI_SEEDS, checkSeeds, SIM_TEST_TIMEOUT_MS, seedRun } from "./sim-seeds.js";

/**
 * The first `count` seeds up to 200 whose scenario has `wanted`, with their outcome checked clean.
 * Most are among the first seeds, whose runs this file makes once for every test.
 */
function cleanRunsOfSeedsWhere(wanted: (scenario: Scenario) => boolean, count = 3) {
  const seeds: number[] = [];
  for (let seed = 1; seed <= 200 && seeds.length < count; seed++)
    if (wanted(scenarioFor(seed))) seeds.push(seed);
  expect(seeds).toHaveLength(count);
  return seeds.map((seed) => {
    const r = seedRun(seed);
    expect(r.violations, `seed ${seed}`).toEqual([]);
    return { seed, r };
  });
}

describe("the deterministic cluster simulation", () => {
  checkSeeds(1, CI_SEEDS);

  it(
    "aims requests at the primary and too few backups, and every operation still completes",
    () => {
      // The partial-send adversary: a request's first copy reaches the primary and fewer than
      // q - 1 backups; the others vote on the word of k' + 1, or a view change settles it.
      for (const { seed, r } of cleanRunsOfSeedsWhere((s) => s.partialSends !== undefined))
        expect(r.byzantineActions["partial-send"], `seed ${seed}`).toBeGreaterThan(0);
    },
    SIM_TEST_TIMEOUT_MS,
  );

  it(
    "replays clients' old copies into their connections after restarts, and none counts as the client's",
    () => {
      // The replay adversary: copies of requests the network saw go to a replica, replayed into
      // the clients' connections once it started again; only a copy MAC'd under its new session
      // may be held, proposed or voted for.
      for (const { seed, r } of cleanRunsOfSeedsWhere((s) => s.replayClientCopies === true))
        expect(r.byzantineActions["client-replay"], `seed ${seed}`).toBeGreaterThan(0);
    },
    SIM_TEST_TIMEOUT_MS,
  );

  it(
    "has Byzantine primaries propose requests no client sent, and none is executed",
    () => {
      // The fabricate-requests adversary: requests in real clients' names (their next numbers, a
      // write of its own) in its PRE_PREPAREs, its VIEW_CHANGEs' batches and its EXECUTED reports.
      // Executed, one would answer its client's own request with another write's result or drop it
      // as a duplicate: the history checks would fail.
      const runs = cleanRunsOfSeedsWhere((s) =>
        s.byzantine.some(
          (b) => b.behaviours.includes("fabricate-requests") && !b.behaviours.includes("silent"),
        ),
      );
      let proposed = 0;
      for (const { seed, r } of runs) {
        proposed += r.byzantineActions["fabricated-request.pre-prepare"] ?? 0;
        const all = Object.entries(r.byzantineActions)
          .filter(([kind]) => kind.startsWith("fabricated-request."))
          .reduce((sum, [, n]) => sum + n, 0);
        expect(all, `seed ${seed}`).toBeGreaterThan(0);
      }
      expect(proposed).toBeGreaterThan(0);
    },
    SIM_TEST_TIMEOUT_MS,
  );

  it(
    "aims a move at the primary: the old host's votes left behind meet the new primary's equivocation, and agreement holds",
    () => {
      // The aimed mobile adversary: before its reset the compromised host votes PREPARE and COMMIT
      // for the next sequence numbers, one batch to half the backups and the empty batch to the
      // other; then it takes the primary, which proposes and commits those two. Counted after the
      // revocation, the old votes gave each half a commit certificate (seeds 49 and 213 diverged).
      // Whether its moment comes depends on the run's timing, so these are seeds in which it does
      // (of the first aimed ones, about one in four). Should a change of timing take it away from
      // one, pick another where `aimed-votes-left` and `aimed-equivocation` are both counted.
      for (const seed of [3, 37, 44]) {
        expect(scenarioFor(seed).aimedMove, `seed ${seed}`).toBe(true);
        const r = seedRun(seed);
        expect(r.violations, `seed ${seed}`).toEqual([]);
        expect(r.byzantineActions["aimed-votes-left"], `seed ${seed}`).toBeGreaterThan(0);
        expect(r.byzantineActions["aimed-equivocation"], `seed ${seed}`).toBeGreaterThan(0);
      }
    },
    SIM_TEST_TIMEOUT_MS,
  );

  it(
    "replays a seed exactly",
    () => {
      const digest = (seed: number) => {
        const hash = createHash("sha256");
        const result = runSimulation(scenarioFor(seed), { trace: (line) => hash.update(line) });
        return { result, trace: hash.digest("hex") };
      };
      const a = digest(12);
      const b = digest(12);
      expect(b.trace).toBe(a.trace);
      expect(b.result).toEqual(a.result);
      expect(digest(13).trace).not.toBe(a.trace);
    },
    SIM_TEST_TIMEOUT_MS,
  );

  it(
    "holds state requests back until their checkpoints may be gone, and every transfer ends",
    () => {
      // The stalled-fetch adversary: a replica behind asks for a state, and by the time its request
      // arrives its vouchers may have moved on, or it may have caught up from their log. Such a
      // transfer waits a round (counted) or ends, instead of asking again at network speed for as
      // long as the replica runs; the idle check at the end of each run would catch one that did.
      const runs = cleanRunsOfSeedsWhere((s) => s.stalledFetchMs !== undefined);
      const ended = runs.reduce(
        (sum, { r }) =>
          sum +
          (r.replicaCounters["state-transfer.overtaken"] ?? 0) +
          (r.replicaCounters["state-transfer.waiting"] ?? 0),
        0,
      );
      expect(ended).toBeGreaterThan(0);
    },
    SIM_TEST_TIMEOUT_MS,
  );

  it(
    "has Byzantine replicas flood their peers with state requests, and correct replicas ration their answers",
    () => {
      // The ask-flood adversary: FETCH_* and STATUS asking for all they can get, to every peer
      // (`askFlood`), also while the service idles. Answered in full, the idle check fails (seeds
      // 3 and 10, the ones below, and 34 did: about 1,400 messages from each correct replica in
      // 2 s, against bounds of 538 to 813). Two seeds: a flooded run takes about twice as long
      // as another.
      const runs = cleanRunsOfSeedsWhere(
        (s) =>
          s.byzantine.some(
            (b) => b.behaviours.includes("ask-flood") && !b.behaviours.includes("silent"),
          ),
        2,
      );
      for (const { seed, r } of runs) {
        expect(r.byzantineActions["ask-flood"], `seed ${seed}`).toBeGreaterThan(0);
        expect(r.rejectedFromByzantine["fetch-over-allowance"], `seed ${seed}`).toBeGreaterThan(0);
        expect(r.replicaCounters["status.over-allowance"], `seed ${seed}`).toBeGreaterThan(0);
      }
    },
    SIM_TEST_TIMEOUT_MS,
  );

  it(
    "has a faulty client flood every replica with READ scans; its hosts hold it, and no correct client",
    () => {
      // The read-flood adversary (`Scenario.readFlood`): the same scan of everything again and
      // again, every few milliseconds. Each replica answers it up to its allowance, then leaves
      // its connection unread until it is paid back; the correct clients' operations complete
      // within the liveness bound, and none of them is ever held.
      for (const { seed, r } of cleanRunsOfSeedsWhere((s) => s.readFlood !== undefined, 2)) {
        const sent = r.byzantineActions["read-flood.sent"] ?? 0;
        const answered = r.byzantineActions["read-flood.answered"] ?? 0;
        expect(answered, `seed ${seed}`).toBeGreaterThan(0);
        expect(answered, `seed ${seed}`).toBeLessThan(sent / 2);
        expect(r.replicaCounters["client.held"], `seed ${seed}`).toBeGreaterThan(0);
      }
    },
    SIM_TEST_TIMEOUT_MS,
  );

  it(
    "catches a replica holding correct clients for their reads (the check can fail)",
    () => {
      // An allowance far below what correct clients read: they go into debt too.
      const seed = [...Array(200).keys()].find((i) => scenarioFor(i + 1).readFlood !== undefined);
      const scenario = scenarioFor((seed as number) + 1);
      scenario.readFlood = { everyMs: 5, allowanceBytesPerSecond: 256 };
      const r = runSimulation(scenario);
      expect(r.passed).toBe(false);
      expect(r.violations.some((v) => /^reads: r\d held correct client c\d+/.test(v))).toBe(true);
    },
    SIM_TEST_TIMEOUT_MS,
  );

  it(
    "catches a correct replica that keeps sending while the service idles (the check can fail)",
    () => {
      const scenario = scenarioFor(1);
      const talker = scenario.byzantine.some((b) => b.replica === "r1") ? "r2" : "r1";
      const r = runSimulation(scenario, { unsafeChatter: { replica: talker, everyMs: 1 } });
      expect(r.passed).toBe(false);
      expect(r.violations[0]).toMatch(new RegExp(`^chatter: ${talker} sent \\d+ messages`));
    },
    SIM_TEST_TIMEOUT_MS,
  );

  it(
    "catches a protocol run with quorums too small to intersect (the checks can fail)",
    () => {
      const caught: string[] = [];
      for (let seed = 1; seed <= 60 && caught.length === 0; seed++) {
        const scenario = scenarioFor(seed);
        if (scenario.n < 6 || scenario.byzantine.length === 0) continue;
        const r = runSimulation(scenario, { unsafeQuorum: 2 });
        if (!r.passed) caught.push(`${seed}: ${r.violations[0]}`);
      }
      expect(caught.length, "no seed caught a quorum of 2").toBeGreaterThan(0);
      expect(caught[0]).toMatch(/agreement|linearizability|recovery/);
    },
    SIM_TEST_TIMEOUT_MS,
  );

  it(
    "keys stolen at several moves, at a client kept from their replacements: refused once their leases lapsed, taken without leases",
    () => {
      // Seed 33: n = 6, k' = k = 1. The adversary moves to the group rejuvenated next at every
      // reset, answers from every key it stole, and the network keeps every certificate and
      // lease from c1 until the heal.
      const scenario = scenarioFor(33);
      expect(scenario.stolenKeyReads?.victim).toBe("c1");
      const withLeases = runSimulation(scenario);
      expect(withLeases.violations).toEqual([]);
      expect(withLeases.byzantineActions["stolen-key-reply"]).toBeGreaterThan(100);
      expect(withLeases.byzantineActions["held-from-victim"]).toBeGreaterThan(100);
      const without = runSimulation(scenario, { unsafeIgnoreLeases: true });
      expect(without.passed).toBe(false);
      expect(without.violations[0]).toMatch(/^linearizability: c1#/);
    },
    SIM_TEST_TIMEOUT_MS,
  );

  it(
    "keeps two replicas behind and holds back the others' answers to one client's reads: a read quorum of k' + 1 returns stale values, q does not",
    () => {
      // Seed 186: n = 7, k' = 1, k = 1. From 1.1 s on the network delays every message to the
      // last two correct replicas by 452 ms, keeps the other correct replicas' answers from c1,
      // and every voice the adversary has answers c1's reads as the first of them would. (Which
      // seeds the aim lands on moves with the protocol's timing: seed 44 did until view changes
      // grew cheaper. Of seeds 1-186 with this aim, 151, 167 and 186 land.)
      const scenario = scenarioFor(186);
      expect(scenario.laggingReads?.victim).toBe("c1");
      const safe = runSimulation(scenario);
      expect(safe.violations).toEqual([]);
      expect(safe.byzantineActions["answers-as-laggard"]).toBeGreaterThan(0);
      expect(safe.byzantineActions["held-from-victim"]).toBeGreaterThan(0);
      const unsafe = runSimulation(scenario, { unsafeReadQuorum: scenario.kPrime + 1 });
      expect(unsafe.passed).toBe(false);
      expect(unsafe.violations[0]).toMatch(/^linearizability: c\d+#/);
    },
    SIM_TEST_TIMEOUT_MS,
  );
});
