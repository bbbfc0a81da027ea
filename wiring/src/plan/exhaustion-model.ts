/**
 * T_exhaust(x): the least time an adversary needs to compromise x replicas
 * (paper 3.3). The user supplies it as one of three models.
 */
import { DurationError, formatDurationMs, parseDurationMs } from "../duration.js";

export type ExhaustionModel =
  /** Replicas fall one after another: T_exhaust(x) = x·T. */
  | { kind: "sequential"; perReplicaMs: number }
  /** Attacks run in parallel: T_exhaust(x) = T for every x. */
  | { kind: "parallel"; allMs: number }
  /** Measured or estimated figures for x = 1, 2, ...; unknown beyond the table. */
  | { kind: "table"; byCountMs: ReadonlyMap<number, number> };

/** T_exhaust(x), or undefined when the model does not say (beyond a table). */
export function tExhaustMs(model: ExhaustionModel, replicas: number): number | undefined {
  switch (model.kind) {
    case "sequential":
      return replicas * model.perReplicaMs;
    case "parallel":
      return model.allMs;
    case "table":
      return model.byCountMs.get(replicas);
  }
}

/** Largest x the model knows T_exhaust(x) for (Infinity for the formula models). */
export function largestKnownCount(model: ExhaustionModel): number {
  return model.kind === "table" ? Math.max(...model.byCountMs.keys()) : Number.POSITIVE_INFINITY;
}

/** A table must not claim that more replicas fall faster than fewer. */
export function tableMonotonicityProblem(
  byCountMs: ReadonlyMap<number, number>,
): string | undefined {
  const counts = [...byCountMs.keys()].sort((a, b) => a - b);
  for (let i = 0; i < counts.length; i++) {
    if (counts[i] !== i + 1) return `the table must list 1, 2, ... without gaps (missing ${i + 1})`;
  }
  for (let i = 1; i < counts.length; i++) {
    const fewer = byCountMs.get(i) as number;
    const more = byCountMs.get(i + 1) as number;
    if (more < fewer) {
      return `T_exhaust(${i + 1}) = ${formatDurationMs(more)} is less than T_exhaust(${i}) = ${formatDurationMs(fewer)}; compromising more replicas cannot take less time`;
    }
  }
  return undefined;
}

export function describeExhaustionModel(model: ExhaustionModel): string {
  switch (model.kind) {
    case "sequential":
      return `sequential attacks, T_exhaust(x) = x · ${formatDurationMs(model.perReplicaMs)}`;
    case "parallel":
      return `parallel attacks, T_exhaust(x) = ${formatDurationMs(model.allMs)} for every x`;
    case "table":
      return `table, ${[...model.byCountMs.entries()]
        .sort((a, b) => a[0] - b[0])
        .map(([x, ms]) => `T_exhaust(${x}) = ${formatDurationMs(ms)}`)
        .join(", ")}`;
  }
}

/** Parses the command-line form: `sequential:T`, `parallel:T` or `table:1=T1,2=T2,...`. */
export function parseExhaustionModel(text: string): ExhaustionModel {
  const colon = text.indexOf(":");
  const kind = colon < 0 ? text : text.slice(0, colon);
  const rest = colon < 0 ? "" : text.slice(colon + 1);
  const usage = "expected sequential:T, parallel:T or table:1=T1,2=T2,... (e.g. sequential:2d)";
  try {
    if (kind === "sequential") return { kind, perReplicaMs: positive(rest) };
    if (kind === "parallel") return { kind, allMs: positive(rest) };
    if (kind === "table") {
      const byCountMs = new Map<number, number>();
      for (const entry of rest.split(",")) {
        const match = /^\s*([1-9]\d*)\s*=\s*(.+)$/.exec(entry);
        if (match === null)
          throw new DurationError(`table entry "${entry}" is not x=T (e.g. 2=5d)`);
        const count = Number(match[1]);
        if (byCountMs.has(count)) throw new DurationError(`table gives x=${count} twice`);
        byCountMs.set(count, positive(match[2] as string));
      }
      const problem = tableMonotonicityProblem(byCountMs);
      if (problem !== undefined) throw new DurationError(problem);
      return { kind, byCountMs };
    }
  } catch (error) {
    throw new DurationError(`--t-exhaust "${text}": ${(error as Error).message}`);
  }
  throw new DurationError(`--t-exhaust "${text}": ${usage}`);
}

function positive(text: string): number {
  const ms = parseDurationMs(text);
  if (ms <= 0) throw new DurationError(`"${text}" must be longer than zero`);
  return ms;
}
