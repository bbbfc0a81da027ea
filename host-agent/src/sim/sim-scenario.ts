/**
 * A random scenario from a seed: cluster size, protocol settings, network
 * misbehaviour, partitions, Byzantine replicas and the rejuvenation
 * schedule. Everything the run does follows from these choices.
 */
import { BYZANTINE_BEHAVIOURS, type ByzantineBehaviour } from "./byzantine.js";

/**
 * The behaviours the first simulations drew from (older seeds keep their draws), and the lies
 * added next; `fabricate-requests` is drawn on its own, last (`scenarioFor`).
 */
const FIRST_BEHAVIOURS = BYZANTINE_BEHAVIOURS.slice(0, 7);
const LIES = BYZANTINE_BEHAVIOURS.slice(7, 15);

import { Prng } from "./prng.js";

export interface Scenario {
  seed: number;
  n: number;
  kPrime: number;
  k: number;
  checkpointInterval: number;
  batchMax: number;
  maxInFlight: number;
  viewChangeTimeoutMs: number;
  statusIntervalMs: number;
  clients: number;
  keys: number;
  network: { delayMs: number; jitterMs: number; loss: number; duplicate: number };
  /** Intervals during which some replicas are cut off from the rest. */
  partitions: Array<{ fromMs: number; untilMs: number; isolated: string[] }>;
  /** Byzantine replicas from the start, with what they do. */
  byzantine: Array<{ replica: string; behaviours: ByzantineBehaviour[] }>;
  /**
   * The mobile adversary: when a compromised replica's host is rejuvenated, another replica
   * (not being rejuvenated) is compromised in its place, so never more than k' at once.
   */
  mobile: boolean;
  /**
   * The adversarial scheduler, until the network heals: the chance that a message it aims at
   * (a COMMIT, anything to the primary, anything to a replica being rejuvenated) is held back,
   * and for how long at most. Within the asynchrony the protocol must tolerate.
   */
  targeted: { chance: number; holdMs: number };
  /** Rejuvenation: groups of k, one after the other, from `startMs`, every `gapMs`. */
  rejuvenation:
    | {
        startMs: number;
        gapMs: number;
        downMs: [number, number];
        shutdownGraceMs: number;
        /** What the rejuvenated host finds on its stable storage. */
        disk: Array<"intact" | "wiped" | "corrupted">;
      }
    | undefined;
  /**
   * A cold start: at `atMs` (once no group is being rejuvenated) every replica is held in reset
   * for `downMs`, then all boot again, each at its own moment within `spreadMs`, from the last two
   * checkpoints their disks hold. The compromised replicas' disks, and those of up to k others,
   * hold a checkpoint that never was.
   */
  coldStart?: { atMs: number; downMs: number; spreadMs: number };
  /**
   * Until the network heals, the chance that a client's first copy of a request reaches only the
   * primary (as the replicas' highest view names it) and a few backups, fewer than q - 1: as
   * from a faulty client, or one whose other connections were down. Its retransmissions go to
   * every replica.
   */
  partialSends?: number;
  /** How many view-change timeouts a client's first suspicion lasts (the replicas' default otherwise). */
  suspicionTimeouts?: number;
  /**
   * Until the network heals, the adversary holds back every state request (FETCH_META,
   * FETCH_LEAVES, FETCH_PARTS) by this long: long enough, under load, for its vouchers to make a
   * newer checkpoint stable and drop the one asked for. Every answer is then NO_CHECKPOINT, which
   * once sent the transfer round its vouchers at network speed for as long as the replica ran.
   */
  stalledFetchMs?: number;
  /**
   * A replica that starts again (rejuvenated, or in a cold start) holds no peer's certificate, as
   * a real one: it learns them from its peers. Otherwise it starts with every current one.
   */
  restartsKnowNoKeys?: true;
  /**
   * Every replica the mobile adversary compromises also sends a peer rejuvenated since nothing
   * until it votes again (`shun-rejuvenated`), besides the behaviours drawn for it.
   */
  mobileShuns?: true;
  /**
   * The network replays clients' old copies of their requests into their connections to a
   * replica that started again (a rejuvenation, a cold start): copies it saw go to that replica
   * before, most of them of requests long completed. Only a copy made for the replica's new
   * session may count as its client's (SAFETY.md, "Where a request comes from").
   */
  replayClientCopies?: boolean;
  /**
   * One more client, faulty for the whole run: every `everyMs` it gives up on its write and sends
   * a new one, each copy (retransmissions too) to `sendsTo` only: the primary alone (as the
   * replicas' highest view names it), one backup, or every backup but the primary. It costs the
   * service at most one view change (SAFETY.md, "A client that sends to too few replicas"); its
   * writes may or may not take effect, and it is owed no answer.
   */
  faultyClient?: { sendsTo: "primary" | "one-backup" | "backups"; everyMs: number };
  /**
   * A faulty client that floods: every `everyMs` it sends every replica a READ scan of the whole
   * store, the same bytes again and again and sometimes a new one, whatever comes back. The
   * replicas allow each client `allowanceBytesPerSecond` (`client-allowance.ts`: its messages and
   * read answers), so that it goes into debt within the run; a replica's host leaves a client in debt unread until it is paid back, as
   * the real one does (`hold-client`). A correct client must never be held, nor its operations
   * slowed past the liveness bound.
   */
  readFlood?: { everyMs: number; allowanceBytesPerSecond: number };
  /**
   * The bodies a VIEW_CHANGE carries, in bytes (`ReplicaConfig.viewChangeBodyBytes`): 0 or a few
   * hundred, so that a new view takes the bodies of what it re-proposes from its replicas' own
   * stores or fetches them (FETCH_BATCH), as it does on hosts with values of a megabyte.
   */
  viewChangeBodyBytes?: number;
  /**
   * The client table's entries one META or CLIENTS carries, in bytes
   * (`ReplicaConfig.clientsPageBytes`): a few entries at most, so that a state transfer fetches
   * the table page by page, as it does on hosts whose clients read values of a megabyte.
   */
  clientsPageBytes?: number;
  /**
   * The mobile adversary aims its move: the replica it leaves, before its reset, votes PREPARE and
   * COMMIT for the next sequence numbers of its view, one batch to half the backups and the
   * empty batch to the other half; then it takes that view's primary, which proposes and commits
   * the same two. Were the old host's stored votes still counted after its revocation, each half
   * would hold a commit certificate (SAFETY.md, "Key epochs").
   */
  aimedMove?: boolean;
  /**
   * The mobile adversary speaks to clients with every key it stole, and aims to make them pile
   * up: it moves to a replica of the group rejuvenated next (a move per group), answers every read
   * and request from each stolen key and each replica it holds with the result of the oldest
   * state it saw (with the last lease each key had), and the network keeps every certificate and
   * lease from `victim` from `fromMs` until the heal. Without leases the victim counts the stolen
   * keys as voices: it takes forged ordered replies, or a read returns a value overwritten long
   * before (SAFETY.md, "Key epochs").
   */
  stolenKeyReads?: { victim: string; fromMs: number };
  /**
   * The adversary aims at the read quorum: from `fromMs` until the heal the network delays every
   * message to two correct replicas by `lagMs` (they execute writes late), holds back from
   * `victim` the answers of the other correct replicas to its unordered reads, and every voice
   * the adversary has answers those reads as the first laggard would. The stale answers then
   * number the laggards and the replicas it holds (the keys it stole no longer count: their leases
   * lapsed before their hosts' resets): fewer than the read quorum q, and more than the k' + 1
   * that `SimOptions.unsafeReadQuorum` shows too few.
   */
  laggingReads?: { victim: string; fromMs: number; lagMs: number };
  /** When faults stop: no more loss, partitions or new rejuvenations. */
  healMs: number;
  /** Clients stop starting operations at this instant. */
  loadUntilMs: number;
  /** After healing, every operation must complete within this. */
  livenessBoundMs: number;
}

