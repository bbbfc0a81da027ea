/** One real replica core among four (k' = 1), with messages from its peers sealed by hand. */
import { certificateSigningBytes, leaseSigningBytes } from "@smw/wiring";
import { KeyRing, type Signer } from "../src/replica/key-ring.js";
import { type ClientRequest, type ReplicaBody, sealEnvelope } from "../src/replica/messages.js";
import { quorumsFor } from "../src/replica/quorums.js";
import {
  type ReplicaConfig,
  ReplicaCore,
  type StartingState,
} from "../src/replica/replica-core.js";
import { SimCrypto } from "../src/sim/sim-crypto.js";
import { clientCopier } from "./client-copy.js";

export function fourReplicas(
  self = "r2",
  overrides: Partial<ReplicaConfig> = {},
  start: Partial<StartingState> = {},
) {
  const crypto = new SimCrypto(11);
  const ids = ["r1", "r2", "r3", "r4"];
  const boards = new Map(ids.map((id) => [id, crypto.newSigner(`board-${id}`)]));
  const signers = new Map(ids.map((id) => [id, crypto.newSigner(id)]));
  const client = crypto.newSigner("c1");
  // More clients on the list (c2 ... c16), for tests of several clients' requests at once.
  const others = new Map<string, Signer>(
    Array.from({ length: 15 }, (_, i) => [`c${i + 2}`, crypto.newSigner(`c${i + 2}`)]),
  );
  const cert = (id: string, period: number, signer = signers.get(id) as Signer) => {
    const body = { host: id, board: `b-${id}`, period, publicKey: signer.publicKey, issuedAt: "t" };
    return { ...body, signature: (boards.get(id) as Signer).sign(certificateSigningBytes(body)) };
  };
  const ring = new KeyRing(
    crypto,
    new Map([...boards].map(([id, s]) => [id, s.publicKey])),
    new Map([
      ["c1", client.publicKey],
      ...[...others].map(([id, s]) => [id, s.publicKey] as [string, string]),
    ]),
  );
  for (const id of ids) ring.install(cert(id, 0));
  const core = new ReplicaCore(
    {
      ids,
      self,
      quorums: quorumsFor(4, 1, 0),
      checkpointInterval: 4,
      batchMax: 8,
      maxInFlight: 4,
      viewChangeTimeoutMs: 500,
      statusIntervalMs: 100,
      maxReplyBytes: 65536,
      ...overrides,
    },
    ring,
    signers.get(self) as Signer,
    cert(self, 0),
    { recovering: false, ...start },
  );
  const from = (id: string, body: ReplicaBody) =>
    sealEnvelope(id, 0, body, (b) => (signers.get(id) as Signer).sign(b));
  /** A request of a client, c1 unless named (requests carry no signature: a copy carries its MAC, `clientCopy`). */
  const request = (
    ts: number,
    op: ClientRequest["op"] = { op: "put", key: "x", value: `${ts}` },
    clientId = "c1",
  ): ClientRequest => ({ client: clientId, ts, op });
  const copiers = new Map<string, ReturnType<typeof clientCopier>>([
    ["c1", clientCopier("c1", client, () => crypto.newKeyAgreement())],
  ]);
  /** The client's copy of `request` for this core, MAC'd under their session (offered first). */
  const clientCopy = (req: ClientRequest, nowMs = 0) => {
    let copyFor = copiers.get(req.client);
    const signer = others.get(req.client);
    if (copyFor === undefined && signer !== undefined) {
      copyFor = clientCopier(req.client, signer, () => crypto.newKeyAgreement());
      copiers.set(req.client, copyFor);
    }
    if (copyFor === undefined) throw new Error(`no client ${req.client} in this harness`);
    return copyFor(core, self, req, nowMs).message;
  };
  /** A lease `board`'s board (by default `id`'s own) signed on `id`'s key `epoch`. */
  const lease = (id: string, epoch: number, notAfterMs: number, board = id) => {
    const body = { host: id, board: `b-${id}`, epoch, notAfterMs };
    return { ...body, signature: (boards.get(board) as Signer).sign(leaseSigningBytes(body)) };
  };
  return { core, from, ids, request, crypto, signers, cert, client, clientCopy, lease };
}

/** A VIEW_CHANGE body: nothing prepared unless `parts` says otherwise. */
export function viewChangeBody(
  newView: number,
  stable: { seq: number; digest: string },
  parts: Partial<Extract<ReplicaBody, { type: "VIEW_CHANGE" }>> = {},
): ReplicaBody {
  return {
    type: "VIEW_CHANGE",
    newView,
    stable: { ...stable },
    checkpoints: [],
    prepared: [],
    prePrepared: [],
    batches: [],
    keyEpochs: [0, 0, 0, 0],
    ...parts,
  };
}

/** A NEW_VIEW body deciding from the given VIEW_CHANGE envelopes. */
export function newViewBody(
  view: number,
  viewChanges: readonly Buffer[],
  checkpoint: { seq: number; digest: string },
  proposals: Array<{ seq: number; digest: string }> = [],
): ReplicaBody {
  return {
    type: "NEW_VIEW",
    view,
    viewChanges: viewChanges.map((m) => m.toString("utf8")),
    checkpoint,
    proposals,
  };
}

/** A STATUS body of a replica at the start, with `parts` changed. */
export function statusBody(
  parts: Partial<Extract<ReplicaBody, { type: "STATUS" }>> = {},
): ReplicaBody {
  return {
    type: "STATUS",
    view: 0,
    lastExecuted: 0,
    stableSeq: 0,
    recovering: false,
    maxPrepared: 0,
    wantCheckpoint: 0,
    amnesic: false,
    ...parts,
  };
}
