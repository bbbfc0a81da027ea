/**
 * What a compromised replica does, as a filter on the actions of an
 * otherwise ordinary replica core: it holds the replica's signer, so what it
 * sends verifies, but it may lie, equivocate, go silent, replay what it has
 * seen, forge other replicas' messages (which must fail their signature
 * check) and scribble on its own state.
 */
import type { KvResult } from "../kv/kv-operation.js";
import type { Signer } from "../replica/key-ring.js";
import {
  batchDigest,
  batchOrigin,
  type ClientRequest,
  encodeClientMessage,
  MAX_PASSED_OVER,
  parseEnvelope,
  type ReplicaBody,
  type ReplicaEnvelope,
  sealEnvelope,
  sealEnvelopeWithMacs,
  withMacs,
} from "../replica/messages.js";
import { decideNewView, type ViewChangeBody } from "../replica/new-view-decision.js";
import type { Quorums } from "../replica/quorums.js";
import type { ReplicaAction } from "../replica/replica-core.js";
import { nullDigest } from "../replica/view-change.js";
import type { Prng } from "./prng.js";

export type ByzantineBehaviour =
  | "silent"
  | "equivocate"
  | "wrong-digests"
  | "wrong-replies"
  | "forge"
  | "replay"
  | "corrupt-state"
  /** As primary: only empty batches, so clients starve unless backups' timers catch it. */
  | "empty-batches"
  /**
   * VIEW_CHANGE: forgets what it prepared, claims what it never prepared, inflates checkpoints,
   * marks itself a cold start (or unmarks), asks past the view at once, names views passed over.
   */
  | "lie-view-change"
  /**
   * NEW_VIEW: proposals that do not follow from the VIEW_CHANGEs it forwards; cold-start and other
   * VIEW_CHANGEs mixed; two NEW_VIEWs from two quorums; to a replica that says it lost its memory,
   * one in which its own VIEW_CHANGE claims that replica's old key (the view not fresh for it).
   */
  | "lie-new-view"
  /** STATUS: views, sequence numbers and wants out of thin air; claims to have lost its memory. */
  | "lie-status"
  /** EXECUTED and CHECKPOINT: batches at the wrong sequence numbers, checkpoints of the future. */
  | "lie-executed"
  /** META, LEAVES, PARTS: state that does not match the checkpoint asked for. */
  | "lie-transfer"
  /** VIEW_CHANGEs for far views, validly signed, again and again. */
  | "view-flood"
  /** MAC'd messages whose MACs check for some receivers and not others (a primary's PRE_PREPARE too). */
  | "bad-macs"
  /**
   * Requests no client sent, in real clients' names (their next numbers, a write of its own):
   * in its PRE_PREPAREs as primary, in the batches its VIEW_CHANGEs claim prepared, and in the
   * EXECUTED entries it reports. Requests carry no signature, so nothing in one tells it apart.
   */
  | "fabricate-requests"
  /**
   * Nothing at all to a replica back from rejuvenation until it says it votes again: not its
   * own new key (asked for or not), not the NEW_VIEW of a view it leads. The others must make up
   * for it.
   */
  | "shun-rejuvenated"
  /**
   * Requests for help at every peer, as fast as it likes (`askFlood`): state requests that ask
   * for the most an answer may carry, and STATUS messages saying it is far behind, in an older
   * view and amnesic. Also while the service idles.
   */
  | "ask-flood"
  /**
   * Batch bodies (`batch-fetch.ts`): a BATCH answer with another body under the digest asked
   * for; a VIEW_CHANGE claiming a batch prepared whose body nobody has; FETCH_BATCHes for every
   * batch it saw, to every peer, again and again.
   */
  | "lie-batches"
  /**
   * Holders of a request (`request-holds.ts`): a HOLD of a newer request of the client's that
   * nobody has (displacing its true one where it is stored); a HOLDERS that carries another
   * request under the HOLDs (one it saw, or the same client and number with another write), or
   * HOLDs whose signatures are another's.
   */
  | "lie-holds"
  /**
   * Answers to a state transfer, true but the least they can be, each held so that it still comes
   * within the asker's retry interval (`dripDelayMs`): a META without the difference it could
   * carry, one meta's leaves, one partition. Never found out, it would pace the whole transfer
   * were it the only voucher asked while its answers brought something.
   */
  | "drip-transfer";

export const BYZANTINE_BEHAVIOURS: readonly ByzantineBehaviour[] = [
  "silent",
  "equivocate",
  "wrong-digests",
  "wrong-replies",
  "forge",
  "replay",
  "corrupt-state",
  "empty-batches",
  "lie-view-change",
  "lie-new-view",
  "lie-status",
  "lie-executed",
  "lie-transfer",
  "view-flood",
  "bad-macs",
  "fabricate-requests",
  "shun-rejuvenated",
  "ask-flood",
  "lie-batches",
  "lie-holds",
  "drip-transfer",
];

/**
 * An equivocation the mobile adversary plans across a move (`Scenario.aimedMove`): the old host's
 * votes left behind, then the primary's proposals and votes, for the same two batches.
 */
export interface AimedPlan {
  view: number;
  primary: string;
  fromSeq: number;
  toSeq: number;
  /** A batch it saw proposed, for one half; the other half gets the empty batch. */
  batch: ClientRequest[];
  /** The origin that batch takes when this primary proposes it (its id at its epoch). */
  origin: string;
}

/** How far ahead of the highest sequence number it saw the old host votes. */
const AIMED_SEQS = 16;

export interface Outgoing {
  to: string | "all";
  message: Buffer;
  toClient?: boolean;
  /** Held this long before the network takes it (`drip-transfer`). */
  delayMs?: number;
}

