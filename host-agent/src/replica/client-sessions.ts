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

export class ClientSessions {
  private readonly sessions: Sessions;
  /** Per client: the own epoch whose half was sent to it. */
  private readonly halfSentAt = new Map<string, number>();
  private readonly clientTs = new Map<string, number>();

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
   * A client's half from its verified SESSION; false if an older one (a replay) or too many
   * clients. The caller answers a taken one with `answer`.
   */
  learn(client: string, ts: number, dh: string): boolean {
    const known = this.clientTs.get(client);
    if (known !== undefined && ts < known) return false;
    if (known === undefined && this.clientTs.size >= MAX_CLIENTS) return false;
    this.clientTs.set(client, ts);
    this.sessions.learn(client, ts, dh);
    this.halfSentAt.delete(client);
    return true;
  }

  /** This server's half for `client`, signed: send it on the client's connection. */
  answer(client: string, signer: Signer): Buffer {
    this.halfSentAt.set(client, this.epoch);
    const body: ReplicaBody = { type: "SESSION", dh: this.sessions.publicKey, ask: false };
    return sealEnvelope(this.self, this.epoch, body, (b) => signer.sign(b));
  }

  /**
   * The envelopes that carry `body` to `client`: this server's half first if the client has not
   * had its current one, then the reply with a MAC, or signed if there is no session.
   */
  seal(client: string, body: ReplicaBody, signer: Signer): Buffer[] {
    const ts = this.clientTs.get(client);
    if (ts === undefined || !this.sessions.has(client, ts))
      return [sealEnvelope(this.self, this.epoch, body, (b) => signer.sign(b))];
    const half = this.halfSentAt.get(client) === this.epoch ? [] : [this.answer(client, signer)];
    const macd = sealEnvelopeWithMacs(this.self, this.epoch, body, [client], (to, bytes) =>
      this.sessions.mac(to, ts, bytes),
    );
    return [...half, macd ?? sealEnvelope(this.self, this.epoch, body, (b) => signer.sign(b))];
  }
}
