/**
 * The replica protocol's messages. Every message between replicas travels in
 * an envelope signed (or MAC'd, per receiver) under the sender's key of its
 * current epoch (the key its board certified at its last rejuvenation); each
 * copy of a client request carries the client's MAC for the replica it goes
 * to. Everything arriving is untrusted: `parse*` bound and check every field
 * and return undefined rather than throw.
 */
import { type KeyCertificate, type KeyLease, parseKeyLease } from "@smw/wiring";
import {
  encodeKvOperation,
  isReadOnly,
  type KvOperation,
  type KvResult,
  MAX_PARTITION_BYTES,
  parseKvOperation,
  parseKvResult,
} from "../kv/kv-operation.js";
import { PIECE_BYTES } from "../kv/partition-tree.js";
import { canonicalJson, sha256Hex } from "./canonical.js";
import { macDigest } from "./sessions.js";

export const MAX_MESSAGE_BYTES = 8 * 1024 * 1024;
const MAX_LIST = 4096;
/** A VIEW_CHANGE names at most this many suspected clients (a client list is far shorter). */
export const MAX_SUSPECTS = 1024;
/** The longest EXECUTED or PARTS reply on hosts, in bytes of payload (`maxReplyBytes`). */
export const HOST_MAX_REPLY_BYTES = 4 * 1024 * 1024;

/** A FETCH_BATCH asks for at most this many bodies, and a BATCH carries at most as many. */
export const MAX_BATCHES_FETCHED = 256;
/** A VIEW_CHANGE names at most this many views its sender passed over (the newest). */
export const MAX_PASSED_OVER = 16;

/**
 * A client's request. It carries no signature: each copy a client sends a replica carries the
 * client's MAC under their session (`requestFreshnessBytes`), and that is what a replica takes it
 * on; a replica that never had a copy takes it on the word of others (SAFETY.md, "Where a request
 * comes from").
 */
export interface ClientRequest {
  client: string;
  /** Per-client increasing number: a request is executed at most once. */
  ts: number;
  op: KvOperation;
}

/**
 * One partition's canonical encoding in base64 (`partition-tree.ts`), or one piece of it (of
 * PIECE_BYTES, the last what remains): a piece names where it starts (`offset`) and how long the
 * whole encoding is (`totalBytes`); the first also carries every piece's digest (`pieces`, hex),
 * which the partition's leaf digest is made from.
 */
export interface PartitionData {
  index: number;
  data: string;
  offset?: number;
  totalBytes?: number;
  pieces?: string[];
}

export interface SeqDigest {
  seq: number;
  digest: string;
}

export interface ViewSeqDigest extends SeqDigest {
  view: number;
}

/**
 * A batch as proposed: its requests and its **origin**, `replica@epoch` of the primary that first
 * proposed it (empty for the null batch). The origin is part of the batch's digest, so a batch
 * proposed after a cold start never has the digest of one executed before it, even with the same
 * requests at the same sequence number: replies name the batch (SAFETY.md, "A cold start").
 */
export interface BatchBody {
  digest: string;
  origin: string;
  requests: ClientRequest[];
}

export interface ClientTableEntry {
  client: string;
  ts: number;
  result: KvResult;
  /** The sequence number of the batch that executed it: replies name it (see REPLY). */
  seq: number;
  /**
   * That batch's digest, which replies name too. Absent only in an entry read from a checkpoint
   * written before batches had origins (its digest is unchanged that way).
   */
  batch?: string;
  /**
   * The executed request's digest (`requestDigest`), which replies name too: a client whose
   * numbers were used before (its clock set back, a second process under its id) never takes
   * another request's result for its own. Absent only in an entry read from a checkpoint written
   * before replies named it; such an entry's result is not sent again.
   */
  op?: string;
}

export interface ExecutedEntry extends ViewSeqDigest {
  origin: string;
  requests: ClientRequest[];
}