export class ByzantineFilter {
  private readonly seen: Buffer[] = [];
  /** Results of reads it answered, to pass off later as current (`wrongReadReply`). */
  private readonly oldReadResults: KvResult[] = [];
  /**
   * Validly formed batches it has seen proposed, with their origins, to lie with plausibly: kept
   * across a cold start, so its lies also replay batches of the era before.
   */
  private readonly batches: Array<{ origin: string; requests: ClientRequest[] }> = [];
  /** VIEW_CHANGEs it has received, as wire text, by the view they ask for: to mix into a NEW_VIEW. */
  private readonly viewChangesSeen = new Map<number, string[]>();
  /** Each peer's latest key epoch it has seen, to forge MAC'd messages in their names. */
  private readonly epochsSeen = new Map<string, number>();
  /** Peers whose latest STATUS said they lost their memory. */
  private readonly amnesicPeers = new Set<string>();
  private readonly highestEpochs = new Map<string, number>();
  /** Peers seen under a newer key than before, until they say they are not amnesic. */
  private readonly rejuvenatedPeers = new Set<string>();
  /** How many NEW_VIEWs not fresh for amnesic peers it sent: every other one goes to all. */
  private staleNewViews = 0;
  /** The highest view it has seen, to flood past it. */
  private viewSeen = 0;
  /** The highest sequence number it has seen in a PRE_PREPARE, PREPARE or COMMIT of that view. */
  private seqSeen = 0;
  /** The highest checkpoint it has seen voted for: what its peers can serve. */
  private checkpointSeen = 0;
  /** Set on the replica the adversary takes after an aimed move: the equivocation to carry out. */
  aimedPlan: AimedPlan | undefined;
  /** Lies told, by kind: the simulation reports them. */
  readonly taken = new Map<string, number>();
  /** `drip-transfer`: how long each answer is held (so that it comes within the asker's retry interval). */
  dripDelayMs = 0;

  private took(kind: string): void {
    this.taken.set(kind, (this.taken.get(kind) ?? 0) + 1);
  }

  constructor(
    readonly self: string,
    readonly behaviours: ReadonlySet<ByzantineBehaviour>,
    private readonly peers: readonly string[],
    private readonly signer: () => { signer: Signer; epoch: number },
    private readonly prng: Prng,
    /** What a primary needs to form a NEW_VIEW that checks out: to equivocate with two. */
    private readonly views?: { quorums: Quorums; logWindow: number; ids: readonly string[] },
  ) {}

  private reseal(envelope: ReplicaEnvelope, body: ReplicaBody): Buffer {
    const { signer, epoch } = this.signer();
    return sealEnvelope(envelope.from, epoch, body, (bytes) => signer.sign(bytes));
  }

  private randomDigest(): string {
    let hex = "";
    for (let i = 0; i < 8; i++)
      hex += Math.floor(this.prng.next() * 2 ** 32)
        .toString(16)
        .padStart(8, "0");
    return hex;
  }

  /** Remembers what it received, to replay or lie with later. */
  observe(message: Buffer): void {
    const envelope = parseEnvelope(message);
    if (envelope !== undefined) {
      const highest = this.highestEpochs.get(envelope.from);
      if (highest !== undefined && envelope.epoch > highest)
        this.rejuvenatedPeers.add(envelope.from);
      if (highest === undefined || envelope.epoch > highest)
        this.highestEpochs.set(envelope.from, envelope.epoch);
      this.epochsSeen.set(envelope.from, envelope.epoch);
      const body = envelope.body;
      if ("view" in body && typeof body.view === "number") {
        if (body.view > this.viewSeen) this.seqSeen = 0;
        this.viewSeen = Math.max(this.viewSeen, body.view);
        if (
          body.view === this.viewSeen &&
          (body.type === "PRE_PREPARE" || body.type === "PREPARE" || body.type === "COMMIT")
        )
          this.seqSeen = Math.max(this.seqSeen, body.seq);
      }
      if (body.type === "CHECKPOINT") this.checkpointSeen = Math.max(this.checkpointSeen, body.seq);
      if (body.type === "STATUS") {
        if (body.amnesic) this.amnesicPeers.add(envelope.from);
        else {
          this.amnesicPeers.delete(envelope.from);
          this.rejuvenatedPeers.delete(envelope.from);
        }
      }
      if (body.type === "VIEW_CHANGE" && this.viewChangesSeen.size < 64) {
        const list = this.viewChangesSeen.get(body.newView) ?? [];
        if (list.length < 16) list.push(message.toString("utf8"));
        this.viewChangesSeen.set(body.newView, list);
      }
      if (body.type === "PRE_PREPARE" && body.requests.length > 0) {
        const seen = { origin: body.origin, requests: body.requests };
        if (this.batches.length < 32) this.batches.push(seen);
        else this.batches[this.prng.int(0, 31)] = seen;
      }
    }
    if (!this.behaviours.has("replay")) return;
    if (this.seen.length < 200) this.seen.push(message);
    else this.seen[this.prng.int(0, 199)] = message;
  }

  /**
   * The first half of an aimed move, just before this host's reset: PREPARE and COMMIT votes for
   * the next sequence numbers of the view it is in, a batch it saw to half of the primary's
   * backups and the empty batch to the other half. Returns them with the plan for the primary,
   * or undefined if it has seen no batch to use.
   */
  leaveVotes(
    primary: string,
    ids: readonly string[],
  ): { plan: AimedPlan; out: Outgoing[] } | undefined {
    const batch = this.batches.at(-1)?.requests;
    const primaryEpoch = this.epochsSeen.get(primary);
    if (batch === undefined || primary === this.self || primaryEpoch === undefined)
      return undefined;
    const plan: AimedPlan = {
      view: this.viewSeen,
      primary,
      fromSeq: this.seqSeen + 1,
      toSeq: this.seqSeen + AIMED_SEQS,
      batch,
      origin: batchOrigin(primary, primaryEpoch),
    };
    const { signer, epoch } = this.signer();
    const out: Outgoing[] = [];
    const backups = ids.filter((id) => id !== primary);
    backups.forEach((to, i) => {
      if (to === this.self) return;
      const digest = batchDigest(plan.origin, i % 2 === 0 ? plan.batch : []);
      for (let seq = plan.fromSeq; seq <= plan.toSeq; seq++)
        for (const type of ["PREPARE", "COMMIT"] as const)
          out.push({
            to,
            message: sealEnvelope(this.self, epoch, { type, view: plan.view, seq, digest }, (b) =>
              signer.sign(b),
            ),
          });
    });
    this.took("aimed-votes-left");
    return { plan, out };
  }

