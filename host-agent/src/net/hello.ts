/**
 * The hello: the first frame the dialing side sends on every connection, so
 * the accepting side knows who claims to be on the other end. It is a claim,
 * not a proof: messages above this layer carry their own signatures.
 */

export type Hello = { role: "replica"; id: string } | { role: "client"; id: string };

export const HELLO_VERSION = 1;
export const CLIENT_ID_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;
export const DEFAULT_HELLO_TIMEOUT_MS = 5_000;
/** Far above any real hello; parsing an 8 MiB frame as JSON only to reject it would be waste. */
export const MAX_HELLO_BYTES = 1024;

/**
 * A client proves its hello: the replica answers it with a random challenge, the client signs
 * (replica, client, challenge) with its key, and only then does the replica route that client's
 * replies to the connection. Frames before the proof are bounded by this.
 */
export const CHALLENGE_BYTES = 32;
export const MAX_PRE_HELLO_FRAME_BYTES = 4096;

export function encodeChallenge(challenge: Buffer): Buffer {
  return Buffer.from(
    JSON.stringify({ smw: HELLO_VERSION, challenge: challenge.toString("base64") }),
  );
}

export function encodeProof(proof: string): Buffer {
  return Buffer.from(JSON.stringify({ smw: HELLO_VERSION, proof }));
}

/** What a client signs to prove its hello to `replica`. */
export function helloProofBytes(replica: string, client: string, challenge: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`smw-client-hello-1\n${replica}\n${client}\n`), challenge]);
}

function smallObject(
  payload: Buffer,
  what: string,
): { fields: Record<string, unknown> } | { error: string } {
  if (payload.length > MAX_PRE_HELLO_FRAME_BYTES)
    return { error: `the ${what} (${payload.length} bytes) is too long` };
  try {
    const value = JSON.parse(strictUtf8.decode(payload));
    if (typeof value === "object" && value !== null && !Array.isArray(value))
      return { fields: value as Record<string, unknown> };
  } catch {}
  return { error: `the ${what} is not a JSON object` };
}

export function parseChallenge(payload: Buffer): Buffer | { error: string } {
  const v = smallObject(payload, "challenge");
  if ("error" in v) return v;
  const text = v.fields.challenge;
  const bytes = typeof text === "string" ? Buffer.from(text, "base64") : undefined;
  return bytes !== undefined && bytes.length === CHALLENGE_BYTES
    ? bytes
    : { error: `the replica's challenge is not ${CHALLENGE_BYTES} bytes of base64` };
}

export function parseProof(payload: Buffer): string | { error: string } {
  const v = smallObject(payload, "proof of the hello");
  if ("error" in v) return v;
  const proof = v.fields.proof;
  return typeof proof === "string" && /^[A-Za-z0-9+/=]{1,512}$/.test(proof)
    ? proof
    : { error: "the proof of the hello is not a base64 signature" };
}

export function encodeHello(hello: Hello): Buffer {
  return Buffer.from(JSON.stringify({ smw: HELLO_VERSION, role: hello.role, id: hello.id }));
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** Quotes an untrusted string for a log line, short enough to stay one readable line. */
export function quoteForLog(text: string): string {
  return JSON.stringify(text.length > 64 ? `${text.slice(0, 64)}…` : text);
}

/** The hello in a frame, or what is wrong with it. */
export function parseHello(payload: Buffer): Hello | { error: string } {
  if (payload.length > MAX_HELLO_BYTES)
    return { error: `the first frame (${payload.length} bytes) is too long to be a hello` };
  let value: unknown;
  try {
    value = JSON.parse(strictUtf8.decode(payload));
  } catch {
    return { error: "the first frame is not a hello (not JSON)" };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value))
    return { error: "the first frame is not a hello (not a JSON object)" };
  const fields = value as Record<string, unknown>;
  const extra = Object.keys(fields).filter((k) => k !== "smw" && k !== "role" && k !== "id");
  if (extra.length > 0)
    return { error: `the hello has unknown fields: ${extra.map(quoteForLog).join(", ")}` };
  if (fields.smw !== HELLO_VERSION)
    return {
      error: `the hello has smw ${JSON.stringify(fields.smw) ?? "missing"}; this node speaks ${HELLO_VERSION}`,
    };
  const { role, id } = fields;
  if (typeof id !== "string" || id.length === 0)
    return { error: "the hello has no id (a non-empty string)" };
  if (role === "replica") return { role, id };
  if (role === "client") {
    if (!CLIENT_ID_PATTERN.test(id))
      return { error: `the hello names client ${quoteForLog(id)}, not a valid client id` };
    return { role, id };
  }
  return {
    error: `the hello has role ${JSON.stringify(role) ?? "missing"}, not "replica" or "client"`,
  };
}
