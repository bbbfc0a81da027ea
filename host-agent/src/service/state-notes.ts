/**
 * What a replica says on its host's console about its own state: a stored
 * checkpoint it would not use, a state transfer (how much it fetched), and
 * recovery complete. The console is all a watcher of a host sees (a serial
 * console on a real testbed, the process output on the rig), so the lines are
 * written and read here, in one place.
 */
export type StateNote =
  | { kind: "checkpoint-rejected"; why: string }
  | { kind: "transferred"; seq: number; partitions: number; sizeBytes: number }
  | { kind: "recovered"; seq: number };

export function formatStateNote(note: StateNote): string {
  switch (note.kind) {
    case "checkpoint-rejected":
      return `stored checkpoint not used: ${note.why}`;
    case "transferred":
      return `state transfer: fetched ${note.partitions} partitions (${note.sizeBytes} bytes) for checkpoint ${note.seq}`;
    case "recovered":
      return `state recovered at checkpoint ${note.seq}`;
  }
}

const PATTERNS: Array<[RegExp, (m: RegExpExecArray) => StateNote]> = [
  [/stored checkpoint not used: (.*)$/, (m) => ({ kind: "checkpoint-rejected", why: m[1] ?? "" })],
  [
    /state transfer: fetched (\d+) partitions \((\d+) bytes\) for checkpoint (\d+)$/,
    (m) => ({
      kind: "transferred",
      partitions: Number(m[1]),
      sizeBytes: Number(m[2]),
      seq: Number(m[3]),
    }),
  ],
  [/state recovered at checkpoint (\d+)$/, (m) => ({ kind: "recovered", seq: Number(m[1]) })],
];

/** The note in a console line (whatever prefixes it), or undefined. */
export function parseStateNote(line: string): StateNote | undefined {
  for (const [pattern, read] of PATTERNS) {
    const m = pattern.exec(line);
    if (m !== null) return read(m);
  }
  return undefined;
}

/** A rejected checkpoint's reason with the file it names shown without its folder, for a one-line summary. */
export function reasonWithoutFolder(why: string): string {
  return why.replace(/^\S*\/([^/\s]+): /, "$1: ");
}
