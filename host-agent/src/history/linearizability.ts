/**
 * A linearizability check of a key-value history, independent of the service: no witness order
 * from the replicas, only what the clients saw. Keys are independent registers (P-compositional),
 * each checked on its own by the Wing-Gong search with Lowe's memoisation (as Porcupine does): try
 * to linearize the earliest pending operations first, backtrack when an operation's completion is
 * reached before it could be placed, and never revisit a (set of placed operations, register
 * value) already explored. `fail` operations did not take effect and are left out; `info`
 * operations may take effect at any instant after their invoke, or never. Every key starts absent.
 *
 * On a violation, the operations of the key that cannot be ordered are narrowed down: the history
 * is cut where the search got stuck, then operations are removed one at a time while the rest
 * still cannot be ordered, keeping every write whose value a kept operation observed.
 */
import type { HistoryOperation } from "./history-file.js";

export type Verdict =
  | { linearizable: true; keys: number; checked: number; checkMs: number }
  | {
      linearizable: false;
      keys: number;
      checked: number;
      checkMs: number;
      key: string;
      /** The operations that cannot be ordered, by invoke time. */
      operations: HistoryOperation[];
    }
  | { linearizable: undefined; keys: number; checked: number; checkMs: number; reason: string };

type Value = string | null;

/** The register's step: undefined when the operation cannot take effect in this state. */
function step(state: Value, op: HistoryOperation): Value | undefined {
  const known = op.outcome === "ok";
  switch (op.f) {
    case "get":
      return !known || op.output === state ? state : undefined;
    case "put":
      if (known && op.previous !== undefined && op.previous !== state) return undefined;
      return op.input as string;
    case "del":
      if (known && op.previous !== undefined && op.previous !== state) return undefined;
      return null;
    case "cas": {
      const [expected, next] = op.input as [Value, string];
      return expected === state ? next : undefined;
    }
    default:
      return undefined;
  }
}

interface Entry {
  op: HistoryOperation;
  /** Position of the operation among the key's operations (its bit). */
  index: number;
  call: boolean;
  time: number;
  prev: Entry | undefined;
  next: Entry | undefined;
  match: Entry | undefined;
}

type SearchResult =
  | { ok: true }
  | { ok: false; stuck: HistoryOperation | undefined }
  | { ok: undefined };

/** Orders one key's operations if it can; `deadlineMs` on performance.now(). */
function searchKey(ops: readonly HistoryOperation[], deadlineMs: number): SearchResult {
  // An info get constrains nothing; a fail took no effect.
  const live = ops.filter((o) => o.outcome !== "fail" && !(o.f === "get" && o.outcome === "info"));
  const entries: Entry[] = [];
  live.forEach((op, index) => {
    const call: Entry = {
      op,
      index,
      call: true,
      time: op.invokeTime,
      prev: undefined,
      next: undefined,
      match: undefined,
    };
    const ret: Entry = { ...call, call: false, time: op.completeTime, match: call };
    call.match = ret;
    entries.push(call, ret);
  });
  // Equal instants: calls first, so that such operations count as concurrent.
  entries.sort((a, b) => a.time - b.time || Number(b.call) - Number(a.call));
  const head: Entry = {
    op: undefined as unknown as HistoryOperation,
    index: -1,
    call: false,
    time: Number.NEGATIVE_INFINITY,
    prev: undefined,
    next: undefined,
    match: undefined,
  };
  let last = head;
  for (const e of entries) {
    last.next = e;
    e.prev = last;
    last = e;
  }
  const lift = (call: Entry) => {
    for (const e of [call, call.match as Entry]) {
      (e.prev as Entry).next = e.next;
      if (e.next !== undefined) e.next.prev = e.prev;
    }
  };
  const unlift = (call: Entry) => {
    for (const e of [call.match as Entry, call]) {
      (e.prev as Entry).next = e;
      if (e.next !== undefined) e.next.prev = e;
    }
  };
  const bits = new Uint32Array(Math.ceil(live.length / 32) + 1);
  const cache = new Set<string>();
  const stack: Array<{ entry: Entry; state: Value }> = [];
  let state: Value = null;
  let entry = head.next;
  let deepest = -1;
  let stuck: HistoryOperation | undefined;
  let steps = 0;
  while (head.next !== undefined) {
    if (++steps % 4096 === 0 && performance.now() > deadlineMs) return { ok: undefined };
    const current = entry as Entry;
    if (current.call) {
      const next = step(state, current.op);
      if (next !== undefined) {
        bits[current.index >>> 5] =
          (bits[current.index >>> 5] as number) | (1 << (current.index & 31));
        const key = `${bits.join(",")}|${next === null ? "\u0000" : `=${next}`}`;
        if (!cache.has(key)) {
          cache.add(key);
          stack.push({ entry: current, state });
          state = next;
          lift(current);
          entry = head.next;
          continue;
        }
        bits[current.index >>> 5] =
          (bits[current.index >>> 5] as number) & ~(1 << (current.index & 31));
      }
      entry = current.next;
      continue;
    }
    // A completion reached with its operation not yet placed. An unknown outcome completes at
    // infinity: reaching one means every operation with a known outcome has been placed.
    if (current.time === Number.POSITIVE_INFINITY) return { ok: true };
    if (stack.length > deepest) {
      deepest = stack.length;
      stuck = current.op;
    }
    const top = stack.pop();
    if (top === undefined) return { ok: false, stuck };
    state = top.state;
    unlift(top.entry);
    bits[top.entry.index >>> 5] =
      (bits[top.entry.index >>> 5] as number) & ~(1 << (top.entry.index & 31));
    entry = top.entry.next;
  }
  return { ok: true };
}