export type ReplicaBody =
  | {
      type: "PRE_PREPARE";
      view: number;
      seq: number;
      digest: string;
      /** `replica@epoch` of the proposer: the primary itself, at its current key epoch. */
      origin: string;
      requests: ClientRequest[];
    }
  | { type: "PREPARE"; view: number; seq: number; digest: string }
  | { type: "COMMIT"; view: number; seq: number; digest: string }
  | { type: "CHECKPOINT"; seq: number; digest: string }
  | {
      type: "VIEW_CHANGE";
      newView: number;
      stable: SeqDigest;
      /** Checkpoints taken above the stable one. */
      checkpoints: SeqDigest[];
      /** Per sequence number above the stable checkpoint: the latest view it prepared in. */
      prepared: ViewSeqDigest[];
      /** Per sequence number and digest: the latest view it was pre-prepared in. */
      prePrepared: ViewSeqDigest[];
      /**
       * The requests behind prepared digests, in sequence order while they fit the sender's
       * budget (`viewChangeBodyBytes`): a new view takes the others from its replicas' own
       * stores or fetches them (FETCH_BATCH), since every body of a prepared batch at once made
       * VIEW_CHANGEs, and the NEW_VIEWs that carry them, larger than a frame.
       */
      batches: BatchBody[];
      /**
       * The key epoch the sender holds for every replica, in id order: proof that this message
       * was written after the sender learned a replica's new key, so after that replica lost its
       * memory (a rejuvenated replica votes again only in a view formed from such messages).
       */
      keyEpochs: number[];
      /**
       * Sent by a replica its board released in a cold start, before it entered any view: its
       * checkpoints are what it found on disk, which a host compromised before the fail-safe may
       * have written, so a view formed with it takes a checkpoint only k' + k + 1 replicas hold.
       */
      coldStart?: true;
      /**
       * Clients the sender has fresh evidence against of sending requests to too few replicas:
       * those whose request it waited for in a slot of the view it leaves for half a view-change
       * timeout (not those it suspects already). A client named by k' + 1 of a NEW_VIEW's
       * VIEW_CHANGEs is suspected from that view on (SAFETY.md, "A client that sends to too few
       * replicas").
       */
      suspects?: string[];
      /**
       * The views the sender asked for since it last entered one (and since it learned a key) and
       * left without entering: no NEW_VIEW within its timeout although a quorum had asked, one
       * that did not follow, or k' + 1 peers asking higher took it along. A view
       * named by k' + 1 of a NEW_VIEW's VIEW_CHANGEs holding a rejuvenated replica's key counts
       * its primary at fault for that replica (`refreshViewFor`): a silent one forms no view that
       * could show it.
       */
      passedOver?: number[];
    }
  | {
      type: "NEW_VIEW";
      view: number;
      /** The VIEW_CHANGE envelopes it decided from, as received (wire text), so anyone can check them. */
      viewChanges: string[];
      checkpoint: SeqDigest;
      /** The new primary's choice for every sequence number above the checkpoint. */
      proposals: SeqDigest[];
    }
  | { type: "HANDOFF"; view: number }
  /**
   * The sender holds this request from its client (sent to it since it started), and it has
   * not been proposed: its client is a suspect, or it has waited half a view-change timeout.
   * Once 2k' replicas other than the primary hold it, the primary proposes it, with or without
   * a copy of its own, and backups time it (SAFETY.md, "A client that sends to too few
   * replicas"). Signed, not MAC'd: a backup relays the HOLDs it counted to the primary.
   * It names the request by its digest, which binds every byte of it; the request itself goes
   * to the primary once, in a HOLDERS. (Carrying the request, every backup's HOLD of a 1 MiB
   * write was a megabyte to every peer, again every half timeout: on a starved CPU, the largest
   * share of what the replicas sent.)
   */
  | { type: "HOLD"; client: string; ts: number; digest: string }
  /**
   * To the primary: the request and 2k' or more of its HOLDs by replicas other than it, each as
   * its sender's envelope names it and its signature over that HOLD (`holdSignedBytes`).
   * Self-contained: the primary proposes on them without having stored any. The request goes once:
   * with each HOLD whole, two HOLDs of a 1 MiB write made a HOLDERS larger than a frame.
   */
  | {
      type: "HOLDERS";
      request: ClientRequest;
      holds: Array<{ from: string; epoch: number; sig: string }>;
    }
  | {
      type: "STATUS";
      view: number;
      lastExecuted: number;
      stableSeq: number;
      recovering: boolean;
      /** The highest sequence number this replica has seen pre-prepared or prepared. */
      maxPrepared: number;
      /** A recovering replica waits for a stable checkpoint at this sequence number (0: none). */
      wantCheckpoint: number;
      /** Rejuvenated and not yet voting: it waits for a view formed after its new key. */
      amnesic: boolean;
      /** Not yet recovered: peers answer with their own STATUS at once (its recovery waits on them). */
      catchingUp?: true;
    }
  | { type: "EXECUTED"; entries: ExecutedEntry[] }
  /** `have`: the asker's own meta digests, so that the answer can carry what differs. */
  | { type: "FETCH_META"; seq: number; have?: string[] }
  | {
      type: "META";
      seq: number;
      kvRoot: string;
      clients: ClientTableEntry[];
      metas: string[];
      /**
       * With `have` in the request: the leaf digests of metas that differ from it (some or all),
       * and, when small, their partitions, so that a small difference takes one round trip.
       * Checked against `metas` as LEAVES and PARTS are.
       */
      leaves?: Array<{ meta: number; digests: string[] }>;
      parts?: PartitionData[];
      /**
       * Present when `clients` is only the table's first entries, within a reply's bytes: how
       * many it has. The asker fetches the rest from the same sender (FETCH_CLIENTS) before it
       * checks the whole against the checkpoint digest: a client's last result may be a value of
       * 1 MiB, and a dozen of them made a META larger than a frame.
       */
      clientsTotal?: number;
    }
  /** The checkpoint's client table from entry `from` on (`state-transfer.ts`). */
  | { type: "FETCH_CLIENTS"; seq: number; from: number }
  | { type: "CLIENTS"; seq: number; from: number; clients: ClientTableEntry[] }
  | { type: "FETCH_LEAVES"; seq: number; metas: number[] }
  | { type: "LEAVES"; seq: number; leaves: Array<{ meta: number; digests: string[] }> }
  /**
   * With `offset`: the bytes of the one partition in `parts` from that offset on, one piece
   * (`state-transfer.ts`: a partition larger than a piece comes piece by piece).
   */
  /**
   * `maxBytes`: the answer's partitions (or pieces) in at most this many bytes, if fewer than the
   * server's reply allows (at least one is always sent): the asker's first answers, before it
   * knows its link's rate (`state-transfer.ts`).
   */
  | { type: "FETCH_PARTS"; seq: number; parts: number[]; offset?: number; maxBytes?: number }
  | { type: "PARTS"; seq: number; parts: PartitionData[] }
  | { type: "NO_CHECKPOINT"; seq: number }
  /**
   * The bodies of these batches, which a NEW_VIEW fixed at these numbers (`batch-fetch.ts`): one
   * request for all a replica lacks from one holder, as its allowance of answers counts requests.
   */
  | { type: "FETCH_BATCH"; wants: SeqDigest[] }
  /**
   * The answer: those held, within a reply's bytes. Each is checked against the digest asked for,
   * so anyone holding a body may give it.
   */
  | { type: "BATCH"; batches: Array<{ seq: number; batch: BatchBody }> }
  | { type: "NEW_KEY"; certificate: KeyCertificate }
  | { type: "KEY_QUERY" }
  /**
   * This key epoch's key agreement half (signed: it binds the half to the certified key); `ask`:
   * the sender has none of the receiver's for its current epoch and wants it.
   */
  | { type: "SESSION"; dh: string; ask: boolean }
  /**
   * `seq` and `batch`: the sequence number and digest of the batch that executed the request. A
   * client matches replies on both, so that replies from before a cold start (an execution it
   * lost) never join replies from after it, even at the same number: the batch's origin names
   * its proposer's key epoch, which every cold start renews (SAFETY.md, "A cold start").
   * `op`: the executed request's digest (`requestDigest`); a client counts a reply only for the
   * request it sent under that number.
   */
  | {
      type: "REPLY";
      view: number;
      client: string;
      ts: number;
      seq: number;
      batch?: string;
      op: string;
      result: KvResult;
    }
  /**
   * The answer to a READ, from the replica's state after executing `seq`; the result is the
   * same in every state from `since` to `seq` (nothing it reads was written in between: see
   * `read-since.ts`). `op`, the read's digest (`readDigest`), binds it to the read asked (a READ
   * is not signed: see `ClientRead`).
   */
  | {
      type: "READ_REPLY";
      client: string;
      ts: number;
      since: number;
      seq: number;
      op: string;
      result: KvResult;
    }
  | { type: "KEYS"; certificates: KeyCertificate[] }
  /**
   * To a client: the replica's board vouches for its current key until `lease.notAfterMs`
   * (`KeyLease`); a client counts the replica's replies only under a lease it holds.
   */
  | { type: "LEASE"; lease: KeyLease };

