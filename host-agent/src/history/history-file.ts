/**
 * Client histories of the key-value service, in the convention Jepsen histories use: one JSON
 * object per line, an `invoke` then exactly one completion for the same process:
 *
 *   {"process": 0, "type": "invoke", "f": "put", "key": "k3", "value": "c1-17", "time": 12345}
 *   {"process": 0, "type": "ok", "f": "put", "key": "k3", "value": "c1-17", "time": 12999, "previous": null}
 *
 * `type`: `ok` (took effect, with its result), `fail` (certainly did not take effect: a cas that
 * did not swap), `info` (outcome unknown: a time-out; it may or may not have taken effect, at any
 * instant after its invoke). A process whose operation ended `info` never invokes again (the
 * client goes on as a new process). `time`: monotonic nanoseconds. `value`: get: the value read
 * (null: absent) on completion; put: the value written; del: null; cas: [expected, new] (expected
 * null: absent). put and del completions may carry `previous`, the value they replaced. Every key
 * starts absent. An invoke never completed counts as `info`.
 */

export type HistoryFunction = "get" | "put" | "del" | "cas" | "scan";
export type HistoryType = "invoke" | "ok" | "fail" | "info";

export interface HistoryEvent {
  process: number;
  type: HistoryType;
  f: HistoryFunction;
  key?: string;
  value?: unknown;
  time: number;
  previous?: string | null;
}

/** One operation: its invoke paired with its completion. */
export interface HistoryOperation {
  /** Index in the history, by invoke order. */
  id: number;
  process: number;
  f: HistoryFunction;
  key: string;
  /** What the invoke asked (put: value; cas: [expected, new]). */
  input: unknown;
  outcome: "ok" | "fail" | "info";
  /** What the completion returned (get: the value read). */
  output: unknown;
  /** put/del: the value replaced, when the completion said. */
  previous?: string | null;
  invokeTime: number;
  /** Infinity when the outcome is unknown. */
  completeTime: number;
  /** Lines of the invoke and the completion (0: none). */
  invokeLine: number;
  completeLine: number;
}

export class HistoryFormatError extends Error {}

const TYPES = new Set(["invoke", "ok", "fail", "info"]);
const FUNCTIONS = new Set(["get", "put", "del", "cas", "scan"]);
const FIELDS = new Set(["process", "type", "f", "key", "value", "time", "previous"]);

/** Bounds on what a history may hold, so that a hostile file cannot exhaust memory. */
export const MAX_HISTORY_LINE_BYTES = 1 << 20;

/**
 * Parses a history; throws HistoryFormatError naming the file, the line and what is wrong.
 * Operations come out in invoke order; scans are returned apart (they span keys).
 */
