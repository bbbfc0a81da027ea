/**
 * Deterministic serialization: JSON with object keys sorted, so every replica
 * computes the same bytes (and digests, and signatures) for the same value,
 * whatever order a sender wrote its keys in.
 */
import * as nodeCrypto from "node:crypto";

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export function canonicalJson(value: unknown): string {
  switch (typeof value) {
    case "string":
      return JSON.stringify(value);
    case "number":
      if (!Number.isFinite(value)) throw new RangeError("canonical JSON has no NaN or Infinity");
      return String(value);
    case "boolean":
      return value ? "true" : "false";
    case "undefined":
      return "null";
    default:
      break;
  }
  if (value === null) return "null";
  if (Array.isArray(value)) {
    // Strings and arrays of strings (a scan's entries) have no keys to sort: JSON.stringify
    // writes them as below, in one native call.
    if (stringsOnly(value)) return JSON.stringify(value);
    let out = "[";
    for (let i = 0; i < value.length; i++) out += (i > 0 ? "," : "") + canonicalJson(value[i]);
    return `${out}]`;
  }
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record).sort();
  let out = "{";
  let first = true;
  for (const key of keys) {
    const v = record[key];
    if (v === undefined) continue;
    out += `${first ? "" : ","}${JSON.stringify(key)}:${canonicalJson(v)}`;
    first = false;
  }
  return `${out}}`;
}

/** Whether every element is a string or an array of strings only. */
function stringsOnly(values: readonly unknown[]): boolean {
  for (const v of values) {
    if (typeof v === "string") continue;
    if (!Array.isArray(v)) return false;
    for (const w of v) if (typeof w !== "string") return false;
  }
  return true;
}

/**
 * node's one-shot `crypto.hash` (Node 20.12 and later): a third of the time of a `createHash`
 * object for the short inputs the protocol hashes (requests, batches, messages). Where it is
 * missing, the streaming form.
 */
const oneShot = (nodeCrypto as { hash?: typeof nodeCrypto.hash }).hash;

function sha256Of(data: string | Buffer, encoding: "hex" | "base64" | "buffer"): string | Buffer {
  if (oneShot !== undefined) return oneShot("sha256", data, encoding as "hex");
  const digest = nodeCrypto.createHash("sha256").update(data).digest();
  return encoding === "buffer" ? digest : digest.toString(encoding);
}

/** SHA-256 of the parts, in order, as if concatenated; hex. */
export function sha256Hex(...parts: Array<string | Buffer>): string {
  if (parts.length === 1) return sha256Of(parts[0] as string | Buffer, "hex") as string;
  const joined = parts.every((part) => typeof part === "string")
    ? parts.join("")
    : Buffer.concat(parts.map((part) => (typeof part === "string" ? Buffer.from(part) : part)));
  return sha256Of(joined, "hex") as string;
}

/** SHA-256 of `data`, base64. */
export function sha256Base64(data: string | Buffer): string {
  return sha256Of(data, "base64") as string;
}

/** SHA-256 of `data`, as bytes. */
export function sha256Bytes(data: string | Uint8Array): Buffer {
  const input =
    typeof data === "string" || Buffer.isBuffer(data)
      ? data
      : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return sha256Of(input, "buffer") as Buffer;
}