  /** Rewrites (or drops) what the honest core wanted to send. */
  filter(actions: readonly ReplicaAction[]): Outgoing[] {
    if (this.behaviours.has("silent")) return [];
    const out: Outgoing[] = [];
    for (const action of actions) {
      if (action.type === "reply") {
        out.push({
          to: action.client,
          message: this.maybeWrongReply(action.message),
          toClient: true,
        });
        continue;
      }
      if (action.type !== "send" && action.type !== "broadcast") continue;
      const envelope = parseEnvelope(action.message);
      if (envelope === undefined) continue;
      const produced: Outgoing[] = [];
      this.lieAbout(action, envelope, produced);
      out.push(...this.shunRejuvenated(produced));
    }
    return out;
  }

  /** What this replica sends for `action`, its lies told. */
  private lieAbout(
    action: Extract<ReplicaAction, { type: "send" | "broadcast" }>,
    envelope: ReplicaEnvelope,
    out: Outgoing[],
  ): void {
    const body = envelope.body;
    const to = action.type === "send" ? action.to : "all";
    const plan = this.aimedPlan;
    if (
      plan !== undefined &&
      body.type === "PRE_PREPARE" &&
      to === "all" &&
      body.view === plan.view &&
      body.seq >= plan.fromSeq &&
      body.seq <= plan.toSeq
    ) {
      // The second half of the aimed move: the batches the old host voted for, half and half,
      // with this primary's COMMITs for them at once.
      this.took("aimed-equivocation");
      const halves = [plan.batch, [] as ClientRequest[]];
      this.peers.forEach((peer, i) => {
        const requests = halves[i % 2] as ClientRequest[];
        const origin = requests.length > 0 ? plan.origin : "";
        const digest = batchDigest(origin, requests);
        const { seq, view } = body;
        out.push(
          { to: peer, message: this.reseal(envelope, { ...body, origin, requests, digest }) },
          { to: peer, message: this.reseal(envelope, { type: "COMMIT", view, seq, digest }) },
        );
      });
      return;
    }
    if (this.behaviours.has("equivocate") && body.type === "PRE_PREPARE" && to === "all") {
      // Half the backups get another batch for the same sequence number, validly formed and
      // signed: the protocol, not a digest check, must keep the two apart. Now and then the
      // other batch is one seen before, origin and all, perhaps from before a cold start: a
      // batch of an earlier era proposed again verbatim.
      const seen = this.batches.length > 0 ? this.prng.pick(this.batches) : undefined;
      const replayed = seen !== undefined && this.prng.chance(0.25);
      if (replayed) this.took("replayed-batch");
      const requests = replayed
        ? seen.requests
        : body.requests.length > 0
          ? [...body.requests].reverse().slice(0, -1)
          : (seen?.requests ?? []);
      const origin =
        requests.length === 0
          ? ""
          : replayed
            ? seen.origin
            : batchOrigin(this.self, envelope.epoch);
      const altered = this.reseal(envelope, {
        ...body,
        origin,
        requests,
        digest: batchDigest(origin, requests),
      });
      this.took("equivocate");
      this.peers.forEach((peer, i) => {
        out.push({ to: peer, message: i % 2 === 0 ? action.message : altered });
      });
      return;
    }
    if (
      this.behaviours.has("lie-new-view") &&
      body.type === "NEW_VIEW" &&
      to !== "all" &&
      this.amnesicPeers.has(to)
    ) {
      const other = this.otherFreshNewView(envelope, body);
      if (other !== undefined) {
        // Sent on to a replica that says it is amnesic in this view: a NEW_VIEW for the same
        // view that checks out and is fresh for it, but fixes more (its own VIEW_CHANGE claims
        // a batch prepared past the others' choices): the replica re-enters the view with it.
        this.took("second-new-view-for-amnesic");
        out.push({ to, message: other });
        return;
      }
    }
    if (this.behaviours.has("lie-new-view") && body.type === "NEW_VIEW" && to === "all") {
      const stale = this.staleForAmnesic(envelope, body);
      if (stale !== undefined) {
        // The replicas that lost their memory get a NEW_VIEW of the same choices that is not
        // fresh for them; the others the real one, which is. Every other time, everyone gets
        // one not fresh for them: the others then change views for them once more.
        const toAll = this.staleNewViews++ % 2 === 1;
        const first = stale.values().next().value as Buffer;
        this.took(toAll ? "stale-new-view-for-all" : "stale-new-view-for-amnesic");
        for (const peer of this.peers)
          out.push({ to: peer, message: stale.get(peer) ?? (toAll ? first : action.message) });
        return;
      }
      const split = this.twoNewViews(envelope, body);
      if (split !== undefined) {
        // Half the backups get a NEW_VIEW decided from one quorum of VIEW_CHANGEs, half from
        // another: both check out, and may fix different checkpoints or batches.
        this.took("split-new-view");
        this.peers.forEach((peer, i) => {
          out.push({ to: peer, message: i % 2 === 0 ? split[0] : split[1] });
        });
        return;
      }
    }
    if (this.behaviours.has("bad-macs") && envelope.macs !== undefined && this.prng.chance(0.5)) {
      // The MACs of some receivers spoiled, the others' true: they disagree on what was said.
      this.took("bad-macs");
      const macs = new Map(envelope.macs);
      for (const to of macs.keys())
        if (this.prng.chance(0.5)) macs.set(to, this.randomDigest().slice(0, 22));
      out.push({ to, message: withMacs(envelope, macs) });
      return;
    }
    const fabricated = this.behaviours.has("fabricate-requests")
      ? this.fabricate(envelope, body)
      : undefined;
    if (fabricated !== undefined) {
      out.push({ to, message: fabricated });
      return;
    }
    const lie = this.lie(envelope, body);
    if (lie !== undefined) {
      out.push({ to, message: lie });
      return;
    }
    const dripped = this.behaviours.has("drip-transfer") ? this.drip(body) : undefined;
    if (dripped !== undefined) {
      out.push({ to, message: this.reseal(envelope, dripped), delayMs: this.dripDelayMs });
      return;
    }
    if (
      this.behaviours.has("wrong-digests") &&
      (body.type === "PREPARE" || body.type === "COMMIT" || body.type === "CHECKPOINT") &&
      this.prng.chance(0.5)
    ) {
      this.took("wrong-digest");
      out.push({ to, message: this.reseal(envelope, { ...body, digest: this.randomDigest() }) });
      return;
    }
    out.push({ to, message: action.message });
  }