export function parseHistory(
  text: string,
  file: string,
): { operations: HistoryOperation[]; scans: number } {
  const pending = new Map<number, { event: HistoryEvent; line: number }>();
  /** Processes whose operation ended unknown: they may not invoke again. */
  const crashed = new Set<number>();
  const operations: HistoryOperation[] = [];
  let scans = 0;
  const lines = text.split("\n");
  const fail = (line: number, message: string): never => {
    throw new HistoryFormatError(`${file}:${line}: ${message}`);
  };
  for (const [i, raw] of lines.entries()) {
    const line = i + 1;
    if (raw.trim() === "") continue;
    if (raw.length > MAX_HISTORY_LINE_BYTES)
      fail(line, `line of ${raw.length} characters, at most ${MAX_HISTORY_LINE_BYTES}`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch (error) {
      fail(line, `not JSON: ${(error as Error).message}`);
    }
    const event = checkEvent(parsed, (message) => fail(line, message));
    const open = pending.get(event.process);
    if (event.type === "invoke") {
      if (open !== undefined)
        fail(
          line,
          `process ${event.process} invoked again before its operation of line ${open.line} completed`,
        );
      if (crashed.has(event.process))
        fail(
          line,
          `process ${event.process} invoked again after an operation with an unknown outcome (info); a client goes on as a new process`,
        );
      pending.set(event.process, { event, line });
      continue;
    }
    if (open === undefined)
      fail(line, `process ${event.process}: ${event.type} with no operation invoked`);
    const invoke = (open as { event: HistoryEvent; line: number }).event;
    if (invoke.f !== event.f)
      fail(
        line,
        `process ${event.process}: ${event.type} of ${event.f} for an invoke of ${invoke.f}`,
      );
    if (invoke.key !== event.key)
      fail(
        line,
        `process ${event.process}: ${event.type} for key ${event.key}, invoked for ${invoke.key}`,
      );
    if (event.time < invoke.time)
      fail(
        line,
        `process ${event.process}: completed at ${event.time}, before its invoke at ${invoke.time}`,
      );
    pending.delete(event.process);
    if (event.type === "info") crashed.add(event.process);
    if (invoke.f === "scan") {
      scans++;
      continue;
    }
    operations.push(
      operationOf(invoke, (open as { line: number }).line, event.type, event, line, fail),
    );
  }
  for (const [process, { event, line }] of pending) {
    if (event.f === "scan") {
      scans++;
      continue;
    }
    operations.push(operationOf(event, line, "info", undefined, 0, fail));
    crashed.add(process);
  }
  operations.sort((a, b) => a.invokeTime - b.invokeTime || a.invokeLine - b.invokeLine);
  operations.forEach((op, id) => {
    op.id = id;
  });
  return { operations, scans };
}

function operationOf(
  invoke: HistoryEvent,
  invokeLine: number,
  outcome: "ok" | "fail" | "info",
  completion: HistoryEvent | undefined,
  completeLine: number,
  fail: (line: number, message: string) => never,
): HistoryOperation {
  const f = invoke.f;
  const key = invoke.key as string;
  const input = invoke.value;
  if (f === "put" && typeof input !== "string")
    fail(invokeLine, "put: value is the string written");
  if (f === "cas" && !isCasValue(input))
    fail(invokeLine, "cas: value is [expected, new]: expected a string or null, new a string");
  let output: unknown = completion?.value;
  if (outcome === "ok" && f === "get") {
    if (output !== null && typeof output !== "string")
      fail(completeLine, "get: value is the string read, or null when the key was absent");
  } else output = input;
  const op: HistoryOperation = {
    id: 0,
    process: invoke.process,
    f,
    key,
    input,
    outcome,
    output,
    invokeTime: invoke.time,
    completeTime: outcome === "info" ? Number.POSITIVE_INFINITY : (completion as HistoryEvent).time,
    invokeLine,
    completeLine,
  };
  if (outcome === "ok" && completion?.previous !== undefined) op.previous = completion.previous;
  return op;
}

function isCasValue(v: unknown): v is [string | null, string] {
  return (
    Array.isArray(v) &&
    v.length === 2 &&
    (v[0] === null || typeof v[0] === "string") &&
    typeof v[1] === "string"
  );
}

function checkEvent(input: unknown, fail: (message: string) => never): HistoryEvent {
  if (typeof input !== "object" || input === null || Array.isArray(input))
    fail("not a JSON object");
  const o = input as Record<string, unknown>;
  for (const field of Object.keys(o))
    if (!FIELDS.has(field)) fail(`unknown field "${field}" (fields: ${[...FIELDS].join(", ")})`);
  const { process, type, f, key, time } = o;
  if (typeof process !== "number" || !Number.isSafeInteger(process) || process < 0)
    fail("process: not a whole number of 0 or more");
  if (typeof type !== "string" || !TYPES.has(type))
    fail(`type: ${JSON.stringify(type)}, expected invoke, ok, fail or info`);
  if (typeof f !== "string" || !FUNCTIONS.has(f))
    fail(`f: ${JSON.stringify(f)}, expected get, put, del, cas or scan`);
  if (f !== "scan" && typeof key !== "string") fail(`${f as string}: key is not a string`);
  if (typeof time !== "number" || !Number.isFinite(time) || time < 0)
    fail("time: not a number of nanoseconds of 0 or more");
  if (o.previous !== undefined && o.previous !== null && typeof o.previous !== "string")
    fail("previous: not a string or null");
  return o as unknown as HistoryEvent;
}

/** One event as a line of history.jsonl, its fields in the order the format lists them. */
export function historyLine(e: HistoryEvent): string {
  const ordered: HistoryEvent = {
    process: e.process,
    type: e.type,
    f: e.f,
    ...(e.key === undefined ? {} : { key: e.key }),
    ...(e.value === undefined ? {} : { value: e.value }),
    time: e.time,
    ...(e.previous === undefined ? {} : { previous: e.previous }),
  };
  return `${JSON.stringify(ordered)}\n`;
}
