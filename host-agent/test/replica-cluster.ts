/**
 * Several real replica cores and a network the test drives by hand: it decides which message
 * reaches whom and when, and can speak for a Byzantine replica with that replica's own key.
 */
import {
  certificateSigningBytes,
  type KeyCertificate,
  type KeyLease,
  leaseSigningBytes,
} from "@smw/wiring";
import { KeyRing, type Signer } from "../src/replica/key-ring.js";
import {
  batchOrigin,
  type ClientRequest,
  encodeClientMessage,
  type ReplicaBody,
  sealEnvelope,
} from "../src/replica/messages.js";
import { quorumsFor } from "../src/replica/quorums.js";
import {
  type ReplicaAction,
  type ReplicaConfig,
  ReplicaCore,
  type StartingState,
} from "../src/replica/replica-core.js";
import { SimCrypto } from "../src/sim/sim-crypto.js";
import { clientCopier } from "./client-copy.js";

interface InFlight {
  from: string;
  to: string;
  message: Buffer;
}

export function replicaCluster(
  n: number,
  kPrime: number,
  k: number,
  overrides: Partial<ReplicaConfig> = {},
) {
  const crypto = new SimCrypto(23);
  const ids = Array.from({ length: n }, (_, i) => `r${i + 1}`);
  const boards = new Map(ids.map((id) => [id, crypto.newSigner(`board-${id}`)]));
  const signers = new Map(ids.map((id) => [id, crypto.newSigner(id)]));
  const epochs = new Map(ids.map((id) => [id, 0]));
  const client = crypto.newSigner("c1");
  const copyFor = clientCopier("c1", client, () => crypto.newKeyAgreement());
  // More clients on the list, for tests where some clients misbehave and others do not.
  const other = crypto.newSigner("c2");
  const third = crypto.newSigner("c3");
  const copiers = new Map([
    ["c1", copyFor],
    ["c2", clientCopier("c2", other, () => crypto.newKeyAgreement())],
    ["c3", clientCopier("c3", third, () => crypto.newKeyAgreement())],
  ]);
  const cert = (id: string, period: number, signer: Signer): KeyCertificate => {
    const body = { host: id, board: `b-${id}`, period, publicKey: signer.publicKey, issuedAt: "t" };
    return { ...body, signature: (boards.get(id) as Signer).sign(certificateSigningBytes(body)) };
  };
  const certificates = new Map(ids.map((id) => [id, cert(id, 0, signers.get(id) as Signer)]));
  const cores = new Map<string, ReplicaCore>();
  let nowMs = 0;
  /** Messages sent and not yet delivered (or dropped). */
  let inFlight: InFlight[] = [];
  /** Everything each replica sent, for the test to inspect. */
  const sent = new Map<string, ReplicaAction[]>();

  const collect = (from: string, actions: ReplicaAction[]) => {
    sent.set(from, [...(sent.get(from) ?? []), ...actions]);
    for (const a of actions) {
      if (a.type === "send") inFlight.push({ from, to: a.to, message: a.message });
      else if (a.type === "broadcast")
        for (const to of ids) if (to !== from) inFlight.push({ from, to, message: a.message });
    }
  };

  /**
   * `withoutKeysOf`: peers whose certificates the new core does not hold at its start (a real
   * replica starts with none but its own, and learns the others from its peers).
   */
  const boot = (id: string, start: StartingState, withoutKeysOf: readonly string[] = []) => {
    const ring = new KeyRing(
      crypto,
      new Map([...boards].map(([b, s]) => [b, s.publicKey])),
      new Map([
        ["c1", client.publicKey],
        ["c2", other.publicKey],
        ["c3", third.publicKey],
      ]),
    );
    for (const c of certificates.values()) if (!withoutKeysOf.includes(c.host)) ring.install(c);
    const core = new ReplicaCore(
      {
        ids,
        self: id,
        quorums: quorumsFor(n, kPrime, k),
        checkpointInterval: 4,
        batchMax: 8,
        maxInFlight: 4,
        viewChangeTimeoutMs: 500,
        statusIntervalMs: 100,
        maxReplyBytes: 65536,
        ...overrides,
      },
      ring,
      signers.get(id) as Signer,
      certificates.get(id),
      start,
    );
    cores.set(id, core);
    collect(id, core.start(nowMs));
    return core;
  };

  return {
    ids,
    cores,
    sent,
    client,
    /** The scheme the replicas sign with, and the boards' public keys (for a client's `KeyRing`). */
    crypto,
    boardKeys: new Map([...boards].map(([id, s]) => [id, s.publicKey])),
    get nowMs() {
      return nowMs;
    },
    boot,
    /** `id`'s board's lease on its current key until `notAfterMs` (`KeyLease`). */
    lease(id: string, notAfterMs: number): KeyLease {
      const body = { host: id, board: `b-${id}`, epoch: epochs.get(id) ?? 0, notAfterMs };
      return { ...body, signature: (boards.get(id) as Signer).sign(leaseSigningBytes(body)) };
    },
    /** The board rejuvenates `id`: a new key for a new period, a new core that remembers nothing. */
    rejuvenate(id: string, start: StartingState, withoutKeysOf: readonly string[] = []) {
      const epoch = (epochs.get(id) ?? 0) + 1;
      epochs.set(id, epoch);
      const signer = crypto.newSigner(`${id}-e${epoch}`);
      signers.set(id, signer);
      certificates.set(id, cert(id, epoch, signer));
      inFlight = inFlight.filter((m) => m.from !== id && m.to !== id);
      return boot(id, start, withoutKeysOf);
    },
    /** The board is about to shut `id` down (a primary hands off); what it sends is in flight. */
    shutDown(id: string) {
      const core = cores.get(id);
      if (core) collect(id, core.prepareShutdown(nowMs));
    },
    /** The origin `id` gives a batch it proposes now (its id at its current key epoch). */
    originOf(id: string): string {
      return batchOrigin(id, epochs.get(id) ?? 0);
    },
    /** A message in `id`'s name, signed with its current key: what a Byzantine replica may send. */
    speakAs(id: string, body: ReplicaBody): Buffer {
      const signer = signers.get(id) as Signer;
      return sealEnvelope(id, epochs.get(id) ?? 0, body, (b) => signer.sign(b));
    },
    /** As `speakAs`, with the body's text as given (a Byzantine replica need not write it canonically). */
    speakAsText(id: string, bodyText: string): Buffer {
      const signer = signers.get(id) as Signer;
      const epoch = epochs.get(id) ?? 0;
      const sig = signer.sign(Buffer.from(`smwr1 ${id} ${epoch}\n${bodyText}`, "utf8"));
      return Buffer.from(`smwr1 ${id} ${epoch} ${sig}\n${bodyText}`, "utf8");
    },
    /** Hands `message` to `to` at once; what it sends is in flight afterwards. */
    hand(to: string, message: Buffer) {
      const core = cores.get(to);
      if (core) collect(to, core.onMessage(message, nowMs));
    },
    /** Delivers the messages in flight that `pass` lets through, in order; drops the rest. */
    deliver(pass: (m: InFlight) => boolean) {
      for (let round = 0; round < 1000 && inFlight.length > 0; round++) {
        const batch = inFlight;
        inFlight = [];
        for (const m of batch) if (pass(m)) this.hand(m.to, m.message);
      }
    },
    /** Time passes in steps of `stepMs`: every core ticks, and `pass` decides what arrives. */
    run(durationMs: number, pass: (m: InFlight) => boolean, stepMs = 10) {
      const until = nowMs + durationMs;
      while (nowMs < until) {
        nowMs += stepMs;
        for (const [id, core] of cores) collect(id, core.tick(nowMs));
        this.deliver(pass);
      }
    },
    /**
     * The client's copy of `request` for `to`, with its MAC under their session (offered first,
     * its answer taken): what `fromClient` delivers, and what the network could replay later.
     */
    clientCopy(to: string, request: ClientRequest): Buffer {
      const core = cores.get(to);
      const copier = copiers.get(request.client);
      if (core === undefined || copier === undefined)
        return encodeClientMessage({ type: "REQUEST", request });
      const { message, answers } = copier(core, to, request, nowMs);
      collect(to, answers);
      return message;
    },
    /** The request's client sends it to `to` on its own connection (a correct one sends every request to every replica). */
    fromClient(to: string, request: ClientRequest) {
      const core = cores.get(to);
      if (core)
        collect(to, core.onClientMessage(request.client, this.clientCopy(to, request), nowMs));
    },
    request(ts: number, op: ClientRequest["op"], client = "c1"): ClientRequest {
      return { client, ts, op };
    },
  };
}

/** The bodies of the replica messages among `actions` of the given type. */
export function bodiesOf(actions: readonly ReplicaAction[], type: string): ReplicaBody[] {
  const out: ReplicaBody[] = [];
  for (const a of actions) {
    if (a.type !== "send" && a.type !== "broadcast") continue;
    const body = JSON.parse(a.message.toString("utf8").split("\n")[1] as string) as ReplicaBody;
    if (body.type === type) out.push(body);
  }
  return out;
}
