/**
 * Durations as people write them in testbed files and on the command line:
 * `150ms`, `20s`, `5m`, `2h`, `30d`, decimals (`1.5s`) and sums (`1h30m`).
 * Everything inside smw is milliseconds; names carry the unit (`budgetMs`).
 */

const UNIT_MS = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
} as const;

type Unit = keyof typeof UNIT_MS;

const TERM = /\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*/y;

export class DurationError extends Error {
  override name = "DurationError";
}

/** Parses a duration; throws DurationError naming what is wrong with the text. */
export function parseDurationMs(text: string): number {
  const trimmed = text.trim();
  if (trimmed === "") throw new DurationError("empty duration; write e.g. 150ms, 20s, 5m, 2h, 30d");
  if (/^\d+(\.\d+)?$/.test(trimmed)) {
    throw new DurationError(
      `"${text}" has no unit; write e.g. ${trimmed}ms or ${trimmed}s (units: ms, s, m, h, d)`,
    );
  }
  let totalMs = 0;
  let position = 0;
  let previousUnitMs = Number.POSITIVE_INFINITY;
  TERM.lastIndex = 0;
  while (position < trimmed.length) {
    TERM.lastIndex = position;
    const match = TERM.exec(trimmed);
    if (match === null) {
      throw new DurationError(
        `"${text}" is not a duration; write e.g. 150ms, 20s, 5m, 2h, 30d or 1h30m`,
      );
    }
    const unitMs = UNIT_MS[match[2] as Unit];
    if (unitMs >= previousUnitMs) {
      throw new DurationError(
        `"${text}": units must go from largest to smallest, each once (e.g. 1h30m)`,
      );
    }
    previousUnitMs = unitMs;
    totalMs += Number(match[1]) * unitMs;
    position = TERM.lastIndex;
  }
  if (!Number.isFinite(totalMs) || totalMs > Number.MAX_SAFE_INTEGER) {
    throw new DurationError(`"${text}" is too large`);
  }
  // Sub-millisecond precision is below anything a board can time; round to microseconds.
  return Math.round(totalMs * 1000) / 1000;
}

/**
 * Formats milliseconds for people, exactly: every non-zero unit is shown
 * ("1d 23h 56m", "2m 30.5s", "150ms"), and the text parses back to the same value.
 */
export function formatDurationMs(ms: number): string {
  if (!Number.isFinite(ms)) return ms > 0 ? "∞" : "-∞";
  if (ms < 0) return `-${formatDurationMs(-ms)}`;
  if (ms === 0) return "0s";
  if (ms < 1_000) return `${trimDecimals(ms, 3)}ms`;
  const parts: string[] = [];
  let restMs = ms;
  for (const unit of ["d", "h", "m"] as const) {
    const count = Math.floor(restMs / UNIT_MS[unit]);
    if (count > 0) parts.push(`${count}${unit}`);
    restMs -= count * UNIT_MS[unit];
  }
  if (restMs > 0) parts.push(`${trimDecimals(restMs / 1_000, 6)}s`);
  return parts.join(" ");
}

function trimDecimals(value: number, decimals: number): string {
  return Number(value.toFixed(decimals)).toString();
}
