/**
 * Reading a testbed file: YAML with positions, the schema, the cross-checks
 * and (on request) the files a machine is expected to hold. Every problem is
 * reported at once, each with file, line, path and what is wrong.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import {
  type Document,
  isMap,
  isPair,
  isScalar,
  isSeq,
  LineCounter,
  type Node,
  parseDocument,
} from "yaml";
import type { z } from "zod";
import { checkBoardChips } from "./chip-checks.js";
import { crossCheck } from "./cross-checks.js";
import { checkFiles, type FileCheckScope } from "./file-checks.js";
import type { Problem } from "./problem.js";
import { sortProblems } from "./problem.js";
import { describeIssue, testbedSchema } from "./schema.js";
import { type Testbed, toTestbed } from "./testbed.js";

export type LoadResult =
  | { ok: true; testbed: Testbed; filesChecked: FileCheckScope }
  | { ok: false; problems: Problem[] };

export interface LoadOptions {
  /** Which machine's files must exist: none (a desk check), one board's, or all. */
  files?: FileCheckScope;
  /** Where the kernel's sysfs GPIO folder is, for the board scope's chip check (tests). */
  sysfsGpioRoot?: string;
  /** The gpiodetect a `gpio: gpiod` board's chips are listed with (default: the one on PATH). */
  gpiodetect?: string;
  /** The name problems are reported under (default: the path as given). */
  displayName?: string;
}

/** Largest testbed file read; a real one is a few kilobytes. */
export const MAX_TESTBED_SIZE_BYTES = 4 * 1024 * 1024;

export function loadTestbedFile(file: string, options: LoadOptions = {}): LoadResult {
  const displayName = options.displayName ?? file;
  let text: string;
  try {
    const buffer = readFileSync(file);
    if (buffer.byteLength > MAX_TESTBED_SIZE_BYTES) {
      return fail(
        displayName,
        `file is ${buffer.byteLength} bytes; a testbed file is at most ${MAX_TESTBED_SIZE_BYTES}`,
      );
    }
    text = buffer.toString("utf8");
  } catch (error) {
    return fail(displayName, readErrorMessage(error));
  }
  return parseTestbed(text, path.resolve(file), { ...options, displayName });
}

/** Parses testbed text as if read from `file` (paths resolve against its folder). */
export function parseTestbed(text: string, file: string, options: LoadOptions = {}): LoadResult {
  const displayName = options.displayName ?? file;
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: true, uniqueKeys: true });
  const located = (where: Array<string | number>, message: string, atKey = false): Problem => ({
    file: displayName,
    path: where,
    message,
    ...position(doc, lineCounter, where, atKey),
  });

  if (doc.errors.length > 0) {
    return {
      ok: false,
      problems: doc.errors.map((error) => {
        const pos = error.linePos?.[0];
        return {
          file: displayName,
          ...(pos === undefined ? {} : { line: pos.line, column: pos.col }),
          path: [],
          message: `YAML: ${(error.message.split("\n")[0] ?? "").replace(/ at line \d+, column \d+:?$/, "")}`,
        };
      }),
    };
  }

  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 1000 });
  } catch (error) {
    return fail(displayName, `YAML: ${(error as Error).message}`);
  }
  if (data === null || data === undefined) {
    return fail(
      displayName,
      "the file is empty; a testbed starts with smw: 1, name, hosts, boards, ...",
    );
  }

  const parsed = testbedSchema.safeParse(data, { error: describeIssue, reportInput: true });
  if (!parsed.success) {
    return {
      ok: false,
      problems: sortProblems(parsed.error.issues.flatMap((issue) => fromIssue(issue, located))),
    };
  }

  const findings = crossCheck(parsed.data);
  if (findings.length > 0) {
    return {
      ok: false,
      problems: sortProblems(findings.map((finding) => located(finding.path, finding.message))),
    };
  }

  const testbed = toTestbed(parsed.data, file);
  const scope = options.files ?? { kind: "none" };
  const fileFindings = [
    ...checkFiles(testbed, scope),
    ...(scope.kind === "board"
      ? checkBoardChips(testbed, scope.board, {
          ...(options.sysfsGpioRoot === undefined ? {} : { sysfsRoot: options.sysfsGpioRoot }),
          ...(options.gpiodetect === undefined ? {} : { gpiodetect: options.gpiodetect }),
        })
      : []),
  ];
  if (fileFindings.length > 0) {
    return {
      ok: false,
      problems: sortProblems(fileFindings.map((finding) => located(finding.path, finding.message))),
    };
  }
  return { ok: true, testbed, filesChecked: scope };
}