  /**
   * Whatever else it tells, nothing reaches a peer rejuvenated since it was compromised (until
   * that peer votes again): its broadcasts go to the others one by one.
   */
  private shunRejuvenated(produced: Outgoing[]): Outgoing[] {
    if (!this.behaviours.has("shun-rejuvenated") || this.rejuvenatedPeers.size === 0)
      return produced;
    const kept: Outgoing[] = [];
    let shunned = false;
    for (const o of produced) {
      if (o.to === "all") {
        shunned = true;
        for (const peer of this.peers)
          if (!this.rejuvenatedPeers.has(peer)) kept.push({ to: peer, message: o.message });
      } else if (this.rejuvenatedPeers.has(o.to)) shunned = true;
      else kept.push(o);
    }
    if (shunned) this.took("shunned-rejuvenated");
    return kept;
  }

  /**
   * A request its client never sent: the next number or two of a client seen in a batch, a write
   * of the adversary's choosing. Executed, it would take the place of that client's own request
   * with the same number (skipped as a duplicate) and answer it with another write's result.
   */
  private fabricatedRequest(like: readonly ClientRequest[]): ClientRequest | undefined {
    const pool =
      like.length > 0 ? like : this.batches.length > 0 ? this.prng.pick(this.batches).requests : [];
    if (pool.length === 0) return undefined;
    const real = this.prng.pick(pool);
    const key = "key" in real.op && typeof real.op.key === "string" ? real.op.key : "k0";
    return {
      client: real.client,
      ts: real.ts + this.prng.int(1, 2),
      op: { op: "put", key, value: `fabricated-${this.prng.int(0, 999)}` },
    };
  }

  /** `fabricate-requests`: the message with a request no client sent, or undefined to leave it. */
  private fabricate(envelope: ReplicaEnvelope, body: ReplicaBody): Buffer | undefined {
    if (!this.prng.chance(0.5)) return undefined;
    switch (body.type) {
      case "PRE_PREPARE": {
        const request = this.fabricatedRequest(body.requests);
        if (request === undefined) return undefined;
        const requests = [...body.requests];
        requests.splice(this.prng.int(0, requests.length), requests.length > 0 ? 1 : 0, request);
        this.took("fabricated-request.pre-prepare");
        const origin = batchOrigin(this.self, envelope.epoch);
        return this.reseal(envelope, {
          ...body,
          origin,
          requests,
          digest: batchDigest(origin, requests),
        });
      }
      case "VIEW_CHANGE": {
        const request = this.fabricatedRequest([]);
        if (request === undefined) return undefined;
        const requests = [request];
        const origin = this.someOrigin(envelope);
        const digest = batchDigest(origin, requests);
        const seq = body.stable.seq + this.prng.int(1, 4);
        const view = Math.max(0, body.newView - 1);
        this.took("fabricated-request.view-change");
        return this.reseal(envelope, {
          ...body,
          prepared: [...body.prepared.filter((p) => p.seq !== seq), { seq, view, digest }],
          prePrepared: [...body.prePrepared.filter((p) => p.seq !== seq), { seq, view, digest }],
          batches: [...body.batches, { digest, origin, requests }],
        });
      }
      case "EXECUTED": {
        if (body.entries.length === 0) return undefined;
        this.took("fabricated-request.executed");
        return this.reseal(envelope, {
          ...body,
          entries: body.entries.map((e) => {
            const request = this.fabricatedRequest(e.requests);
            if (request === undefined) return e;
            const requests = [...e.requests, request];
            return { ...e, requests, digest: batchDigest(e.origin, requests) };
          }),
        });
      }
      default:
        return undefined;
    }
  }

  /** Its own origin now, or the origin of a batch it saw (perhaps from before a cold start). */
  private someOrigin(envelope: ReplicaEnvelope): string {
    if (this.batches.length > 0 && this.prng.chance(0.5))
      return this.prng.pick(this.batches).origin;
    return batchOrigin(this.self, envelope.epoch);
  }

  /** `drip-transfer`: a state transfer's answer cut to the least it can be, or undefined. */
  private drip(body: ReplicaBody): ReplicaBody | undefined {
    switch (body.type) {
      case "META": {
        const { leaves: _leaves, parts: _parts, ...least } = body;
        this.took("drip-transfer.meta");
        return least;
      }
      case "LEAVES":
        this.took("drip-transfer.leaves");
        return { ...body, leaves: body.leaves.slice(0, 1) };
      case "PARTS":
        this.took("drip-transfer.parts");
        return { ...body, parts: body.parts.slice(0, 1) };
      default:
        return undefined;
    }
  }

