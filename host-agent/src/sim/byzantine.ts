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
  encodeClientMessage,
  parseEnvelope,
  type ReplicaBody,
  type ReplicaEnvelope,
  sealEnvelope,
} from "../replica/messages.js";
import type { ReplicaAction } from "../replica/replica-core.js";
import type { Prng } from "./prng.js";

export type ByzantineBehaviour =
  | "silent"
  | "equivocate"
  | "wrong-digests"
  | "wrong-replies"
  | "forge"
  | "replay"
  | "corrupt-state";

export const BYZANTINE_BEHAVIOURS: readonly ByzantineBehaviour[] = [
  "silent",
  "equivocate",
  "wrong-digests",
  "wrong-replies",
  "forge",
  "replay",
  "corrupt-state",
];

export interface Outgoing {
  to: string | "all";
  message: Buffer;
  toClient?: boolean;
}

export class ByzantineFilter {
  private readonly seen: Buffer[] = [];

  constructor(
    readonly self: string,
    readonly behaviours: ReadonlySet<ByzantineBehaviour>,
    private readonly peers: readonly string[],
    private readonly signer: () => { signer: Signer; epoch: number },
    private readonly prng: Prng,
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

  /** Remembers what it received, to replay later. */
  observe(message: Buffer): void {
    if (!this.behaviours.has("replay")) return;
    if (this.seen.length < 200) this.seen.push(message);
    else this.seen[this.prng.int(0, 199)] = message;
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
      const body = envelope.body;
      const to = action.type === "send" ? action.to : "all";
      if (this.behaviours.has("equivocate") && body.type === "PRE_PREPARE" && to === "all") {
        // Half the backups get a different batch for the same sequence number.
        const other: ReplicaBody = { ...body, requests: [...body.requests].reverse().slice(0, -1) };
        const altered = this.reseal(envelope, { ...other, digest: this.randomDigest() });
        this.peers.forEach((peer, i) => {
          out.push({ to: peer, message: i % 2 === 0 ? action.message : altered });
        });
        continue;
      }
      if (
        this.behaviours.has("wrong-digests") &&
        (body.type === "PREPARE" || body.type === "COMMIT" || body.type === "CHECKPOINT") &&
        this.prng.chance(0.5)
      ) {
        out.push({ to, message: this.reseal(envelope, { ...body, digest: this.randomDigest() }) });
        continue;
      }
      out.push({ to, message: action.message });
    }
    return out;
  }

  private maybeWrongReply(message: Buffer): Buffer {
    if (!this.behaviours.has("wrong-replies")) return message;
    const envelope = parseEnvelope(message);
    if (envelope === undefined || envelope.body.type !== "REPLY") return message;
    const result: KvResult = { op: "get", value: `forged-${this.prng.int(0, 9)}` };
    return this.reseal(envelope, { ...envelope.body, result });
  }

  /** Unprompted mischief, every few ticks. */
  mischief(nowMs: number): Outgoing[] {
    const out: Outgoing[] = [];
    if (this.behaviours.has("replay") && this.seen.length > 0 && this.prng.chance(0.3))
      out.push({ to: this.prng.pick(this.peers), message: this.prng.pick(this.seen) });
    if (this.behaviours.has("forge") && this.prng.chance(0.3)) {
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
      // And a request from a client that does not exist.
      out.push({
        to: this.prng.pick(this.peers),
        message: encodeClientMessage({
          type: "REQUEST",
          request: {
            client: "mallory",
            ts: nowMs,
            op: { op: "put", key: "k0", value: "x" },
            sig: "AAAA",
          },
        }),
        toClient: false,
      });
    }
    return out;
  }
}