export type ReplicaBodyType = ReplicaBody["type"];

export interface ReplicaEnvelope {
  from: string;
  /** The sender's key epoch: the board period its key certificate names. */
  epoch: number;
  body: ReplicaBody;
  /** Empty when the envelope carries MACs instead. */
  sig: string;
  /** Per receiver, a MAC under its session with the sender (`sessions.ts`), instead of a signature. */
  macs?: ReadonlyMap<string, string>;
  /** Per replica receiver: the key epoch of its that its MAC was made under (`macEntry`). */
  macEpochs?: ReadonlyMap<string, number>;
  /** The bytes the signature (or each MAC) covers: the header and the body text exactly as sent. */
  signed: Buffer;
  /** The whole envelope as received, to forward or retransmit unchanged. */
  wire: Buffer;
}

/** What a client sends a replica. */
export type ClientMessage =
  | {
      type: "REQUEST";
      request: ClientRequest;
      /**
       * The client's MAC over `requestFreshnessBytes` under its session with the receiving
       * replica (`client-sessions.ts`): proof that the client sent this copy to that replica
       * since the replica's current session half was made, at its start (SAFETY.md, "Where a
       * request comes from"). Absent while the client has no session with it.
       */
      mac?: string;
    }
  | ClientRead
  | { type: "KEYS_QUERY" }
  /**
   * The client's session half for MAC'd replies (`client-sessions.ts`), signed with its key over
   * `clientSessionSigningBytes`; `ts`, a clock reading, makes a replayed older half lose.
   */
  | ClientSession;

/**
 * A read-only operation (get, scan) answered without ordering (`replica/read-only.ts`). It is not
 * signed: it changes nothing, it comes on a connection whose client proved its key, and each
 * answer names the read's digest, so a forged READ only costs the replica a read.
 */
export interface ClientRead {
  type: "READ";
  client: string;
  ts: number;
  op: KvOperation;
}

/**
 * What a READ_REPLY names to bind it to its read: the SHA-256 of the READ as its client encoded
 * it (client, number and operation; every replica asked is sent the same bytes). Hashed as
 * received, not re-encoded: the client hashes what it sends once, and a replica what it got.
 */
export function readDigest(readMessage: Buffer): string {
  return sha256Hex("smw-read-2\n", readMessage);
}

export interface ClientSession {
  type: "SESSION";
  client: string;
  ts: number;
  dh: string;
  sig: string;
}

export function clientSessionSigningBytes(s: Omit<ClientSession, "sig" | "type">): Buffer {
  return Buffer.from(canonicalJson(["smw-client-session-1", s.client, s.ts, s.dh]), "utf8");
}

/**
 * On the wire: `smwr1 <from> <epoch> <signature>\n<body JSON>`. The signature
 * covers `smwr1 <from> <epoch>\n<body JSON>`: the body text as sent, so a
 * receiver verifies what it got without serializing anything again.
 */
const ENVELOPE_VERSION = "smwr1";

function signedBytes(from: string, epoch: number, bodyText: string): Buffer {
  return Buffer.from(`${ENVELOPE_VERSION} ${from} ${epoch}\n${bodyText}`, "utf8");
}

/** The HOLD of `request`: who sent it, when, and its digest. */
export function holdOf(request: ClientRequest): Extract<ReplicaBody, { type: "HOLD" }> {
  return { type: "HOLD", client: request.client, ts: request.ts, digest: requestDigest(request) };
}

/**
 * What the signature of `from`'s HOLD at `epoch` covers: a HOLD is sealed with its canonical
 * body, so anyone holding the request can check a HOLD's signature without its text.
 */
