/**
 * A testbed file's text with its rejuvenation figures replaced: the step budgets, T_p and
 * T_d. Used where a tool derives figures (the rig's calibration measures budgets on the
 * machine at hand) and writes the testbed that then runs. The rest of the file, comments
 * included, is kept as written, so the result reads like the original.
 */
import { type Document, isScalar, parseDocument } from "yaml";
import type { StepBudgets } from "./testbed.js";

export interface RejuvenationOverrides {
  budgets?: StepBudgets;
  tPMs?: number;
  tDMs?: number;
}

const BUDGET_KEYS: Record<keyof StepBudgets, string> = {
  tShutdownMs: "tShutdown",
  tCheckcodeMs: "tCheckcode",
  tRestorecodeMs: "tRestorecode",
  tBootMs: "tBoot",
  tTransferMs: "tTransfer",
};

/** Whole milliseconds, written as the loader reads them back exactly. */
const ms = (value: number) => `${Math.ceil(value)}ms`;

/** Sets a value, keeping the comment written after the old one. */
function set(doc: Document, path: readonly string[], value: string): void {
  const node = doc.getIn(path, true);
  if (isScalar(node)) node.value = value;
  else doc.setIn(path, value);
}

/**
 * Returns `text` with the given figures set (each comment line of `note` is put at the top).
 * Throws a RangeError naming the problem when the text is not YAML; the caller loads the
 * result with the usual checks.
 */
export function withRejuvenationOverrides(
  text: string,
  overrides: RejuvenationOverrides,
  note: readonly string[] = [],
): string {
  const doc = parseDocument(text);
  if (doc.errors.length > 0)
    throw new RangeError(`not a YAML document: ${doc.errors[0]?.message ?? "unknown error"}`);
  if (overrides.budgets !== undefined) {
    for (const [field, key] of Object.entries(BUDGET_KEYS) as Array<[keyof StepBudgets, string]>)
      set(doc, ["rejuvenation", "budgets", key], ms(overrides.budgets[field]));
  }
  if (overrides.tPMs !== undefined) set(doc, ["rejuvenation", "tP"], ms(overrides.tPMs));
  if (overrides.tDMs !== undefined) set(doc, ["rejuvenation", "tD"], ms(overrides.tDMs));
  const header = note.map((line) => `# ${line}`.trimEnd()).join("\n");
  return header === "" ? doc.toString() : `${header}\n${doc.toString()}`;
}