  /** A validly signed message that says something false, or undefined to send the truth. */
  private lie(envelope: ReplicaEnvelope, body: ReplicaBody): Buffer | undefined {
    const has = (b: ByzantineBehaviour) => this.behaviours.has(b) && this.prng.chance(0.6);
    const n = this.peers.length + 1;
    switch (body.type) {
      case "PRE_PREPARE":
        if (!has("empty-batches")) return undefined;
        this.took("empty-batch");
        return this.reseal(envelope, {
          ...body,
          origin: "",
          requests: [],
          digest: batchDigest("", []),
        });
      case "VIEW_CHANGE": {
        if (this.behaviours.has("lie-batches") && this.prng.chance(0.3)) {
          // A batch prepared in the view just before, that no replica ever saw: no body to fetch.
          this.took("lying-batches.view-change");
          const seq = body.stable.seq + this.prng.int(1, 4);
          const claim = { seq, view: Math.max(0, body.newView - 1), digest: this.randomDigest() };
          return this.reseal(envelope, {
            ...body,
            prepared: [...body.prepared.filter((p) => p.seq !== seq), claim],
            prePrepared: [...body.prePrepared, claim],
          });
        }
        if (!has("lie-view-change")) return undefined;
        this.took("lying-view-change");
        // A batch seen proposed, with the origin it had: perhaps one of the era before a cold start.
        const seen =
          this.batches.length > 0 ? this.prng.pick(this.batches) : { origin: "", requests: [] };
        const claimed = seen.requests;
        const digest = batchDigest(seen.origin, claimed);
        const seq = body.stable.seq + this.prng.int(1, 8);
        switch (this.prng.int(0, 4)) {
          case 4: {
            // it says it is (or is not) a cold start's replica before its first view
            const { coldStart: _marked, ...unmarked } = body;
            return this.reseal(envelope, body.coldStart ? unmarked : { ...body, coldStart: true });
          }
          case 0: // it forgets everything it prepared
            return this.reseal(envelope, { ...body, prepared: [], prePrepared: [], batches: [] });
          case 1: // it claims a batch it never prepared, in the view just before
            return this.reseal(envelope, {
              ...body,
              prepared: [
                ...body.prepared.filter((p) => p.seq !== seq),
                { seq, view: Math.max(0, body.newView - 1), digest },
              ],
              prePrepared: [...body.prePrepared, { seq, view: body.newView - 1, digest }],
              batches: [...body.batches, { digest, origin: seen.origin, requests: claimed }],
            });
          case 2: // a checkpoint far ahead that nobody has
            return this.reseal(envelope, {
              ...body,
              stable: { seq: body.stable.seq + 64, digest: this.randomDigest() },
            });
          default: {
            const lie = this.prng.int(0, 2);
            // It says it holds no one's key.
            if (lie === 0) return this.reseal(envelope, { ...body, keyEpochs: Array(n).fill(0) });
            // It asks past the view at once, naming it passed over: with k' + 1 asking higher, the
            // correct replicas are taken along before its primary had its chance.
            if (lie === 1)
              return this.reseal(envelope, {
                ...body,
                newView: body.newView + 1,
                passedOver: [...(body.passedOver ?? []), body.newView].slice(-MAX_PASSED_OVER),
              });
            // It says it holds every key and passed over the views just below (to have correct
            // primaries counted at fault by the refresh rule).
            const passedOver = [1, 2, 3, 4].map((d) => body.newView - d).filter((w) => w >= 0);
            const keyEpochs = body.keyEpochs.map((e) => e + 1);
            return this.reseal(envelope, { ...body, keyEpochs, passedOver });
          }
        }
      }
      case "NEW_VIEW": {
        if (!has("lie-new-view")) return undefined;
        if (this.prng.chance(0.5)) {
          const mixed = this.mixedViewChanges(envelope.from, body.viewChanges);
          if (mixed === undefined) return undefined;
          this.took("mixed-new-view");
          return this.reseal(envelope, { ...body, viewChanges: mixed });
        }
        if (body.proposals.length === 0) return undefined;
        this.took("lying-new-view");
        const proposals = body.proposals.map((p, i) =>
          i === 0 ? { seq: p.seq, digest: batchDigest("", []) } : p,
        );
        return this.reseal(envelope, { ...body, proposals });
      }
      case "STATUS":
        if (!has("lie-status")) return undefined;
        this.took("lying-status");
        return this.reseal(envelope, {
          ...body,
          view: body.view + this.prng.int(0, 3),
          lastExecuted: this.prng.chance(0.5) ? 0 : body.lastExecuted + this.prng.int(1, 500),
          stableSeq: this.prng.chance(0.5) ? 0 : body.stableSeq + this.prng.int(1, 500),
          maxPrepared: body.maxPrepared + this.prng.int(0, 500),
          wantCheckpoint: this.prng.int(0, 1000),
          amnesic: this.prng.chance(0.5),
        });
      case "EXECUTED":
        if (!has("lie-executed") || body.entries.length === 0) return undefined;
        this.took("lying-executed");
        return this.reseal(envelope, {
          ...body,
          entries: body.entries.map((e) => {
            const seen =
              this.batches.length > 0 ? this.prng.pick(this.batches) : { origin: "", requests: [] };
            return { ...e, ...seen, digest: batchDigest(seen.origin, seen.requests) };
          }),
        });
      case "CHECKPOINT":
        if (!has("lie-executed")) return undefined;
        this.took("lying-checkpoint");
        return this.reseal(envelope, {
          ...body,
          seq: body.seq + 4 * this.prng.int(1, 4),
          digest: this.randomDigest(),
        });
      case "META":
      case "CLIENTS":
      case "LEAVES":
      case "PARTS":
        return has("lie-transfer") ? this.lieAboutState(envelope, body) : undefined;
      case "HOLD":
        if (!has("lie-holds")) return undefined;
        this.took("lying-holds.hold");
        return this.reseal(envelope, {
          ...body,
          ts: body.ts + this.prng.int(1, 3),
          digest: this.randomDigest(),
        });
      case "HOLDERS": {
        if (!has("lie-holds")) return undefined;
        this.took("lying-holds.holders");
        const seen = this.batches.flatMap((b) => b.requests);
        const lie = this.prng.int(0, 2);
        // Another request it saw (mostly executed: refused before any signature is checked).
        if (lie === 0 && seen.length > 0)
          return this.reseal(envelope, { ...body, request: this.prng.pick(seen) });
        // The same client and number, another write: the HOLDs' signatures are over the digest
        // of the request they were made for, and do not check for this one.
        if (lie === 1)
          return this.reseal(envelope, {
            ...body,
            request: {
              ...body.request,
              op: { op: "put", key: "lie", value: `${this.prng.int(0, 1_000_000)}` },
            },
          });
        // Each HOLD's signature under the next sender's name.
        const holds = body.holds.map((h, i, all) => ({
          ...h,
          sig: (all[(i + 1) % all.length] as { sig: string }).sig,
        }));
        return this.reseal(envelope, { ...body, holds });
      }
      case "BATCH": {
        if (!this.behaviours.has("lie-batches") || !this.prng.chance(0.6)) return undefined;
        this.took("lying-batches.batch");
        // Another batch it saw, or an empty one, under the digest asked for.
        const other =
          this.batches.length > 0 ? this.prng.pick(this.batches) : { origin: "", requests: [] };
        return this.reseal(envelope, {
          ...body,
          batches: body.batches.map(({ seq, batch }) => ({
            seq,
            batch: { ...other, digest: batch.digest },
          })),
        });
      }
      default:
        return undefined;
    }
  }

