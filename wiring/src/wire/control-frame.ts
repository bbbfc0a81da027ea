/**
 * Frames of the control link between boards: one line of text each, bounded
 * in size, authenticated with HMAC-SHA256 under the key the two boards share,
 * and numbered per sender so a replayed frame is refused.
 *
 *   smw2 <from> <to> <epoch> <seq> <type> <body> <mac>\n
 *
 * <epoch> is the sender's boot epoch, higher at each start (one more than the last, and at
 * least the wall clock's seconds), so its sequence numbers may start again; <seq> counts frames from 1 within it;
 * <mac> is the HMAC-SHA256 of all that precedes it, space included, truncated
 * to its first 128 bits (RFC 2104 section 5) in base64url. Parsing never
 * throws: a frame is accepted or rejected with a reason, and the link counts
 * the reasons.
 *
 * <body> is a JSON object in one of two forms. A flat object of numbers and
 * booleans under known keys (a heartbeat) is compact: "." then `<alias><value>`
 * items joined by ",", an alias one letter (`BODY_ALIASES`), a value a JSON
 * number or T/F. Anything else is base64url of the JSON text. A serial line at
 * 115200 baud takes about 87 µs a byte: a heartbeat fits in under 128 bytes
 * (about 11 ms on the wire) where base64url JSON and a hex MAC took about 230.
 */
import { createHmac, timingSafeEqual } from "node:crypto";

export const CONTROL_FRAME_VERSION = "smw2";
/** Longest frame accepted, newline excluded. */
export const MAX_CONTROL_FRAME_BYTES = 2048;

const ID = /^[A-Za-z][A-Za-z0-9_-]{0,31}$/;
const TYPE = /^[A-Z][A-Z0-9_]{0,23}$/;
const UINT = /^(0|[1-9]\d{0,15})$/;
const BASE64URL = /^[A-Za-z0-9_-]*$/;
const TAG = /^[A-Za-z0-9_-]{22}$/;
/** Bytes of the HMAC-SHA256 kept: 128 bits. */
const TAG_BYTES = 16;
const COMPACT_NUMBER = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/;

/** One-letter aliases of the keys a compact body may hold (the control messages' flat fields). */
export const BODY_ALIASES: Readonly<Record<string, string>> = {
  period: "p",
  schedule: "s",
  joined: "j",
  sentAtMs: "t",
  echoMs: "e",
  heldMs: "h",
  group: "g",
  keyFloor: "k",
};
const KEY_OF_ALIAS = new Map(Object.entries(BODY_ALIASES).map(([key, alias]) => [alias, key]));

export interface ControlFrame {
  from: string;
  to: string;
  epoch: number;
  seq: number;
  type: string;
  body: Record<string, unknown>;
}

export type FrameRejection =
  | "oversized"
  | "malformed"
  | "not-for-us"
  | "unknown-sender"
  | "forged"
  | "replayed";

export type FrameResult =
  | { ok: true; frame: ControlFrame }
  | { ok: false; reason: FrameRejection; from?: string };

export function encodeControlFrame(frame: ControlFrame, key: Uint8Array): string {
  const body = encodeBody(frame.body);
  const head = `${CONTROL_FRAME_VERSION} ${frame.from} ${frame.to} ${frame.epoch} ${frame.seq} ${frame.type} ${body}`;
  const line = `${head} ${mac(key, head)}`;
  if (Buffer.byteLength(line) > MAX_CONTROL_FRAME_BYTES) {
    throw new RangeError(
      `a ${frame.type} frame of ${Buffer.byteLength(line)} bytes exceeds ${MAX_CONTROL_FRAME_BYTES}`,
    );
  }
  return `${line}\n`;
}

/**
 * Checks a received line: shape, addressee, sender, MAC. Replay is checked
 * separately (ReplayGuard), after the MAC, so forged frames cannot move the window.
 */