/** From the least n the fault model allows (3k' + 2k + 1) up. */
const SHAPES = [
  { n: 4, kPrime: 1, k: 0 },
  { n: 6, kPrime: 1, k: 1 },
  { n: 6, kPrime: 1, k: 1 },
  { n: 7, kPrime: 1, k: 1 },
  { n: 8, kPrime: 1, k: 2 },
];
/** Two Byzantine replicas at once: drawn apart (below) so that older seeds keep their scenario. */
const TWO_BYZANTINE = [
  { n: 7, kPrime: 2, k: 0 },
  { n: 9, kPrime: 2, k: 1 },
];

export function replicaIds(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `r${i + 1}`);
}

export function scenarioFor(seed: number): Scenario {
  const prng = new Prng(seed);
  // The adversary's later powers come from a stream of their own: a seed that failed once still
  // draws the same cluster, network, partitions and Byzantine replicas, with the new powers added.
  const adversary = new Prng(seed * 7919 + 17);
  const base = prng.pick(SHAPES);
  const shape = adversary.chance(0.25) ? adversary.pick(TWO_BYZANTINE) : base;
  const ids = replicaIds(shape.n);
  const healMs = prng.int(6_000, 12_000);
  const partitions: Scenario["partitions"] = [];
  for (let i = prng.int(0, 3); i > 0; i--) {
    const fromMs = prng.int(500, healMs - 500);
    const size = prng.int(1, Math.floor((shape.n - 1) / 2));
    const isolated = [...ids].sort(() => prng.next() - 0.5).slice(0, size);
    partitions.push({ fromMs, untilMs: Math.min(healMs, fromMs + prng.int(200, 3_000)), isolated });
  }
  const byzantine: Scenario["byzantine"] = [];
  const byzantineCount = prng.int(0, shape.kPrime);
  const shuffled = [...ids].sort(() => prng.next() - 0.5);
  for (let i = 0; i < byzantineCount; i++) {
    const behaviours = new Set<ByzantineBehaviour>();
    for (let j = prng.int(1, 3); j > 0; j--) behaviours.add(prng.pick(FIRST_BEHAVIOURS));
    for (let j = adversary.int(0, 2); j > 0; j--) behaviours.add(adversary.pick(LIES));
    byzantine.push({ replica: shuffled[i] as string, behaviours: [...behaviours] });
  }
  const lossy = prng.chance(0.7);
  const mobile = adversary.chance(0.5);
  const targeted = adversary.chance(0.5)
    ? { chance: adversary.next() * 0.3, holdMs: adversary.int(50, 400) }
    : { chance: 0, holdMs: 0 };
  const scenario: Scenario = {
    seed,
    ...shape,
    checkpointInterval: prng.pick([4, 8, 16]),
    batchMax: prng.pick([1, 4, 16]),
    maxInFlight: prng.pick([1, 2, 4]),
    viewChangeTimeoutMs: prng.int(300, 1_000),
    statusIntervalMs: prng.int(80, 200),
    clients: prng.int(1, 4),
    keys: prng.int(2, 12),
    network: {
      delayMs: prng.int(1, 10),
      jitterMs: prng.int(0, 20),
      loss: lossy ? prng.next() * 0.05 : 0,
      duplicate: lossy ? prng.next() * 0.03 : 0,
    },
    partitions,
    byzantine,
    mobile,
    targeted,
    rejuvenation:
      shape.k === 0
        ? undefined
        : {
            startMs: prng.int(200, 2_000),
            gapMs: prng.int(100, 1_000),
            downMs: [prng.int(50, 300), prng.int(300, 1_000)],
            shutdownGraceMs: prng.int(10, 100),
            disk: ["intact", "wiped", "corrupted"],
          },
    healMs,
    loadUntilMs: healMs + 2_000,
    livenessBoundMs: 30_000,
  };
  // Drawn last, so that the seeds from before keep their scenario.
  if (prng.chance(0.25))
    scenario.coldStart = {
      atMs: prng.int(500, Math.max(600, healMs - 500)),
      downMs: prng.int(50, 500),
      spreadMs: prng.int(0, 400),
    };
  if (adversary.chance(0.3)) scenario.partialSends = 0.1 + adversary.next() * 0.5;
  if (adversary.chance(0.3)) scenario.replayClientCopies = true;
  // Requests no client sent, from half the Byzantine replicas (requests carry no signature).
  for (const b of byzantine) if (adversary.chance(0.5)) b.behaviours.push("fabricate-requests");
  if (mobile && adversary.chance(0.5)) scenario.aimedMove = true;
  if (adversary.chance(0.3))
    scenario.faultyClient = {
      sendsTo: adversary.pick(["primary", "one-backup", "backups"] as const),
      everyMs: adversary.int(50, 400),
    };
  // Suspicions that lapse within a run: a faulty client comes back to the direct path, stalls a
  // batch again, and is suspected for longer (the replicas' default is 32 timeouts).
  if (adversary.chance(0.5)) scenario.suspicionTimeouts = adversary.pick([1, 2, 4, 8]);
  // A replica that starts again knows no peer's key, as a real one (it learns them from its
  // peers); and Byzantine replicas that send a rejuvenated one nothing, its own key included.
  if (adversary.chance(0.5)) scenario.restartsKnowNoKeys = true;
  for (const b of byzantine) if (adversary.chance(0.3)) b.behaviours.push("shun-rejuvenated");
  if (mobile && adversary.chance(0.3)) scenario.mobileShuns = true;
  if (adversary.chance(0.3)) scenario.stalledFetchMs = adversary.int(100, 800);
  for (const b of byzantine) if (adversary.chance(0.3)) b.behaviours.push("ask-flood");
  if (adversary.chance(0.3))
    scenario.readFlood = {
      everyMs: adversary.int(1, 2),
      // A correct client here sends each replica a message every few tens of milliseconds (1 KiB
      // each, `MESSAGE_COST_BYTES`) and reads a few hundred bytes at a time: a few tens of KiB a
      // second, below the smaller of these. The flood costs 650-1300 KiB a second of every
      // replica, answers included.
      allowanceBytesPerSecond: adversary.pick([128, 256]) * 1024,
    };
  if (adversary.chance(0.3)) {
    scenario.viewChangeBodyBytes = adversary.pick([0, 600]);
    for (const b of byzantine) if (adversary.chance(0.5)) b.behaviours.push("lie-batches");
    if (adversary.chance(0.5)) scenario.clientsPageBytes = adversary.pick([64, 512]);
  }
  for (const b of byzantine) if (adversary.chance(0.3)) b.behaviours.push("lie-holds");
  for (const b of byzantine) if (adversary.chance(0.3)) b.behaviours.push("drip-transfer");
  if (mobile && shape.k > 0 && adversary.chance(0.4))
    scenario.stolenKeyReads = { victim: "c1", fromMs: adversary.int(200, 2_000) };
  if (shape.k > 0 && adversary.chance(0.3))
    scenario.laggingReads = {
      victim: "c1",
      fromMs: adversary.int(200, 2_000),
      lagMs: adversary.int(100, 600),
    };
  return scenario;
}