function fromIssue(
  issue: z.core.$ZodIssue,
  located: (where: Array<string | number>, message: string, atKey?: boolean) => Problem,
): Problem[] {
  const where = issue.path.map((step) => (typeof step === "symbol" ? String(step) : step));
  if (issue.code === "unrecognized_keys") {
    return issue.keys.map((key) => {
      const suggestion = closestKnownKey(key);
      return located(
        [...where, key],
        `unknown key "${key}"${suggestion === undefined ? "" : ` (did you mean "${suggestion}"?)`}`,
        true,
      );
    });
  }
  if (issue.code === "invalid_union" && issue.errors.length > 0) {
    // A union names what it expected as a whole; the branches' details would only confuse,
    // unless one branch matched the value's shape and failed only inside it (`{ sequential:
    // banana }`): then what is wrong is in that branch, at its place.
    const inside = issue.errors.filter((branch) =>
      branch.every((each) => each.path.length > 0 && each.code !== "unrecognized_keys"),
    );
    if (inside.length === 1)
      return (inside[0] ?? []).flatMap((each) =>
        fromIssue({ ...each, path: [...issue.path, ...each.path] } as z.core.$ZodIssue, located),
      );
    return [located(where, issue.message)];
  }
  return [located(where, issue.message)];
}

/** Line and column of the value at `where`, or of the deepest part of it that exists. */
function position(
  doc: Document,
  lineCounter: LineCounter,
  where: ReadonlyArray<string | number>,
  atKey: boolean,
): { line?: number; column?: number } {
  let node: unknown = doc.contents;
  let found: Node | undefined = doc.contents ?? undefined;
  for (const [i, step] of where.entries()) {
    if (isMap(node)) {
      const pair = node.items.find(
        (item) => isPair(item) && isScalar(item.key) && String(item.key.value) === String(step),
      );
      if (pair === undefined || !isPair(pair)) break;
      const last = i === where.length - 1;
      if (last && atKey && isScalar(pair.key)) {
        found = pair.key;
        break;
      }
      node = pair.value;
      // A collection is reported at its key (`controlNetwork:`), and so is a
      // key with no value (`offset:`); a scalar at the value itself.
      const value = pair.value as Node | null;
      found =
        value !== null && isScalar(value)
          ? value
          : isScalar(pair.key)
            ? pair.key
            : (value ?? found);
    } else if (isSeq(node) && typeof step === "number") {
      const item = node.items[step];
      if (item === undefined) break;
      node = item;
      found = item as Node;
    } else {
      break;
    }
  }
  const offset = found?.range?.[0];
  if (offset === undefined) return {};
  const { line, col } = lineCounter.linePos(offset);
  return { line, column: col };
}

function fail(file: string, message: string): LoadResult {
  return { ok: false, problems: [{ file, path: [], message }] };
}

function readErrorMessage(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === "ENOENT") return "no such file";
  if (code === "EACCES") return "permission denied";
  if (code === "EISDIR") return "is a folder, not a testbed file";
  return `cannot read: ${(error as Error).message}`;
}

const KNOWN_KEYS = [
  "smw",
  "name",
  "description",
  "simulated",
  "keys",
  "operator",
  "timeliness",
  "procMax",
  "driftMaxPpm",
  "clockOffsetBound",
  "replication",
  "checkpointInterval",
  "batchMax",
  "batchesInFlight",
  "viewChangeTimeout",
  "hosts",
  "id",
  "address",
  "console",
  "device",
  "baud",
  "stateDir",
  "operatorEndpoint",
  "metricsEndpoint",
  "gpio",
  "replica",
  "boards",
  "guards",
  "lines",
  "role",
  "chip",
  "offset",
  "activeLow",
  "initial",
  "safe",
  "label",
  "control",
  "links",
  "port",
  "hostLink",
  "images",
  "os",
  "sm",
  "live",
  "golden",
  "manifest",
  "signing",
  "linkDir",
  "controlNetwork",
  "transport",
  "topology",
  "hub",
  "heartbeat",
  "silenceBound",
  "deliveryBound",
  "joinDeadline",
  "rejuvenation",
  "k",
  "kPrime",
  "f",
  "tP",
  "tD",
  "budgets",
  "tShutdown",
  "tCheckcode",
  "tRestorecode",
  "tBoot",
  "tTransfer",
  "order",
  "tExhaust",
  "sequential",
  "parallel",
  "table",
  "failsafe",
  "actions",
  "webhook",
  "exec",
  "authFailureLimit",
  "authFailureWindow",
  "onAuthFailures",
];

function closestKnownKey(key: string): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(key.length / 3)) + 1;
  for (const known of KNOWN_KEYS) {
    const distance = editDistance(key.toLowerCase(), known.toLowerCase());
    if (distance < bestDistance) {
      best = known;
      bestDistance = distance;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(
        (previous[j] as number) + 1,
        (current[j - 1] as number) + 1,
        (previous[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = current;
  }
  return previous[b.length] as number;
}