export function decodeControlFrame(
  line: string,
  self: string,
  keyOf: (peer: string) => Uint8Array | undefined,
): FrameResult {
  const text = line.endsWith("\n") ? line.slice(0, -1) : line;
  if (Buffer.byteLength(text) > MAX_CONTROL_FRAME_BYTES) return { ok: false, reason: "oversized" };
  const fields = text.split(" ");
  if (fields.length !== 8) return { ok: false, reason: "malformed" };
  const [version, from, to, epoch, seq, type, body, tag] = fields as [
    string,
    string,
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  if (
    version !== CONTROL_FRAME_VERSION ||
    !ID.test(from) ||
    !ID.test(to) ||
    !UINT.test(epoch) ||
    !UINT.test(seq)
  ) {
    return { ok: false, reason: "malformed" };
  }
  if (!TYPE.test(type) || !(BASE64URL.test(body) || body.startsWith(".")) || !TAG.test(tag))
    return { ok: false, reason: "malformed" };
  if (to !== self) return { ok: false, reason: "not-for-us", from };
  const key = keyOf(from);
  if (key === undefined) return { ok: false, reason: "unknown-sender", from };
  // The tag's text is compared, not its bytes: 22 base64url characters carry 132 bits, so two
  // spellings decode to the same 128 and a frame could be altered in its last character.
  const expected = Buffer.from(mac(key, text.slice(0, text.length - tag.length - 1)), "utf8");
  if (!timingSafeEqual(expected, Buffer.from(tag, "utf8")))
    return { ok: false, reason: "forged", from };
  const parsed = decodeBody(body);
  if (parsed === undefined) return { ok: false, reason: "malformed", from };
  const seqNumber = Number(seq);
  const epochNumber = Number(epoch);
  if (!Number.isSafeInteger(seqNumber) || !Number.isSafeInteger(epochNumber) || seqNumber < 1) {
    return { ok: false, reason: "malformed", from };
  }
  return {
    ok: true,
    frame: {
      from,
      to,
      epoch: epochNumber,
      seq: seqNumber,
      type,
      body: parsed,
    },
  };
}

function mac(key: Uint8Array, text: string): string {
  return createHmac("sha256", key)
    .update(text, "utf8")
    .digest()
    .subarray(0, TAG_BYTES)
    .toString("base64url");
}

/** The compact form where every field is a finite number or a boolean under a known key. */
function encodeBody(body: Record<string, unknown>): string {
  const items: string[] = [];
  for (const [key, value] of Object.entries(body)) {
    const alias = Object.hasOwn(BODY_ALIASES, key) ? BODY_ALIASES[key] : undefined;
    if (alias === undefined) return jsonBody(body);
    if (typeof value === "boolean") items.push(`${alias}${value ? "T" : "F"}`);
    else if (typeof value === "number" && Number.isFinite(value))
      items.push(`${alias}${JSON.stringify(value)}`);
    else return jsonBody(body);
  }
  return `.${items.join(",")}`;
}

function jsonBody(body: Record<string, unknown>): string {
  return Buffer.from(JSON.stringify(body), "utf8").toString("base64url");
}

/** The body's JSON object, or undefined when it is not well-formed. */
function decodeBody(body: string): Record<string, unknown> | undefined {
  if (body.startsWith(".")) {
    const out: Record<string, unknown> = {};
    if (body === ".") return out;
    for (const item of body.slice(1).split(",")) {
      const key = KEY_OF_ALIAS.get(item.slice(0, 1));
      const value = item.slice(1);
      if (key === undefined || key in out) return undefined;
      if (value === "T" || value === "F") out[key] = value === "T";
      else if (COMPACT_NUMBER.test(value) && Number.isFinite(Number(value)))
        out[key] = Number(value);
      else return undefined;
    }
    return out;
  }
  try {
    const parsed: unknown = JSON.parse(Buffer.from(body, "base64url").toString("utf8"));
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return undefined;
    return parsed as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/**
 * Per-sender replay protection with a sliding window (as IPsec's), so that a
 * datagram transport may reorder a little: a frame is accepted once, and only
 * if it is newer than the window's floor. A higher epoch (the sender
 * restarted) starts a fresh window; a lower one is a replay.
 */
export class ReplayGuard {
  private readonly state = new Map<string, { epoch: number; highest: number; seen: bigint }>();
  /** Per peer, the boot epoch known from before a restart of this board: older ones are replays. */
  private readonly floor: Map<string, number>;

  constructor(
    private readonly windowSize = 64,
    known: ReadonlyMap<string, number> = new Map(),
    /** Told of each new epoch of a peer, to keep it across a restart. */
    private readonly onNewEpoch: (peer: string, epoch: number) => void = () => {},
  ) {
    this.floor = new Map(known);
  }

  accept(from: string, epoch: number, seq: number): boolean {
    const current = this.state.get(from);
    if (current === undefined || epoch > current.epoch) {
      if (epoch < (this.floor.get(from) ?? 0)) return false;
      if (epoch > (this.floor.get(from) ?? 0)) {
        this.floor.set(from, epoch);
        this.onNewEpoch(from, epoch);
      }
      this.state.set(from, { epoch, highest: seq, seen: 1n });
      return true;
    }
    if (epoch < current.epoch) return false;
    if (seq > current.highest) {
      const shift = BigInt(seq - current.highest);
      current.seen =
        shift >= BigInt(this.windowSize)
          ? 1n
          : ((current.seen << shift) | 1n) & ((1n << BigInt(this.windowSize)) - 1n);
      current.highest = seq;
      return true;
    }
    const age = current.highest - seq;
    if (age >= this.windowSize) return false;
    const bit = 1n << BigInt(age);
    if ((current.seen & bit) !== 0n) return false;
    current.seen |= bit;
    return true;
  }
}