export function holdSignedBytes(
  hold: Extract<ReplicaBody, { type: "HOLD" }>,
): (from: string, epoch: number) => Buffer {
  const bodyText = canonicalJson(hold);
  return (from, epoch) => signedBytes(from, epoch, bodyText);
}

/**
 * With MACs: `smwm1 <from> <epoch> <to>[@<to's epoch>]=<mac>,...\n<body JSON>`, each MAC over
 * `smwm1 <from> <epoch>\n<body JSON>` with the key of the sender's session with `to`. One
 * envelope for every receiver (an authenticator), so a message relayed to a third replica (a
 * primary's PRE_PREPARE) still checks there. A replica receiver's key epoch labels its MAC
 * (`macEntry`); a client's has none.
 */
const MAC_VERSION = "smwm1";

/** The message types that may travel with MACs: the normal case's, never shown to third parties. */
export const MAC_TYPES: ReadonlySet<ReplicaBody["type"]> = new Set([
  "PRE_PREPARE",
  "PREPARE",
  "COMMIT",
  "CHECKPOINT",
  "STATUS",
  // Point to point, and never passed on: each is taken on its sender's word alone (EXECUTED, k' + 1
  // matching), on the signatures it carries (HOLDERS), or against a digest (BATCH). Signed, the
  // ones that carry writes of 1 MiB cost a signature over a megabyte each, and its check at the
  // receiver: on a starved CPU, the largest share of the replicas' signing.
  "EXECUTED",
  "HOLDERS",
  "BATCH",
  // To a client, under its session with the replica (`client-sessions.ts`).
  "REPLY",
  "READ_REPLY",
]);

function macBytes(from: string, epoch: number, bodyText: string): Buffer {
  return Buffer.from(`${MAC_VERSION} ${from} ${epoch}\n${bodyText}`, "utf8");
}

/** Serializes and frames a message with a MAC for each receiver (`mac` undefined: none for it). */
export function sealEnvelopeWithMacs(
  from: string,
  epoch: number,
  body: ReplicaBody,
  receivers: readonly string[],
  mac: (to: string, digest: Buffer) => string | undefined,
  receiverEpoch?: (to: string) => number | undefined,
): Buffer | undefined {
  // More receivers than an envelope carries MACs for: signed instead (as `parseEnvelope` would
  // refuse it at every receiver).
  if (receivers.length > MAX_MACS) return undefined;
  // Not canonical: a MAC, like a signature, is checked over the bytes as received, and nothing
  // compares a MAC'd message's text; JSON.stringify is native, the canonical form is not.
  const bodyText = JSON.stringify(body);
  // Hashed once; each receiver's MAC is over the digest (`sessions.ts` `macDigest`).
  const digest = macDigest(macBytes(from, epoch, bodyText));
  const entries: string[] = [];
  let headerChars = 0;
  for (const to of receivers) {
    const m = mac(to, digest);
    if (m === undefined) return undefined;
    const entry = macEntry(to, m, receiverEpoch?.(to));
    headerChars += entry.length + 1;
    if (headerChars - 1 > MAX_AUTH_CHARS) return undefined;
    entries.push(entry);
  }
  return Buffer.from(`${MAC_VERSION} ${from} ${epoch} ${entries.join(",")}\n${bodyText}`, "utf8");
}

/**
 * One receiver's MAC, with the receiver's key epoch it was made under where the receiver is a
 * replica (`to@epoch=mac`): a replica restarted under a new key drops, unread, what was MAC'd for
 * its former self (queued while it was down, or sent before its peer knew). The label is not
 * covered by the MAC: changed, it can only make the receiver drop the message, which the network
 * can anyway.
 */
function macEntry(to: string, mac: string, toEpoch: number | undefined): string {
  return toEpoch === undefined ? `${to}=${mac}` : `${to}@${toEpoch}=${mac}`;
}

/** The same envelope with other MACs (the simulation's Byzantine replicas spoil some). */
export function withMacs(envelope: ReplicaEnvelope, macs: ReadonlyMap<string, string>): Buffer {
  const newline = envelope.wire.indexOf(10);
  const entries = [...macs]
    .map(([to, m]) => macEntry(to, m, envelope.macEpochs?.get(to)))
    .join(",");
  return Buffer.concat([
    Buffer.from(`${MAC_VERSION} ${envelope.from} ${envelope.epoch} ${entries}`, "latin1"),
    envelope.wire.subarray(newline),
  ]);
}

/** Serializes (deterministically), signs and frames a message. */
export function sealEnvelope(
  from: string,
  epoch: number,
  body: ReplicaBody,
  sign: (bytes: Buffer) => string,
): Buffer {
  const bodyText = canonicalJson(body);
  const sig = sign(signedBytes(from, epoch, bodyText));
  return Buffer.from(`${ENVELOPE_VERSION} ${from} ${epoch} ${sig}\n${bodyText}`, "utf8");
}

/**
 * At least the bytes a request takes in a message: its strings as JSON could write them at most
 * (six bytes per UTF-16 unit, a control character as \u00XX), and the fields around them. An
 * upper bound read from lengths alone, so that counting costs nothing for small requests.
 */
export function requestBytesAtMost(request: ClientRequest): number {
  const op = request.op;
  let units = request.client.length;
  if ("key" in op) units += op.key.length;
  if ("value" in op) units += op.value.length;
  if ("expected" in op && op.expected !== null) units += op.expected.length;
  if (op.op === "scan") units += op.from.length + op.to.length;
  return 6 * units + 256;
}

