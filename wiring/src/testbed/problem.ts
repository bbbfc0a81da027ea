/** One thing wrong with a testbed file: where it is and what is wrong. */
export interface Problem {
  file: string;
  /** 1-based line and column in the file, when the place could be found. */
  line?: number;
  column?: number;
  /** Path inside the document, e.g. ["boards", 2, "lines", 0, "offset"]. */
  path: ReadonlyArray<string | number>;
  message: string;
}

/** `boards[2].lines[0].offset`; the document root is `(top level)`. */
export function formatPath(path: ReadonlyArray<string | number>): string {
  if (path.length === 0) return "(top level)";
  let text = "";
  for (const step of path) {
    if (typeof step === "number") text += `[${step}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(step)) text += text === "" ? step : `.${step}`;
    else text += `[${JSON.stringify(step)}]`;
  }
  return text;
}

/** `rig-6.yaml:23:7: boards[2].lines[0].offset: expected an integer` — the form editors jump to. */
export function formatProblem(problem: Problem): string {
  const where =
    problem.line === undefined
      ? problem.file
      : `${problem.file}:${problem.line}${problem.column === undefined ? "" : `:${problem.column}`}`;
  return `${where}: ${formatPath(problem.path)}: ${problem.message}`;
}

export function sortProblems(problems: Problem[]): Problem[] {
  return [...problems].sort(
    (a, b) =>
      (a.line ?? Number.MAX_SAFE_INTEGER) - (b.line ?? Number.MAX_SAFE_INTEGER) ||
      (a.column ?? 0) - (b.column ?? 0) ||
      formatPath(a.path).localeCompare(formatPath(b.path)),
  );
}