  /**
   * `lie-transfer`: an answer to a state transfer that does not match the checkpoint asked for
   * (its first meta, its leaves, its partitions, or the partitions a META carries), or a
   * NO_CHECKPOINT for a checkpoint it holds, so that the asker moves on or rests.
   */
  private lieAboutState(
    envelope: ReplicaEnvelope,
    body: Extract<ReplicaBody, { type: "META" | "CLIENTS" | "LEAVES" | "PARTS" }>,
  ): Buffer | undefined {
    if (body.type === "CLIENTS") {
      // A page of the client table with another client's number in it: the table is checked
      // whole, against the checkpoint digest, once every page is in.
      if (body.clients.length === 0) return undefined;
      this.took("lying-transfer.clients");
      return this.reseal(envelope, {
        ...body,
        clients: body.clients.map((e, i) => (i === 0 ? { ...e, ts: e.ts + 1 } : e)),
      });
    }
    if (this.prng.chance(0.3)) {
      this.took("lying-transfer.no-checkpoint");
      return this.reseal(envelope, { type: "NO_CHECKPOINT", seq: body.seq });
    }
    const garbage = Buffer.from("garbage").toString("base64");
    switch (body.type) {
      case "META":
        if (body.parts !== undefined && body.parts.length > 0 && this.prng.chance(0.5)) {
          this.took("lying-transfer.inline");
          return this.reseal(envelope, {
            ...body,
            parts: body.parts.map((p) => ({ ...p, data: garbage })),
          });
        }
        this.took("lying-transfer");
        return this.reseal(envelope, {
          ...body,
          metas: body.metas.map((m, i) => (i === 0 ? this.randomDigest() : m)),
        });
      case "LEAVES":
        if (body.leaves.length === 0) return undefined;
        this.took("lying-transfer.leaves");
        return this.reseal(envelope, {
          ...body,
          leaves: body.leaves.map((l) => ({
            ...l,
            digests: l.digests.map(() => this.randomDigest()),
          })),
        });
      default:
        if (body.parts.length === 0) return undefined;
        this.took("lying-transfer");
        return this.reseal(envelope, {
          ...body,
          parts: body.parts.map((p) => ({ ...p, data: garbage })),
        });
    }
  }

  /**
   * Two NEW_VIEWs for the same view, each decided from a different quorum of the VIEW_CHANGEs it
   * forwards or received for that view (all of one kind, cold-start or not), each with the
   * decision those make: both pass every backup's check. Undefined when it has no second quorum.
   */
  private twoNewViews(
    envelope: ReplicaEnvelope,
    body: Extract<ReplicaBody, { type: "NEW_VIEW" }>,
  ): [Buffer, Buffer] | undefined {
    if (this.views === undefined || !this.prng.chance(0.5)) return undefined;
    const { quorums, logWindow } = this.views;
    const bySender = new Map<string, { text: string; body: ViewChangeBody }>();
    for (const text of [...body.viewChanges, ...(this.viewChangesSeen.get(body.view) ?? [])]) {
      const e = parseEnvelope(Buffer.from(text, "utf8"));
      if (e?.body.type !== "VIEW_CHANGE" || e.body.newView !== body.view) continue;
      if (!bySender.has(e.from)) bySender.set(e.from, { text, body: e.body });
    }
    const cold = (vc: ViewChangeBody) => vc.coldStart === true;
    const first = [...bySender.values()][0];
    if (first === undefined) return undefined;
    const kind = [...bySender.values()].filter((v) => cold(v.body) === cold(first.body));
    if (kind.length <= quorums.quorum) return undefined;
    const make = (chosen: typeof kind): Buffer | undefined => {
      const decision = decideNewView(
        chosen.map((v) => v.body),
        quorums,
        logWindow,
        nullDigest(),
      );
      if (decision === undefined) return undefined;
      return this.reseal(envelope, {
        type: "NEW_VIEW",
        view: body.view,
        viewChanges: chosen.map((v) => v.text),
        checkpoint: decision.checkpoint,
        proposals: decision.proposals,
      });
    };
    const a = make(kind.slice(0, quorums.quorum));
    const b = make(kind.slice(-quorums.quorum));
    return a !== undefined && b !== undefined ? [a, b] : undefined;
  }

  /**
   * Per peer that says it lost its memory: the NEW_VIEW with this replica's own VIEW_CHANGE
   * re-signed to hold that peer's key epoch 0, so the view is not fresh for it. Undefined when
   * no peer is amnesic, its own VIEW_CHANGE is not in the NEW_VIEW, or by chance.
   */
  private staleForAmnesic(
    envelope: ReplicaEnvelope,
    body: Extract<ReplicaBody, { type: "NEW_VIEW" }>,
  ): Map<string, Buffer> | undefined {
    const ids = this.views?.ids;
    if (ids === undefined || this.amnesicPeers.size === 0 || !this.prng.chance(0.5))
      return undefined;
    const ownAt = body.viewChanges.findIndex(
      (text) => parseEnvelope(Buffer.from(text, "utf8"))?.from === this.self,
    );
    const own =
      ownAt < 0 ? undefined : parseEnvelope(Buffer.from(body.viewChanges[ownAt] as string));
    if (own?.body.type !== "VIEW_CHANGE") return undefined;
    const ownBody = own.body;
    const out = new Map<string, Buffer>();
    for (const peer of this.amnesicPeers) {
      const i = ids.indexOf(peer);
      if (i < 0) continue;
      const keyEpochs = [...ownBody.keyEpochs];
      keyEpochs[i] = 0;
      const stale = this.reseal(own, { ...ownBody, keyEpochs }).toString("utf8");
      out.set(
        peer,
        this.reseal(envelope, {
          ...body,
          viewChanges: body.viewChanges.map((t, j) => (j === ownAt ? stale : t)),
        }),
      );
    }
    return out.size > 0 ? out : undefined;
  }