/**
 * A request's canonical bytes: what its digest, and so every MAC on it, covers. A header line
 * (client and number as a JSON array, which holds no raw newline), then the operation's own
 * bytes: one pass over a 1 MiB value, where quoting the operation's JSON inside another JSON
 * document took two more, at every replica, for every copy received.
 */
export function requestBytes(r: ClientRequest): Buffer {
  const header = Buffer.from(`smw-request-2\n${JSON.stringify([r.client, r.ts])}\n`, "utf8");
  return Buffer.concat([header, encodeKvOperation(r.op)]);
}

const digests = new WeakMap<ClientRequest, string>();

/**
 * A request's identity, cached per object (batches are hashed often). It binds every byte that
 * decides whether and how the request executes, so agreeing on a batch digest is agreeing on
 * exactly what every replica will execute.
 */
export function requestDigest(r: ClientRequest): string {
  let digest = digests.get(r);
  if (digest === undefined) {
    digest = sha256Hex(requestBytes(r));
    digests.set(r, digest);
  }
  return digest;
}

/** What a client's per-replica MAC on a request covers: the request's identity. */
export function requestFreshnessBytes(r: ClientRequest): Buffer {
  return Buffer.from(`smw-request-1\n${requestDigest(r)}`, "utf8");
}

/**
 * A batch's identity: its origin and the digests of its requests in order. An empty batch is the
 * null request, whoever proposed it: it executes nothing, so nothing names it.
 */
export function batchDigest(origin: string, requests: readonly ClientRequest[]): string {
  if (requests.length === 0) return sha256Hex("batch");
  return sha256Hex("batch", origin, ...requests.map(requestDigest));
}

/** The origin a primary gives the batches it proposes: its id and current key epoch. */
export function batchOrigin(replica: string, epoch: number): string {
  return `${replica}@${epoch}`;
}

export function encodeClientMessage(message: ClientMessage): Buffer {
  return Buffer.from(JSON.stringify(message), "utf8");
}

// ---- defensive parsing ----------------------------------------------------

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
/**
 * Views, sequence numbers, timestamps and indexes: whole numbers from 0 to 2^50, so that any
 * arithmetic on them (a view + 1, a seq + an interval) stays exact. 2^50 sequence numbers at a
 * hundred thousand a second last over three hundred years.
 */
export const MAX_PROTOCOL_COUNT = 2 ** 50;
const isCount = (v: unknown): v is number =>
  typeof v === "number" && Number.isSafeInteger(v) && v >= 0 && v <= MAX_PROTOCOL_COUNT;
/**
 * A client's request timestamp: clients start from the wall clock in microseconds (about 2^51
 * today) and count up by one per request, so the bound is the exact integers, less a margin.
 */
export const MAX_CLIENT_TIMESTAMP = Number.MAX_SAFE_INTEGER - 2 ** 32;
const isTimestamp = (v: unknown): v is number =>
  typeof v === "number" && Number.isSafeInteger(v) && v >= 0 && v <= MAX_CLIENT_TIMESTAMP;
const HEX64 = /^[0-9a-f]{64}$/;
const isDigest = (v: unknown): v is string => typeof v === "string" && HEX64.test(v);
const ID = /^[A-Za-z0-9_.-]{1,64}$/;
const isId = (v: unknown): v is string => typeof v === "string" && ID.test(v);
const B64 = /^[A-Za-z0-9+/=_-]*$/;
const isB64 = (v: unknown, maxChars: number): v is string =>
  typeof v === "string" && v.length <= maxChars && B64.test(v);

function list<T>(v: unknown, item: (x: unknown) => T | undefined, max = MAX_LIST): T[] | undefined {
  if (!Array.isArray(v) || v.length > max) return undefined;
  const out: T[] = [];
  for (const x of v) {
    const parsed = item(x);
    if (parsed === undefined) return undefined;
    out.push(parsed);
  }
  return out;
}

const seqDigest = (v: unknown): SeqDigest | undefined =>
  isObj(v) && isCount(v.seq) && isDigest(v.digest) ? { seq: v.seq, digest: v.digest } : undefined;

const viewSeqDigest = (v: unknown): ViewSeqDigest | undefined =>
  isObj(v) && isCount(v.view) && isCount(v.seq) && isDigest(v.digest)
    ? { view: v.view, seq: v.seq, digest: v.digest }
    : undefined;

export function parseClientRequest(v: unknown): ClientRequest | undefined {
  if (!isObj(v) || !isId(v.client) || !isTimestamp(v.ts)) return undefined;
  const op = parseKvOperation(v.op);
  if ("error" in op) return undefined;
  return { client: v.client, ts: v.ts, op };
}

/** Entries of a client table a META or CLIENTS may carry, and the most a table may have. */
const MAX_CLIENTS = 1 << 16;

const clientEntries = (v: unknown): ClientTableEntry[] | undefined =>
  list(
    v,
    (x) => {
      if (!isObj(x) || !isId(x.client) || !isTimestamp(x.ts) || !isCount(x.seq)) return undefined;
      if (x.batch !== undefined && !isDigest(x.batch)) return undefined;
      if (x.op !== undefined && !isDigest(x.op)) return undefined;
      const result = parseKvResult(x.result);
      if ("error" in result) return undefined;
      return {
        client: x.client,
        ts: x.ts,
        result,
        seq: x.seq,
        ...(x.batch !== undefined ? { batch: x.batch } : {}),
        ...(x.op !== undefined ? { op: x.op } : {}),
      };
    },
    MAX_CLIENTS,
  );

const ORIGIN = /^[A-Za-z0-9_.-]{1,64}@[0-9]{1,16}$/;
const isOrigin = (v: unknown): v is string => typeof v === "string" && (v === "" || ORIGIN.test(v));

