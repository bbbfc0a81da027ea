/**
 * The host link: the serial console line between a board and the payload
 * host it guards. One line per message, bounded, parsed defensively on both
 * sides, because the host is not trusted and the board must not be confused.
 *
 *   smwh1 <TYPE> <base64url JSON body>\n
 */

export const HOST_LINK_VERSION = "smwh1";
export const MAX_HOST_LINE_BYTES = 4096;
/** Hosts one REVOKE names at most (`revokeMessages` splits a longer list). */
export const MAX_REVOKE_HOSTS = 64;

/** A replica key certificate: the board vouches that `publicKey` is its host's key from `period` on. */
export interface KeyCertificate {
  host: string;
  board: string;
  /** The key epoch: the board's clock in whole seconds at issue, so a later certificate is newer. */
  period: number;
  /** Ed25519 public key of the replica, base64 SPKI DER. */
  publicKey: string;
  issuedAt: string;
  /** Ed25519 signature by the board's signing key over the fields above, base64. */
  signature: string;
}

/**
 * A key lease: the board vouches that `epoch` is still its host's current key epoch until
 * `notAfterMs` (the board's clock, milliseconds since the epoch). A board renews it while its host
 * runs outside its rejuvenation and stops when the host's group begins, so a key stolen from a
 * compromised host stops speaking at clients a lease after its rejuvenation began, whatever the
 * network keeps from them (SAFETY.md, "Key epochs": revocation at clients).
 */
export interface KeyLease {
  host: string;
  board: string;
  epoch: number;
  notAfterMs: number;
  /** Ed25519 signature by the board's signing key over `leaseSigningBytes`, base64. */
  signature: string;
}

export type BoardToHost =
  | { type: "PREPARE_SHUTDOWN"; period: number }
  /**
   * `coldStart`: the board released this host while no board of the testbed ran a schedule, so
   * every host had been held in reset since its board last started or was cleared: no replica
   * remembers a vote from before. The replicas then agree afresh on the state they start from.
   */
  | { type: "CERT"; certificate: KeyCertificate; coldStart?: boolean }
  /**
   * A group's rejuvenation began: the keys these hosts' replicas hold now, certified before
   * `before` (a key epoch: board clock seconds), speak for them no more. Their new keys, certified
   * after their boot, are later.
   */
  | { type: "REVOKE"; hosts: string[]; before: number }
  /** The host's current key is vouched for until `lease.notAfterMs`; renewed while it runs. */
  | { type: "LEASE"; lease: KeyLease };

export type HostToBoard =
  | { type: "SHUTDOWN_ACK"; period: number }
  | { type: "BOOTED"; publicKey: string }
  | { type: "RECOVERED"; checkpointSeq: number; digest: string }
  | { type: "HB" };

/**
 * One revocation as REVOKE messages that each fit a line: a testbed of many hosts with long
 * names would not fit one, and the host takes each as it comes (a key is revoked whichever line
 * names its host).
 */
export function revokeMessages(
  hosts: readonly string[],
  before: number,
): Array<Extract<BoardToHost, { type: "REVOKE" }>> {
  const messages: Array<Extract<BoardToHost, { type: "REVOKE" }>> = [];
  let batch: string[] = [];
  const fits = (candidate: string[]) =>
    Buffer.byteLength(
      `${HOST_LINK_VERSION} REVOKE ${Buffer.from(JSON.stringify({ hosts: candidate, before })).toString("base64url")}`,
    ) <= MAX_HOST_LINE_BYTES;
  for (const host of hosts) {
    if (batch.length === MAX_REVOKE_HOSTS || (batch.length > 0 && !fits([...batch, host]))) {
      messages.push({ type: "REVOKE", hosts: batch, before });
      batch = [];
    }
    batch.push(host);
  }
  if (batch.length > 0) messages.push({ type: "REVOKE", hosts: batch, before });
  return messages;
}

export function encodeHostLine(message: BoardToHost | HostToBoard): string {
  const { type, ...body } = message;
  const line = `${HOST_LINK_VERSION} ${type} ${Buffer.from(JSON.stringify(body), "utf8").toString("base64url")}`;
  if (Buffer.byteLength(line) > MAX_HOST_LINE_BYTES)
    throw new RangeError(`a ${type} line exceeds ${MAX_HOST_LINE_BYTES} bytes`);
  return `${line}\n`;
}

