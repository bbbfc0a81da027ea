/**
 * Operations of the key-value service and their results: the checks applied
 * to untrusted input (client requests, other replicas' replies) and the
 * canonical byte encoding that request digests and reply comparison use.
 *
 * Parsing never throws: it returns the operation or a message naming the
 * field at fault. Strings must be well-formed UTF-16 (no lone surrogates), so
 * that the UTF-8 bytes which order keys and feed digests stand for exactly
 * one string.
 */
import { compareKeys, isWellFormed } from "./key-order.js";

export type KvOperation =
  | { op: "get"; key: string }
  | { op: "put"; key: string; value: string }
  | { op: "del"; key: string }
  /** expected null = "key absent". */
  | { op: "cas"; key: string; expected: string | null; value: string }
  /** Keys k with from <= k < to ("" as `to` = no upper bound), in order, at most limit. */
  | { op: "scan"; from: string; to: string; limit: number };

export type KvResult =
  | { op: "get"; value: string | null }
  /** full: refused, nothing written (`MAX_PARTITION_BYTES`); previous is the value as it stays. */
  | { op: "put"; previous: string | null; full?: true }
  | { op: "del"; previous: string | null }
  /** current = the value after the operation; full: refused (ok false), as for a put. */
  | { op: "cas"; ok: boolean; current: string | null; full?: true }
  /** more: the answer's size bound, not the limit or the range, ended it (`scanAnswer`). */
  | { op: "scan"; entries: Array<[string, string]>; more?: true };

export const MAX_KEY_BYTES = 1024;
export const MAX_VALUE_BYTES = 1 << 20;
export const MAX_SCAN_LIMIT = 1000;
/**
 * The most one partition of the store may hold, as its canonical encoding (`partition-tree.ts`):
 * a write that would take its key's partition past it is refused (`full`). Keys hash to 4096
 * partitions, so only a client that chose its keys to share one gets near it: at random, the
 * fullest partition of a 16 GiB state of 1 MiB values holds 11 to 15 MiB. Why a bound at all:
 * state transfer holds a partition whole before it can check it (a lying voucher's too), and a
 * write rehashes its partition whole at the next checkpoint, in one go (32 MiB: about a fifth of
 * a second on a Raspberry Pi 4, whose cores lack SHA-256 instructions).
 */
export const MAX_PARTITION_BYTES = 32 * 1024 * 1024;

/**
 * A scan's answer holds entries up to this many bytes, as JSON writes them, and always its first.
 * Values are up to 1 MiB (up to 6 MiB written, each control character as \u00XX): a scan of a
 * thousand of them would have been a gigabyte, and one over 8 MiB could not be sent at all (a
 * frame's bound). Every replica stops at the same entry: the rule reads only the entries.
 */
export const MAX_SCAN_ANSWER_BYTES = 2 * 1024 * 1024;

/**
 * The answer to a scan of `keys` (in key order, at most its limit), each key's value from
 * `valueAt`: entries while they fit `MAX_SCAN_ANSWER_BYTES`, and `more` if the bound ended it.
 */
export function scanAnswer(
  keys: readonly string[],
  valueAt: (index: number) => string,
): Extract<KvResult, { op: "scan" }> {
  const entries: Array<[string, string]> = [];
  let bytes = 0;
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i] as string;
    const value = valueAt(i);
    // ["key","value"], and the comma before all but the first.
    bytes += jsonBytes(key) + jsonBytes(value) + 4;
    if (entries.length > 0 && bytes > MAX_SCAN_ANSWER_BYTES)
      return { op: "scan", entries, more: true };
    entries.push([key, value]);
  }
  return { op: "scan", entries };
}

/** Bytes of a string as JSON writes it, quotes included. */
function jsonBytes(text: string): number {
  return Buffer.byteLength(JSON.stringify(text));
}

type Fields = Record<string, unknown>;
type Checked<T> = T | { error: string };

const OPERATION_FIELDS = {
  get: ["key"],
  put: ["key", "value"],
  del: ["key"],
  cas: ["key", "expected", "value"],
  scan: ["from", "to", "limit"],
} as const;

const RESULT_FIELDS = {
  get: ["value"],
  put: ["previous", "full"],
  del: ["previous"],
  cas: ["ok", "current", "full"],
  scan: ["entries", "more"],
} as const;