const batchBody = (v: unknown): BatchBody | undefined => {
  if (!isObj(v) || !isDigest(v.digest) || !isOrigin(v.origin)) return undefined;
  const requests = list(v.requests, parseClientRequest);
  return requests && { digest: v.digest, origin: v.origin, requests };
};

function certificate(v: unknown): KeyCertificate | undefined {
  if (!isObj(v)) return undefined;
  if (!isId(v.host) || !isId(v.board) || !isCount(v.period) || typeof v.issuedAt !== "string")
    return undefined;
  if (v.issuedAt.length > 64 || !isB64(v.publicKey, 512) || !isB64(v.signature, 512))
    return undefined;
  return {
    host: v.host,
    board: v.board,
    period: v.period,
    publicKey: v.publicKey,
    issuedAt: v.issuedAt,
    signature: v.signature,
  };
}

function parseBody(v: unknown, depth: number): ReplicaBody | undefined {
  if (!isObj(v) || typeof v.type !== "string") return undefined;
  switch (v.type) {
    case "PRE_PREPARE": {
      if (!isCount(v.view) || !isCount(v.seq) || !isDigest(v.digest) || !isOrigin(v.origin))
        return undefined;
      const requests = list(v.requests, parseClientRequest);
      return (
        requests && {
          type: v.type,
          view: v.view,
          seq: v.seq,
          digest: v.digest,
          origin: v.origin,
          requests,
        }
      );
    }
    case "PREPARE":
    case "COMMIT":
      return isCount(v.view) && isCount(v.seq) && isDigest(v.digest)
        ? { type: v.type, view: v.view, seq: v.seq, digest: v.digest }
        : undefined;
    case "CHECKPOINT":
      return isCount(v.seq) && isDigest(v.digest)
        ? { type: v.type, seq: v.seq, digest: v.digest }
        : undefined;
    case "VIEW_CHANGE": {
      const stable = seqDigest(v.stable);
      const checkpoints = list(v.checkpoints, seqDigest, 64);
      const prepared = list(v.prepared, viewSeqDigest);
      const prePrepared = list(v.prePrepared, viewSeqDigest);
      const batches = list(v.batches, batchBody);
      const keyEpochs = list(v.keyEpochs, (e) => (isCount(e) ? e : undefined), 256);
      const suspects =
        v.suspects === undefined
          ? []
          : list(v.suspects, (c) => (isId(c) ? c : undefined), MAX_SUSPECTS);
      const passedOver =
        v.passedOver === undefined
          ? []
          : list(
              v.passedOver,
              (w) => (isCount(w) && w < (v.newView as number) ? w : undefined),
              MAX_PASSED_OVER,
            );
      if (
        !isCount(v.newView) ||
        !stable ||
        !checkpoints ||
        !prepared ||
        !prePrepared ||
        !batches ||
        !keyEpochs ||
        !suspects ||
        !passedOver ||
        (v.coldStart !== undefined && v.coldStart !== true)
      )
        return undefined;
      return {
        type: v.type,
        newView: v.newView,
        stable,
        checkpoints,
        prepared,
        prePrepared,
        batches,
        keyEpochs,
        ...(v.coldStart === true ? { coldStart: true as const } : {}),
        ...(v.suspects !== undefined ? { suspects } : {}),
        ...(v.passedOver !== undefined ? { passedOver } : {}),
      };
    }
    case "NEW_VIEW": {
      if (depth > 0 || !isCount(v.view)) return undefined; // no NEW_VIEW inside a NEW_VIEW
      const viewChanges = list(
        v.viewChanges,
        (x) => (typeof x === "string" && x.length <= MAX_MESSAGE_BYTES / 4 ? x : undefined),
        256,
      );
      const checkpoint = seqDigest(v.checkpoint);
      const proposals = list(v.proposals, seqDigest);
      if (!viewChanges || !checkpoint || !proposals) return undefined;
      return { type: v.type, view: v.view, viewChanges, checkpoint, proposals };
    }
    case "HANDOFF":
      return isCount(v.view) ? { type: v.type, view: v.view } : undefined;
    case "HOLD":
      return isId(v.client) && isTimestamp(v.ts) && isDigest(v.digest)
        ? { type: v.type, client: v.client, ts: v.ts, digest: v.digest }
        : undefined;
    case "HOLDERS": {
      const request = parseClientRequest(v.request);
      const holds = list(
        v.holds,
        (x) =>
          isObj(x) && isId(x.from) && isCount(x.epoch) && isB64(x.sig, 512)
            ? { from: x.from, epoch: x.epoch, sig: x.sig }
            : undefined,
        256,
      );
      return request && holds && { type: v.type, request, holds };
    }
    case "STATUS":
      return isCount(v.view) &&
        isCount(v.lastExecuted) &&
        isCount(v.stableSeq) &&
        typeof v.recovering === "boolean" &&
        isCount(v.maxPrepared) &&
        isCount(v.wantCheckpoint) &&
        typeof v.amnesic === "boolean"
        ? {
            type: v.type,
            view: v.view,
            lastExecuted: v.lastExecuted,
            stableSeq: v.stableSeq,
            recovering: v.recovering,
            maxPrepared: v.maxPrepared,
            wantCheckpoint: v.wantCheckpoint,
            amnesic: v.amnesic,
            ...(v.catchingUp === true ? { catchingUp: true as const } : {}),
          }
        : undefined;
    case "EXECUTED": {
      const entries = list(v.entries, (x) => {
        const head = viewSeqDigest(x);
        if (head === undefined || !isObj(x) || !isOrigin(x.origin)) return undefined;
        const requests = list(x.requests, parseClientRequest);
        return requests && { ...head, origin: x.origin, requests };
      });
      return entries && { type: v.type, entries };
    }
    case "FETCH_META": {
      if (!isCount(v.seq)) return undefined;
      if (v.have === undefined) return { type: v.type, seq: v.seq };
      const have = list(v.have, (x) => (isDigest(x) ? x : undefined), 1024);
      return have && { type: v.type, seq: v.seq, have };
    }
    case "NO_CHECKPOINT":
      return isCount(v.seq) ? { type: v.type, seq: v.seq } : undefined;
    case "FETCH_BATCH": {
      const wants = list(v.wants, seqDigest, MAX_BATCHES_FETCHED);
      return wants && { type: v.type, wants };
    }
    case "BATCH": {
      const batches = list(
        v.batches,
        (x) => {
          const batch = isObj(x) ? batchBody(x.batch) : undefined;
          return isObj(x) && isCount(x.seq) && batch ? { seq: x.seq, batch } : undefined;
        },
        MAX_BATCHES_FETCHED,
      );
      return batches && { type: v.type, batches };
    }
    case "META": {
      const clients = clientEntries(v.clients);
      const metas = list(v.metas, (x) => (isDigest(x) ? x : undefined), 1024);
      if (!isCount(v.seq) || !isDigest(v.kvRoot) || !clients || !metas) return undefined;
      const leaves = v.leaves === undefined ? undefined : leavesList(v.leaves);
      const parts = v.parts === undefined ? undefined : partsList(v.parts);
      if ((v.leaves !== undefined && !leaves) || (v.parts !== undefined && !parts))
        return undefined;
      if (
        v.clientsTotal !== undefined &&
        !(isCount(v.clientsTotal) && v.clientsTotal <= MAX_CLIENTS)
      )
        return undefined;
      return {
        type: v.type,
        seq: v.seq,
        kvRoot: v.kvRoot,
        clients,
        metas,
        ...(leaves ? { leaves } : {}),
        ...(parts ? { parts } : {}),
        ...(isCount(v.clientsTotal) ? { clientsTotal: v.clientsTotal } : {}),
      };
    }
    case "FETCH_CLIENTS":
      return isCount(v.seq) && isCount(v.from)
        ? { type: v.type, seq: v.seq, from: v.from }
        : undefined;
    case "CLIENTS": {
      const clients = clientEntries(v.clients);
      return isCount(v.seq) && isCount(v.from) && clients
        ? { type: v.type, seq: v.seq, from: v.from, clients }
        : undefined;
    }
    case "FETCH_LEAVES":
    case "FETCH_PARTS": {
      const indexes = list(v.type === "FETCH_LEAVES" ? v.metas : v.parts, (x) =>
        isCount(x) ? x : undefined,
      );
      if (!isCount(v.seq) || !indexes) return undefined;
      if (v.type === "FETCH_LEAVES") return { type: v.type, seq: v.seq, metas: indexes };
      if (v.maxBytes !== undefined && !(isCount(v.maxBytes) && v.maxBytes > 0)) return undefined;
      const cap = v.maxBytes === undefined ? {} : { maxBytes: v.maxBytes };
      if (v.offset === undefined) return { type: v.type, seq: v.seq, parts: indexes, ...cap };
      // A piece is asked of one partition at a time.
      return isCount(v.offset) && indexes.length === 1
        ? { type: v.type, seq: v.seq, parts: indexes, offset: v.offset, ...cap }
        : undefined;
    }
    case "LEAVES": {
      const leaves = leavesList(v.leaves);
      return isCount(v.seq) && leaves ? { type: v.type, seq: v.seq, leaves } : undefined;
    }
    case "PARTS": {
      const parts = partsList(v.parts);
      return isCount(v.seq) && parts ? { type: v.type, seq: v.seq, parts } : undefined;
    }
    case "NEW_KEY": {
      const c = certificate(v.certificate);
      return c && { type: v.type, certificate: c };
    }
    case "KEY_QUERY":
      return { type: v.type };
    case "SESSION":
      return isB64(v.dh, 64) && typeof v.ask === "boolean"
        ? { type: v.type, dh: v.dh, ask: v.ask }
        : undefined;
    case "REPLY": {
      if (
        !isCount(v.view) ||
        !isId(v.client) ||
        !isTimestamp(v.ts) ||
        !isCount(v.seq) ||
        !isDigest(v.op)
      )
        return undefined;
      if (v.batch !== undefined && !isDigest(v.batch)) return undefined;
      const result = parseKvResult(v.result);
      if ("error" in result) return undefined;
      return {
        type: v.type,
        view: v.view,
        client: v.client,
        ts: v.ts,
        seq: v.seq,
        ...(v.batch !== undefined ? { batch: v.batch } : {}),
        op: v.op,
        result,
      };
    }
    case "READ_REPLY": {
      if (
        !isId(v.client) ||
        !isTimestamp(v.ts) ||
        !isCount(v.since) ||
        !isCount(v.seq) ||
        v.since > v.seq ||
        !isDigest(v.op)
      )
        return undefined;
      const result = parseKvResult(v.result);
      return "error" in result
        ? undefined
        : {
            type: v.type,
            client: v.client,
            ts: v.ts,
            since: v.since,
            seq: v.seq,
            op: v.op,
            result,
          };
    }
    case "KEYS": {
      const certificates = list(v.certificates, certificate, 1024);
      return certificates && { type: v.type, certificates };
    }
    case "LEASE": {
      const lease = parseKeyLease(v.lease);
      return lease && { type: v.type, lease };
    }
    default:
      return undefined;
  }
}