/** Checks every key; stops at the first key that cannot be ordered. */
export function checkLinearizable(
  operations: readonly HistoryOperation[],
  options: { timeLimitMs: number } = { timeLimitMs: 60_000 },
): Verdict {
  const started = performance.now();
  const deadline = started + options.timeLimitMs;
  const byKey = new Map<string, HistoryOperation[]>();
  for (const op of operations) {
    const list = byKey.get(op.key) ?? [];
    list.push(op);
    byKey.set(op.key, list);
  }
  const keys = byKey.size;
  const checked = operations.length;
  for (const [key, ops] of byKey) {
    const result = searchKey(ops, deadline);
    if (result.ok === undefined)
      return {
        linearizable: undefined,
        keys,
        checked,
        checkMs: performance.now() - started,
        reason: `not decided within ${Math.round(options.timeLimitMs)} ms (key ${key}, ${ops.length} operations)`,
      };
    if (result.ok === false) {
      const minimal = narrow(ops, result.stuck, started + options.timeLimitMs * 2);
      return {
        linearizable: false,
        keys,
        checked,
        checkMs: performance.now() - started,
        key,
        operations: minimal,
      };
    }
  }
  return { linearizable: true, keys, checked, checkMs: performance.now() - started };
}

/** Whether `ops` certainly cannot be ordered (an undecided search counts as "can"). */
function unorderable(ops: readonly HistoryOperation[], deadlineMs: number): boolean {
  return searchKey(ops, deadlineMs).ok === false;
}

/** The values an operation saw in the register (reads, the value a put or del replaced). */
function observed(op: HistoryOperation): Value[] {
  const seen: Value[] = [];
  if (op.outcome !== "ok") return seen;
  if (op.f === "get") seen.push(op.output as Value);
  if ((op.f === "put" || op.f === "del") && op.previous !== undefined) seen.push(op.previous);
  if (op.f === "cas") seen.push((op.input as [Value, string])[0]);
  return seen;
}

function written(op: HistoryOperation): Value | undefined {
  if (op.outcome === "fail") return undefined;
  if (op.f === "put") return op.input as string;
  if (op.f === "cas") return (op.input as [Value, string])[1];
  return undefined;
}

/** The smallest set of one key's operations found that still cannot be ordered. */
function narrow(
  ops: readonly HistoryOperation[],
  stuck: HistoryOperation | undefined,
  deadlineMs: number,
): HistoryOperation[] {
  let kept = ops.filter((o) => o.outcome !== "fail");
  // Cut where the search got stuck: what was invoked after that completion cannot explain it,
  // and what was still running then may or may not have taken effect.
  if (stuck !== undefined) {
    const cut = stuck.completeTime;
    const prefix = kept
      .filter((o) => o.invokeTime <= cut)
      .map((o) =>
        o.completeTime > cut && o.outcome === "ok"
          ? { ...o, outcome: "info" as const, completeTime: Number.POSITIVE_INFINITY }
          : o,
      );
    if (unorderable(prefix, deadlineMs)) kept = prefix;
  }
  for (let i = kept.length - 1; i >= 0 && performance.now() < deadlineMs; i--) {
    const candidate = kept[i] as HistoryOperation;
    const value = written(candidate);
    // A write whose value a kept operation saw stays: it is part of the explanation.
    if (value !== undefined && kept.some((o) => o !== candidate && observed(o).includes(value)))
      continue;
    const without = kept.filter((o) => o !== candidate);
    if (unorderable(without, deadlineMs)) kept = without;
  }
  // Report the operations as the history has them (outcomes as recorded).
  const original = new Map(ops.map((o) => [o.id, o]));
  return kept
    .map((o) => original.get(o.id) ?? o)
    .sort((a, b) => a.invokeTime - b.invokeTime || a.id - b.id);
}