/** Result fields that may be left out. */
const OPTIONAL_RESULT_FIELDS: ReadonlySet<string> = new Set(["more", "full"]);

/** Checks untrusted input (parsed JSON); returns the operation or a message naming what is wrong (e.g. "key: 1500 bytes, at most 1024"). */
export function parseKvOperation(input: unknown): KvOperation | { error: string } {
  const head = readHead(input, OPERATION_FIELDS, "operation");
  if ("error" in head) return head;
  const { op, fields } = head;
  switch (op) {
    case "get":
    case "del": {
      const key = checkKey("key", fields.key);
      return typeof key === "string" ? { op, key } : key;
    }
    case "put": {
      const key = checkKey("key", fields.key);
      if (typeof key !== "string") return key;
      const value = checkValue("value", fields.value);
      return typeof value === "string" ? { op, key, value } : value;
    }
    case "cas": {
      const key = checkKey("key", fields.key);
      if (typeof key !== "string") return key;
      const expected = fields.expected === null ? null : checkValue("expected", fields.expected);
      if (expected !== null && typeof expected !== "string") return expected;
      const value = checkValue("value", fields.value);
      return typeof value === "string" ? { op, key, expected, value } : value;
    }
    case "scan": {
      // from may be "" (below every key) and to may be "" (no upper bound).
      const from = checkBound("from", fields.from);
      if (typeof from !== "string") return from;
      const to = checkBound("to", fields.to);
      if (typeof to !== "string") return to;
      const limit = fields.limit;
      if (typeof limit !== "number" || !Number.isInteger(limit) || limit < 1)
        return { error: "limit: not a whole number of at least 1" };
      if (limit > MAX_SCAN_LIMIT) return { error: `limit: ${limit}, at most ${MAX_SCAN_LIMIT}` };
      return { op, from, to, limit };
    }
  }
}

/** Checks a reply from another replica; scan entries must be valid keys in strictly increasing order. */
export function parseKvResult(input: unknown): KvResult | { error: string } {
  const head = readHead(input, RESULT_FIELDS, "result");
  if ("error" in head) return head;
  const { op, fields } = head;
  switch (op) {
    case "get": {
      const value = checkOptionalValue("value", fields.value);
      return isError(value) ? value : { op, value };
    }
    case "put":
    case "del": {
      const previous = checkOptionalValue("previous", fields.previous);
      if (isError(previous)) return previous;
      if (fields.full === undefined) return { op, previous };
      if (op !== "put" || fields.full !== true) return { error: "full: if present, true" };
      return { op, previous, full: true };
    }
    case "cas": {
      if (typeof fields.ok !== "boolean") return { error: "ok: not a boolean" };
      const current = checkOptionalValue("current", fields.current);
      if (isError(current)) return current;
      if (fields.full === undefined) return { op, ok: fields.ok, current };
      if (fields.full !== true || fields.ok)
        return { error: "full: if present, true, with ok false" };
      return { op, ok: false, current, full: true };
    }
    case "scan": {
      if (!Array.isArray(fields.entries)) return { error: "entries: not an array" };
      const raw: readonly unknown[] = fields.entries;
      if (raw.length > MAX_SCAN_LIMIT)
        return { error: `entries: ${raw.length}, at most ${MAX_SCAN_LIMIT}` };
      const entries: Array<[string, string]> = [];
      for (const [i, entry] of raw.entries()) {
        if (!Array.isArray(entry) || entry.length !== 2)
          return { error: `entries[${i}]: not a [key, value] pair` };
        const pair: readonly unknown[] = entry;
        const key = checkKey(`entries[${i}] key`, pair[0]);
        if (typeof key !== "string") return key;
        const value = checkValue(`entries[${i}] value`, pair[1]);
        if (typeof value !== "string") return value;
        const previous = entries[i - 1];
        if (previous !== undefined && compareKeys(previous[0], key) >= 0)
          return { error: `entries[${i}]: key not after the one before` };
        entries.push([key, value]);
      }
      if (fields.more !== undefined && fields.more !== true)
        return { error: "more: if present, true" };
      return fields.more === true ? { op, entries, more: true } : { op, entries };
    }
  }
}

/**
 * Deterministic bytes of an operation: JSON with the fields in a fixed order
 * (op first, then as in the type), whatever order the object was built in,
 * so it is also what parseKvOperation reads back.
 */