  /**
   * The NEW_VIEW again with its own VIEW_CHANGE re-signed to claim a batch it saw prepared one
   * view earlier, just past the NEW_VIEW's choices, and the decision those VIEW_CHANGEs then make
   * (null batches where the claim alone stands). Undefined when it has no batch to claim, its
   * own VIEW_CHANGE is not there, the decision does not come, or by chance.
   */
  private otherFreshNewView(
    envelope: ReplicaEnvelope,
    body: Extract<ReplicaBody, { type: "NEW_VIEW" }>,
  ): Buffer | undefined {
    const batch = this.batches.at(-1);
    if (this.views === undefined || batch === undefined || !this.prng.chance(0.5)) return undefined;
    const ownAt = body.viewChanges.findIndex(
      (text) => parseEnvelope(Buffer.from(text, "utf8"))?.from === this.self,
    );
    const own =
      ownAt < 0 ? undefined : parseEnvelope(Buffer.from(body.viewChanges[ownAt] as string));
    if (own?.body.type !== "VIEW_CHANGE" || body.view === 0) return undefined;
    const seq = Math.max(body.checkpoint.seq, ...body.proposals.map((p) => p.seq)) + 1;
    const digest = batchDigest(batch.origin, batch.requests);
    const claim = { seq, view: body.view - 1, digest };
    const lying = this.reseal(own, {
      ...own.body,
      prepared: [...own.body.prepared.filter((p) => p.seq !== seq), claim],
      prePrepared: [...own.body.prePrepared.filter((p) => p.seq !== seq), claim],
      batches: [...own.body.batches, { digest, origin: batch.origin, requests: batch.requests }],
    }).toString("utf8");
    const viewChanges = body.viewChanges.map((t, j) => (j === ownAt ? lying : t));
    const parsed = viewChanges.map((t) => parseEnvelope(Buffer.from(t, "utf8"))?.body);
    if (parsed.some((b) => b?.type !== "VIEW_CHANGE")) return undefined;
    const decision = decideNewView(
      parsed as ViewChangeBody[],
      this.views.quorums,
      this.views.logWindow,
      nullDigest(),
    );
    if (decision === undefined) return undefined;
    return this.reseal(envelope, {
      type: "NEW_VIEW",
      view: body.view,
      viewChanges,
      checkpoint: decision.checkpoint,
      proposals: decision.proposals,
    });
  }

  /**
   * The VIEW_CHANGEs of a NEW_VIEW with the cold-start mark no longer the same on all: its own
   * re-signed with the mark turned over, or another's swapped for one it received for the same
   * view with the other mark. Undefined when it has nothing to mix with.
   */
  private mixedViewChanges(self: string, texts: readonly string[]): string[] | undefined {
    const parsed = texts.map((text) => parseEnvelope(Buffer.from(text, "utf8")));
    const bodies = parsed.map((e) => (e?.body.type === "VIEW_CHANGE" ? e.body : undefined));
    const first = bodies[0];
    if (first === undefined) return undefined;
    const cold = first.coldStart === true;
    const ownAt = parsed.findIndex((e) => e?.from === self);
    const own = ownAt >= 0 ? parsed[ownAt] : undefined;
    const ownBody = bodies[ownAt];
    if (own !== undefined && ownBody !== undefined && this.prng.chance(0.5)) {
      const { coldStart: _marked, ...unmarked } = ownBody;
      const turned = this.reseal(own, cold ? unmarked : { ...ownBody, coldStart: true });
      return texts.map((t, i) => (i === ownAt ? turned.toString("utf8") : t));
    }
    const senders = new Set(parsed.map((e) => e?.from));
    const other = (this.viewChangesSeen.get(first.newView) ?? []).find((text) => {
      const e = parseEnvelope(Buffer.from(text, "utf8"));
      return (
        e !== undefined &&
        e.body.type === "VIEW_CHANGE" &&
        (e.body.coldStart === true) !== cold &&
        !senders.has(e.from)
      );
    });
    if (other === undefined) return undefined;
    const at = this.prng.int(0, texts.length - 1);
    return texts.map((t, i) => (i === at ? other : t));
  }

  private maybeWrongReply(message: Buffer): Buffer {
    const envelope = parseEnvelope(message);
    if (this.behaviours.has("bad-macs") && envelope?.macs !== undefined && this.prng.chance(0.5)) {
      this.took("bad-macs");
      return withMacs(
        envelope,
        new Map([...envelope.macs.keys()].map((to) => [to, this.randomDigest().slice(0, 22)])),
      );
    }
    if (!this.behaviours.has("wrong-replies")) return message;
    if (envelope?.body.type === "READ_REPLY") return this.wrongReadReply(envelope, envelope.body);
    if (envelope === undefined || envelope.body.type !== "REPLY") return message;
    if (this.batches.length > 0 && this.prng.chance(0.3)) {
      // The true result, said of another batch (perhaps one of the era before a cold start): to
      // join the replies to an execution that was lost.
      const seen = this.prng.pick(this.batches);
      this.took("wrong-reply.batch");
      return this.reseal(envelope, {
        ...envelope.body,
        batch: batchDigest(seen.origin, seen.requests),
      });
    }
    this.took("wrong-reply");
    const result: KvResult = { op: "get", value: `forged-${this.prng.int(0, 9)}` };
    return this.reseal(envelope, { ...envelope.body, result });
  }

  /**
   * A lying answer to an unordered read: an older answer's result passed off as the state at
   * this sequence number, and as having held since the start (aiming at a stale read: its
   * interval then meets any correct answer's), a forged value, or the true result at a sequence
   * number it is not at (aiming to make the read fail over to ordering).
   */
  private wrongReadReply(
    envelope: ReplicaEnvelope,
    body: Extract<ReplicaBody, { type: "READ_REPLY" }>,
  ): Buffer {
    const older = this.oldReadResults.length > 0 ? this.prng.pick(this.oldReadResults) : undefined;
    this.oldReadResults.push(body.result);
    if (this.oldReadResults.length > 16) this.oldReadResults.shift();
    const lie = this.prng.int(0, 2);
    this.took(`wrong-read-reply.${["stale", "forged", "other-seq"][lie]}`);
    if (lie === 0 && older !== undefined)
      return this.reseal(envelope, {
        ...body,
        result: older,
        since: this.prng.chance(0.5) ? 0 : body.since,
      });
    if (lie === 2) {
      const seq = body.seq + this.prng.int(1, 3);
      return this.reseal(envelope, { ...body, seq, since: this.prng.chance(0.5) ? seq : 0 });
    }
    const result: KvResult = { op: "get", value: `forged-${this.prng.int(0, 9)}` };
    return this.reseal(envelope, { ...body, result });
  }