/** Leaf digests by meta, as LEAVES (and a META) carry them. */
function leavesList(v: unknown): Array<{ meta: number; digests: string[] }> | undefined {
  return list(v, (x) => {
    if (!isObj(x) || !isCount(x.meta)) return undefined;
    const digests = list(x.digests, (d) => (isDigest(d) ? d : undefined), 1024);
    return digests && { meta: x.meta, digests };
  });
}

/** The pieces of the longest partition the store holds (`MAX_PARTITION_BYTES`). */
const MAX_PIECES = Math.ceil(MAX_PARTITION_BYTES / PIECE_BYTES);

/** Partitions by index, as PARTS (and a META) carry them. */
function partsList(v: unknown): PartitionData[] | undefined {
  return list(v, (x) => {
    if (!isObj(x) || !isCount(x.index) || !isB64(x.data, MAX_MESSAGE_BYTES)) return undefined;
    if (x.offset === undefined && x.totalBytes === undefined)
      return { index: x.index, data: x.data };
    // A piece: where it starts in the partition's encoding, which is longer than it.
    if (!isCount(x.offset) || !isCount(x.totalBytes) || x.offset >= x.totalBytes) return undefined;
    const piece = { index: x.index, data: x.data, offset: x.offset, totalBytes: x.totalBytes };
    if (x.pieces === undefined) return piece;
    // The pieces' digests come with the first piece: at most a partition's worth of them.
    const pieces = list(x.pieces, (d) => (isDigest(d) ? d : undefined), MAX_PIECES);
    return pieces !== undefined && x.offset === 0 ? { ...piece, pieces } : undefined;
  });
}