export function encodeKvOperation(op: KvOperation): Buffer {
  let ordered: KvOperation;
  switch (op.op) {
    case "get":
    case "del":
      ordered = { op: op.op, key: op.key };
      break;
    case "put":
      ordered = { op: op.op, key: op.key, value: op.value };
      break;
    case "cas":
      ordered = { op: op.op, key: op.key, expected: op.expected, value: op.value };
      break;
    case "scan":
      ordered = { op: op.op, from: op.from, to: op.to, limit: op.limit };
      break;
  }
  return Buffer.from(JSON.stringify(ordered), "utf8");
}

/**
 * Deterministic bytes of a result, so replies from different replicas
 * compare byte for byte; parseKvResult reads them back.
 */
export function encodeKvResult(r: KvResult): Buffer {
  let ordered: KvResult;
  switch (r.op) {
    case "get":
      ordered = { op: r.op, value: r.value };
      break;
    case "put":
      ordered = {
        op: r.op,
        previous: r.previous,
        ...(r.full === true ? { full: true as const } : {}),
      };
      break;
    case "del":
      ordered = { op: r.op, previous: r.previous };
      break;
    case "cas":
      ordered = {
        op: r.op,
        ok: r.ok,
        current: r.current,
        ...(r.full === true ? { full: true as const } : {}),
      };
      break;
    case "scan":
      ordered = {
        op: r.op,
        entries: r.entries.map(([k, v]) => [k, v]),
        ...(r.more === true ? { more: true as const } : {}),
      };
      break;
  }
  return Buffer.from(JSON.stringify(ordered), "utf8");
}

export function isReadOnly(op: KvOperation): boolean {
  return op.op === "get" || op.op === "scan";
}

/** The message for a key that cannot be stored, or null if it can. */
export function keyError(key: string): string | null {
  const result = checkKey("key", key);
  return typeof result === "string" ? null : result.error;
}

/** The message for a value that cannot be stored, or null if it can. */
export function valueError(value: string): string | null {
  const result = checkValue("value", value);
  return typeof result === "string" ? null : result.error;
}

function readHead<Names extends string>(
  input: unknown,
  allowed: Record<Names, readonly string[]>,
  what: string,
): { op: Names; fields: Fields } | { error: string } {
  if (typeof input !== "object" || input === null || Array.isArray(input))
    return { error: `${what}: not an object` };
  const fields = input as Fields;
  const op = fields.op;
  const names = Object.keys(allowed);
  if (typeof op !== "string" || !names.includes(op))
    return { error: `op: expected one of ${names.join(", ")}` };
  const expected: readonly string[] = allowed[op as Names];
  for (const name of Object.keys(fields)) {
    if (name !== "op" && !expected.includes(name)) return { error: `${name}: unexpected field` };
  }
  for (const name of expected) {
    if (!Object.hasOwn(fields, name) && !OPTIONAL_RESULT_FIELDS.has(name))
      return { error: `${name}: missing` };
  }
  return { op: op as Names, fields };
}

function checkKey(field: string, key: unknown): Checked<string> {
  if (typeof key !== "string") return { error: `${field}: not a string` };
  if (key.length === 0) return { error: `${field}: empty` };
  return checkText(field, key, MAX_KEY_BYTES);
}

/** A scan bound: like a key, but may be empty. */
function checkBound(field: string, bound: unknown): Checked<string> {
  if (typeof bound !== "string") return { error: `${field}: not a string` };
  return checkText(field, bound, MAX_KEY_BYTES);
}

function checkValue(field: string, value: unknown): Checked<string> {
  if (typeof value !== "string") return { error: `${field}: not a string` };
  return checkText(field, value, MAX_VALUE_BYTES);
}

function checkOptionalValue(field: string, value: unknown): Checked<string | null> {
  if (value === null) return null;
  if (typeof value !== "string") return { error: `${field}: not a string or null` };
  return checkText(field, value, MAX_VALUE_BYTES);
}

function checkText(field: string, text: string, maxBytes: number): Checked<string> {
  const sizeBytes = Buffer.byteLength(text, "utf8");
  if (sizeBytes > maxBytes) return { error: `${field}: ${sizeBytes} bytes, at most ${maxBytes}` };
  if (!isWellFormed(text)) return { error: `${field}: lone surrogate, not valid UTF-8` };
  return text;
}

function isError<T>(x: Checked<T>): x is { error: string } {
  return typeof x === "object" && x !== null && "error" in x;
}