  /**
   * `ask-flood`: `perKind` requests of each kind to every peer (16 while the service idles, where
   * the chatter check reads their effect; 4 while it runs, which is enough to exercise the rations
   * under load and keeps the simulation quick). State requests for the newest checkpoint it saw
   * voted and for sequence numbers with no checkpoint (each a NO_CHECKPOINT to answer), its
   * FETCH_METAs claiming a state that matches nothing (so that the answer would carry all it may),
   * its FETCH_LEAVES and FETCH_PARTS asking for 16 each (the check counts messages; an answer of
   * 256 partitions took most of the time of a run); and STATUS messages saying it has
   * executed nothing, is catching up, is in an older view and (half of them) lost its memory, each
   * of which asks for the log, checkpoints, votes in flight and the NEW_VIEW. The simulation calls
   * this while the service idles too, where its peers' answers count towards their chatter.
   */
  askFlood(perKind: number): Outgoing[] {
    if (!this.behaviours.has("ask-flood") || this.behaviours.has("silent")) return [];
    this.took("ask-flood");
    const { signer, epoch } = this.signer();
    const seal = (body: ReplicaBody) => sealEnvelope(this.self, epoch, body, (b) => signer.sign(b));
    const seqs = [
      this.checkpointSeen,
      Math.max(0, this.checkpointSeen - 1),
      this.checkpointSeen + 1_000,
    ];
    const all = (count: number) => Array.from({ length: count }, (_, i) => i);
    // One of each variant, sent again and again: a receiver checks every copy as a new message.
    // One digest: every meta past the ones it names differs as much as a wrong one.
    const have = [this.randomDigest()];
    const variants: Buffer[] = [];
    for (const seq of seqs)
      variants.push(
        seal({ type: "FETCH_META", seq, have }),
        seal({ type: "FETCH_LEAVES", seq, metas: all(16) }),
        seal({ type: "FETCH_PARTS", seq, parts: all(16) }),
      );
    for (const amnesic of [false, true])
      variants.push(
        seal({
          type: "STATUS",
          view: Math.max(0, this.viewSeen - 1),
          lastExecuted: 0,
          stableSeq: 0,
          recovering: false,
          maxPrepared: 0,
          wantCheckpoint: 0,
          amnesic,
          catchingUp: true,
        }),
      );
    const out: Outgoing[] = [];
    // Per kind: a third of the FETCH_* of each seq, and as many STATUS as each kind of FETCH.
    const fetches = variants.slice(0, 9);
    const statuses = variants.slice(9);
    for (let i = 0; i < perKind; i++) {
      for (let kind = 0; kind < 3; kind++)
        out.push({ to: "all", message: fetches[(i % 3) * 3 + kind] as Buffer });
      out.push({ to: "all", message: statuses[i % 2] as Buffer });
    }
    return out;
  }

  /** Unprompted mischief, every few ticks. */
  mischief(nowMs: number): Outgoing[] {
    const out: Outgoing[] = [];
    if (this.behaviours.has("lie-batches") && this.batches.length > 0 && this.prng.chance(0.3)) {
      // Every peer is asked for bodies it may hold: each answer costs it a batch's bytes, within
      // this replica's allowance of fetch answers.
      this.took("lying-batches.fetch");
      const { signer, epoch } = this.signer();
      const wants = [0, 1, 2, 3].map(() => {
        const batch = this.prng.pick(this.batches);
        return { seq: this.seqSeen, digest: batchDigest(batch.origin, batch.requests) };
      });
      const body: ReplicaBody = { type: "FETCH_BATCH", wants };
      const message = sealEnvelope(this.self, epoch, body, (b) => signer.sign(b));
      for (let i = 0; i < 4; i++) out.push({ to: "all", message });
    }
    if (this.behaviours.has("replay") && this.seen.length > 0 && this.prng.chance(0.3)) {
      this.took("replay");
      out.push({ to: this.prng.pick(this.peers), message: this.prng.pick(this.seen) });
    }
    if (this.behaviours.has("view-flood") && this.prng.chance(0.3)) {
      this.took("view-flood");
      const { signer, epoch } = this.signer();
      for (let v = 1; v <= 4; v++) {
        const body: ReplicaBody = {
          type: "VIEW_CHANGE",
          newView: this.viewSeen + this.prng.int(2, 2_000),
          stable: { seq: 0, digest: this.randomDigest() },
          checkpoints: [],
          prepared: [],
          prePrepared: [],
          batches: [],
          keyEpochs: Array(this.peers.length + 1).fill(epoch),
        };
        out.push({
          to: "all",
          message: sealEnvelope(this.self, epoch, body, (b) => signer.sign(b)),
        });
      }
    }
    out.push(...this.askFlood(4));
    if (this.behaviours.has("forge") && this.prng.chance(0.3)) {
      this.took("forge");
      // Another replica's name with our signature: must fail the check.
      const victim = this.prng.pick(this.peers);
      const body: ReplicaBody = {
        type: "VIEW_CHANGE",
        newView: 1_000 + this.prng.int(0, 5),
        stable: { seq: 0, digest: this.randomDigest() },
        checkpoints: [],
        prepared: [],
        prePrepared: [],
        batches: [],
        keyEpochs: [],
      };
      const forged = sealEnvelope(victim, 0, body, (bytes) => this.signer().signer.sign(bytes));
      out.push({ to: "all", message: forged });
      // A COMMIT in its name under its current epoch, with MACs made up: must fail them.
      const macd = sealEnvelopeWithMacs(
        victim,
        this.epochsSeen.get(victim) ?? 0,
        {
          type: "COMMIT",
          view: this.viewSeen,
          seq: this.prng.int(1, 200),
          digest: this.randomDigest(),
        },
        [this.self, ...this.peers].filter((id) => id !== victim),
        () => this.randomDigest().slice(0, 22),
      );
      if (macd !== undefined) out.push({ to: "all", message: macd });
      // And a request from a client that does not exist.
      out.push({
        to: this.prng.pick(this.peers),
        message: encodeClientMessage({
          type: "REQUEST",
          request: {
            client: "mallory",
            ts: nowMs,
            op: { op: "put", key: "k0", value: "x" },
          },
        }),
        toClient: false,
      });
    }
    return out;
  }
}
