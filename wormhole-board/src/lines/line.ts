/**
 * A GPIO line as the board drives it: by role, in logical levels (active /
 * inactive, whatever the wiring's polarity), and always read back.
 */
import type { Level, Line as LineSpec } from "@smw/wiring";

export interface ClaimedLine {
  readonly spec: LineSpec;
  /** Drives the line; synchronous, because safe-exit paths cannot wait. */
  set(level: Level): void;
  /** The level the line actually has, read back from the hardware. */
  get(): Level;
  /** Drives the safe level and lets go; unexports only if this process exported the line. */
  release(options?: { unexport?: boolean }): void;
}

/** Where a line starts when claimed: its declared initial level, or its safe level (a latched fail-safe). */
export type ClaimLevels = "initial" | "safe";

export interface LineBackend {
  readonly name: string;
  /** Claims a line as an output with its starting level applied atomically (no glitch). */
  claim(spec: LineSpec, levels: ClaimLevels): ClaimedLine;
}

export class LineError extends Error {
  override name = "LineError";
}

export function describeLineSpec(spec: LineSpec): string {
  return `${spec.role} line (${spec.chip}/${spec.offset}${spec.activeLow ? ", active-low" : ""})`;
}

/** Physical level for a logical one: an active-low line is low when active. */
export function physicalHigh(level: Level, activeLow: boolean): boolean {
  return (level === "active") !== activeLow;
}

export function startLevel(spec: LineSpec, levels: ClaimLevels): Level {
  return levels === "safe" ? spec.safe : spec.initial;
}