function parseJson(bytes: Buffer | string): unknown {
  if (bytes.length > MAX_MESSAGE_BYTES) return undefined;
  try {
    return JSON.parse(typeof bytes === "string" ? bytes : bytes.toString("utf8"));
  } catch {
    return undefined;
  }
}

/** The longest signature or list of MACs a header carries. */
const MAX_AUTH_CHARS = 8192;
const HEADER = new RegExp(
  `^(smwr1|smwm1) ([A-Za-z0-9_.-]{1,64}) (0|[1-9][0-9]{0,14}) ([A-Za-z0-9+/=_,.@-]{1,${MAX_AUTH_CHARS}})$`,
);
const MAC_ENTRY = /^([A-Za-z0-9_.-]{1,64})(?:@(0|[1-9][0-9]{0,14}))?=([A-Za-z0-9_-]{22})$/;
const MAX_MACS = 256;

/** An envelope from the network, its shape checked (not yet its signature or MACs). */
export function parseEnvelope(wire: Buffer): ReplicaEnvelope | undefined {
  if (wire.length > MAX_MESSAGE_BYTES) return undefined;
  const newline = wire.indexOf(10);
  if (newline < 0 || newline > 8300) return undefined;
  const header = HEADER.exec(wire.subarray(0, newline).toString("latin1"));
  if (header === null) return undefined;
  const [, version, from, epochText, auth] = header as unknown as [
    string,
    string,
    string,
    string,
    string,
  ];
  const bodyBytes = wire.subarray(newline + 1);
  const body = parseBody(parseJson(bodyBytes.toString("utf8")), 0);
  if (body === undefined) return undefined;
  const epoch = Number(epochText);
  // What the signature or MACs cover: the header without them, then the body's bytes as received.
  const covered = (version: string) =>
    Buffer.concat([Buffer.from(`${version} ${from} ${epoch}\n`, "latin1"), bodyBytes]);
  if (version === ENVELOPE_VERSION) {
    if (auth.length > 512 || auth.includes(",")) return undefined;
    return { from, epoch, body, sig: auth, signed: covered(ENVELOPE_VERSION), wire };
  }
  if (!MAC_TYPES.has(body.type)) return undefined;
  const entries = auth.split(",");
  if (entries.length > MAX_MACS) return undefined;
  const macs = new Map<string, string>();
  const macEpochs = new Map<string, number>();
  for (const entry of entries) {
    const m = MAC_ENTRY.exec(entry);
    if (m === null || macs.has(m[1] as string)) return undefined;
    macs.set(m[1] as string, m[3] as string);
    if (m[2] !== undefined) macEpochs.set(m[1] as string, Number(m[2]));
  }
  return { from, epoch, body, sig: "", macs, macEpochs, signed: covered(MAC_VERSION), wire };
}

export function parseClientMessage(bytes: Buffer): ClientMessage | undefined {
  const v = parseJson(bytes);
  if (!isObj(v)) return undefined;
  if (v.type === "KEYS_QUERY") return { type: "KEYS_QUERY" };
  if (v.type === "SESSION")
    return isId(v.client) && isTimestamp(v.ts) && isB64(v.dh, 64) && isB64(v.sig, 256)
      ? { type: "SESSION", client: v.client, ts: v.ts, dh: v.dh, sig: v.sig }
      : undefined;
  if (v.type === "READ") {
    if (!isId(v.client) || !isTimestamp(v.ts)) return undefined;
    const op = parseKvOperation(v.op);
    return "error" in op || !isReadOnly(op)
      ? undefined
      : { type: "READ", client: v.client, ts: v.ts, op };
  }
  if (v.type !== "REQUEST") return undefined;
  const request = parseClientRequest(v.request);
  if (request === undefined) return undefined;
  if (v.mac === undefined) return { type: "REQUEST", request };
  return isB64(v.mac, 64) ? { type: "REQUEST", request, mac: v.mac } : undefined;
}
