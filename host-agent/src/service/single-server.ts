/**
 * The same key-value store, unreplicated: the baseline the replicated
 * service is measured against. Same client path (requests MAC'd under a
 * client session, replies MAC'd or signed, over the same TCP framing), no
 * agreement, no replicas.
 */
import type { KeyCertificate } from "@smw/wiring";
import { KvStore } from "../kv/kv-store.js";
import { PeerConnections } from "../net/peer-connections.js";
import { ClientSessions } from "../replica/client-sessions.js";
import { ClientTable } from "../replica/client-table.js";
import type { KeyRing, Signer } from "../replica/key-ring.js";
import {
  clientSessionSigningBytes,
  parseClientMessage,
  type ReplicaBody,
  readDigest,
  requestDigest,
  requestFreshnessBytes,
  sealEnvelope,
} from "../replica/messages.js";
import type { KeyAgreement } from "../replica/sessions.js";

export class SingleServer {
  private readonly store = new KvStore();
  private readonly clients = new ClientTable();
  private readonly net: PeerConnections;
  private readonly sessions: ClientSessions | undefined;
  private readonly startedMs = performance.now();
  rejected = 0;
  private readsAnswered = 0;
  /** Requests executed: the sequence number its READ_REPLYs name. */
  private executed = 0;

  constructor(
    private readonly id: string,
    listen: { host: string; port: number },
    private readonly ring: KeyRing,
    private readonly signer: Signer,
    private readonly certificate: KeyCertificate,
  ) {
    this.net = new PeerConnections({
      self: id,
      listen,
      peers: {},
      verifyClient: (client, signed, proof) => this.ring.checkClient(client, signed, proof),
    });
    this.sessions = ring.agreesKeys
      ? new ClientSessions(id, certificate.period, () => ring.newKeyAgreement() as KeyAgreement)
      : undefined;
    this.net.on("message", (from, payload) => {
      if (from.role === "client") this.onClient(from.id, payload);
    });
  }

  start(): Promise<void> {
    return this.net.start();
  }

  /** What it did since it started, in one line, as a replica's summary says it. */
  summary(): string {
    const net = this.net.counters();
    const seconds = (performance.now() - this.startedMs) / 1000;
    return (
      `stopping after ${seconds.toFixed(1)} s: executed ${this.executed} requests, ` +
      `${this.readsAnswered} reads answered, rejected ${this.rejected} messages, frames in ${net.framesIn} out ${net.framesOut}, ` +
      `bytes in ${net.bytesIn} out ${net.bytesOut}, dropped ${net.droppedFrames}`
    );
  }

  close(): Promise<void> {
    return this.net.close();
  }

  private reply(client: string, body: ReplicaBody): void {
    const messages = this.sessions?.seal(client, body, this.signer) ?? [
      sealEnvelope(this.id, this.certificate.period, body, (b) => this.signer.sign(b)),
    ];
    for (const message of messages) this.net.sendToClient(client, message);
  }

  private onClient(client: string, payload: Buffer): void {
    const message = parseClientMessage(payload);
    if (message === undefined) {
      this.rejected++;
      return;
    }
    if (message.type === "KEYS_QUERY") {
      this.net.sendToClient(
        client,
        sealEnvelope(
          this.id,
          this.certificate.period,
          { type: "KEYS", certificates: [this.certificate] },
          (b) => this.signer.sign(b),
        ),
      );
      return;
    }
    if (message.type === "SESSION") {
      const { sig, type: _type, ...signed } = message;
      if (
        this.sessions === undefined ||
        signed.client !== client ||
        !this.ring.checkClient(client, clientSessionSigningBytes(signed), sig)
      ) {
        this.rejected++;
        return;
      }
      if (this.sessions.learn(client, signed.ts, signed.dh, performance.now()))
        this.net.sendToClient(client, this.sessions.answer(client, this.signer));
      return;
    }
    if (message.type === "READ") {
      // As a replica answers it (`replica/read-only.ts`): unsigned, on the proven connection.
      if (message.client !== client) {
        this.rejected++;
        return;
      }
      this.readsAnswered++;
      this.reply(client, {
        type: "READ_REPLY",
        client,
        ts: message.ts,
        // One server: its answer is the read, and no interval needs to meet another's.
        since: this.executed,
        seq: this.executed,
        op: readDigest(payload),
        result: this.store.read(message.op),
      });
      return;
    }
    const signed = message.request;
    // Taken on the client's MAC under its session, as a replica takes it (`isFresh`); without one
    // that checks, the client is sent this server's half and sends the request again with one.
    if (
      signed.client !== client ||
      this.sessions === undefined ||
      message.mac === undefined ||
      this.sessions.check(client, requestFreshnessBytes(signed), message.mac) !== "ok"
    ) {
      this.rejected++;
      const half = this.sessions?.prompt(client, this.signer, performance.now());
      if (half !== undefined) this.net.sendToClient(client, half);
      return;
    }
    const last = this.clients.last(client);
    if (last !== undefined && signed.ts <= last.ts) {
      if (signed.ts === last.ts && last.op !== undefined)
        this.reply(client, {
          type: "REPLY",
          view: 0,
          client,
          ts: last.ts,
          seq: last.seq,
          op: last.op,
          result: last.result,
        });
      return;
    }
    const result = this.store.apply(signed.op);
    this.executed++;
    const op = requestDigest(signed);
    this.clients.record(client, signed.ts, op, result, this.executed);
    this.reply(client, {
      type: "REPLY",
      view: 0,
      client,
      ts: signed.ts,
      seq: this.executed,
      op,
      result,
    });
  }
}
