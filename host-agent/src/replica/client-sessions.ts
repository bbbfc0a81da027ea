/**
 * Replies with MACs (SAFETY.md, "MACs and signatures"): a server (a replica, or the unreplicated
 * baseline) keeps each client's session half, taken from a SESSION the client signed, and
 * answers with its own half, signed under its current key epoch; replies then carry a MAC under
 * the pair's session key instead of a signature. A reply is MAC'd only after this server's
 * current half went out to that client (on the same connection, so before the reply), and
 * signed otherwise.
 */

import type { Signer } from "./key-ring.js";
import { type ReplicaBody, sealEnvelope, sealEnvelopeWithMacs } from "./messages.js";
import { type KeyAgreement, Sessions } from "./sessions.js";

/** Clients whose halves are kept, at most: the service's client list bounds it in practice. */
const MAX_CLIENTS = 65_536;

/** A client repeating the same half is answered at most this often (each answer is a signature). */
export const REPEAT_ANSWER_MS = 100;

export class ClientSessions {
  private readonly sessions: Sessions;
  /** Per client: the own epoch whose half was sent to it. */
  private readonly halfSentAt = new Map<string, number>();
  /** Per client: its half, the clock reading it came with, and when it was last answered. */
  private readonly halves = new Map<string, { ts: number; dh: string; answeredAtMs: number }>();

  constructor(
    private readonly self: string,
    private epoch: number,
    newAgreement: () => KeyAgreement,
  ) {
    this.sessions = new Sessions(self, epoch, newAgreement);
  }

  /** A new key epoch: a new half, every client's session with the old one gone. */
  renew(epoch: number): void {
    this.epoch = epoch;
    this.sessions.renew(epoch);
  }

  /**
   * A client's half from its verified SESSION; false if an older one (a replay), the same one
   * again within `REPEAT_ANSWER_MS` of the last answer (a flood costs no signatures), or too many
   * clients. The caller answers a taken one with `answer`.
   */
  learn(client: string, ts: number, dh: string, nowMs: number): boolean {
    const known = this.halves.get(client);
    if (known !== undefined && ts < known.ts) return false;
    if (known === undefined && this.halves.size >= MAX_CLIENTS) return false;
    const repeat = known !== undefined && known.ts === ts && known.dh === dh;
    if (repeat && nowMs - known.answeredAtMs < REPEAT_ANSWER_MS) return false;
    this.halves.set(client, { ts, dh, answeredAtMs: nowMs });
    this.sessions.learn(client, ts, dh);
    this.halfSentAt.delete(client);
    return true;
  }

  /**
   * A client's MAC on a request it sent this server: "ok" only under its session with this
   * server's current half, which was made when this server started or last took a new key.
   */
  check(client: string, bytes: Buffer, mac: string): "ok" | "no-session" | "bad-mac" {
    const ts = this.halves.get(client)?.ts;
    if (ts === undefined) return "no-session";
    return this.sessions.check(client, ts, bytes, mac);
  }

  /**
   * This server's half again for a client whose request carried no MAC that checks (it lacks the
   * current half), at most every `REPEAT_ANSWER_MS`; undefined if the client's half is unknown
   * (its next SESSION brings it) or it was answered just now.
   */
  prompt(client: string, signer: Signer, nowMs: number): Buffer | undefined {
    const known = this.halves.get(client);
    if (known === undefined || nowMs - known.answeredAtMs < REPEAT_ANSWER_MS) return undefined;
    known.answeredAtMs = nowMs;
    return this.answer(client, signer);
  }

  /** This server's half for `client`, signed: send it on the client's connection. */
  answer(client: string, signer: Signer): Buffer {
    this.halfSentAt.set(client, this.epoch);
    const body: ReplicaBody = { type: "SESSION", dh: this.sessions.publicKey, ask: false };
    return sealEnvelope(this.self, this.epoch, body, (b) => signer.sign(b));
  }

  /** Whether a reply to `client` goes with a MAC (its half is here, under a session). */
  hasSession(client: string): boolean {
    const ts = this.halves.get(client)?.ts;
    return ts !== undefined && this.sessions.has(client, ts);
  }

  /**
   * The envelopes that carry `body` to `client`: this server's half first if the client has not
   * had its current one, then the reply with a MAC, or signed if there is no session.
   */
  seal(client: string, body: ReplicaBody, signer: Signer): Buffer[] {
    const ts = this.halves.get(client)?.ts;
    if (ts === undefined || !this.sessions.has(client, ts))
      return [sealEnvelope(this.self, this.epoch, body, (b) => signer.sign(b))];
    const half = this.halfSentAt.get(client) === this.epoch ? [] : [this.answer(client, signer)];
    const macd = sealEnvelopeWithMacs(this.self, this.epoch, body, [client], (to, digest) =>
      this.sessions.macOfDigest(to, ts, digest),
    );
    return [...half, macd ?? sealEnvelope(this.self, this.epoch, body, (b) => signer.sign(b))];
  }
}