function decodeBody(line: string): { type: string; body: Record<string, unknown> } | undefined {
  if (Buffer.byteLength(line) > MAX_HOST_LINE_BYTES) return undefined;
  const fields = line.trim().split(" ");
  if (
    fields.length !== 3 ||
    fields[0] !== HOST_LINK_VERSION ||
    !/^[A-Z_]{2,24}$/.test(fields[1] as string)
  )
    return undefined;
  if (!/^[A-Za-z0-9_-]*$/.test(fields[2] as string)) return undefined;
  try {
    const body = JSON.parse(Buffer.from(fields[2] as string, "base64url").toString("utf8"));
    if (typeof body !== "object" || body === null || Array.isArray(body)) return undefined;
    return { type: fields[1] as string, body };
  } catch {
    return undefined;
  }
}

const BASE64 = /^[A-Za-z0-9+/=]{1,512}$/;
const HOST_ID = /^[A-Za-z0-9_.-]{1,64}$/;
const isCount = (v: unknown, min = 0) =>
  typeof v === "number" && Number.isSafeInteger(v) && v >= min;

/** A line from the host, checked; undefined when it is not a well-formed message. */
export function parseHostToBoard(line: string): HostToBoard | undefined {
  const decoded = decodeBody(line);
  if (decoded === undefined) return undefined;
  const { type, body } = decoded;
  switch (type) {
    case "SHUTDOWN_ACK":
      return isCount(body.period) ? { type, period: body.period as number } : undefined;
    case "BOOTED":
      return typeof body.publicKey === "string" && BASE64.test(body.publicKey)
        ? { type, publicKey: body.publicKey }
        : undefined;
    case "RECOVERED":
      return isCount(body.checkpointSeq) &&
        typeof body.digest === "string" &&
        /^[0-9a-f]{64}$/.test(body.digest)
        ? { type, checkpointSeq: body.checkpointSeq as number, digest: body.digest }
        : undefined;
    case "HB":
      return { type };
    default:
      return undefined;
  }
}

/** A line from the board, checked (the host side's parser). */
export function parseBoardToHost(line: string): BoardToHost | undefined {
  const decoded = decodeBody(line);
  if (decoded === undefined) return undefined;
  const { type, body } = decoded;
  switch (type) {
    case "PREPARE_SHUTDOWN":
      return isCount(body.period) ? { type, period: body.period as number } : undefined;
    case "REVOKE": {
      const hosts = body.hosts;
      if (
        !Array.isArray(hosts) ||
        hosts.length === 0 ||
        hosts.length > MAX_REVOKE_HOSTS ||
        !hosts.every((h) => typeof h === "string" && HOST_ID.test(h)) ||
        !isCount(body.before)
      )
        return undefined;
      return { type, hosts: hosts as string[], before: body.before as number };
    }
    case "CERT": {
      const c = body.certificate as Record<string, unknown> | undefined;
      if (typeof c !== "object" || c === null) return undefined;
      if (
        typeof c.host !== "string" ||
        typeof c.board !== "string" ||
        !isCount(c.period) ||
        typeof c.issuedAt !== "string"
      )
        return undefined;
      if (
        typeof c.publicKey !== "string" ||
        !BASE64.test(c.publicKey) ||
        typeof c.signature !== "string" ||
        !BASE64.test(c.signature)
      )
        return undefined;
      if (body.coldStart !== undefined && typeof body.coldStart !== "boolean") return undefined;
      return {
        type,
        certificate: c as unknown as KeyCertificate,
        ...(body.coldStart === true ? { coldStart: true } : {}),
      };
    }
    case "LEASE": {
      const lease = parseKeyLease(body.lease);
      return lease === undefined ? undefined : { type, lease };
    }
    default:
      return undefined;
  }
}

/** A lease as it came (from a host link or a replica), checked for shape; undefined if malformed. */
export function parseKeyLease(v: unknown): KeyLease | undefined {
  if (typeof v !== "object" || v === null) return undefined;
  const l = v as Record<string, unknown>;
  if (
    typeof l.host !== "string" ||
    !HOST_ID.test(l.host) ||
    typeof l.board !== "string" ||
    !HOST_ID.test(l.board) ||
    !isCount(l.epoch) ||
    !isCount(l.notAfterMs) ||
    typeof l.signature !== "string" ||
    !BASE64.test(l.signature)
  )
    return undefined;
  return {
    host: l.host,
    board: l.board,
    epoch: l.epoch as number,
    notAfterMs: l.notAfterMs as number,
    signature: l.signature,
  };
}

/** The bytes a board signs for a lease: its fields in a fixed order, tagged apart from certificates. */
export function leaseSigningBytes(l: Omit<KeyLease, "signature">): Buffer {
  return Buffer.from(JSON.stringify(["lease", l.host, l.board, l.epoch, l.notAfterMs]), "utf8");
}

/** The bytes a board signs for a certificate: its fields in a fixed order. */
export function certificateSigningBytes(c: Omit<KeyCertificate, "signature">): Buffer {
  return Buffer.from(JSON.stringify([c.host, c.board, c.period, c.publicKey, c.issuedAt]), "utf8");
}
