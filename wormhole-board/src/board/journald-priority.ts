/**
 * Under systemd, journald reads a "<N>" prefix on each line of a service's output as the line's
 * syslog priority (SyslogLevelPrefix=, on by default): the board's JSON log lines get the
 * priority of their pino level, so `journalctl -p warning` shows its warnings and errors.
 */

/** pino's levels to syslog priorities: fatal 2 (crit), error 3, warn 4, info 6, debug and trace 7. */
export function syslogPriority(pinoLevel: number): number {
  if (pinoLevel >= 60) return 2;
  if (pinoLevel >= 50) return 3;
  if (pinoLevel >= 40) return 4;
  if (pinoLevel >= 30) return 6;
  return 7;
}

/** Whether this process's output goes to the journal (systemd sets JOURNAL_STREAM for it). */
export function writesToJournal(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.JOURNAL_STREAM !== undefined && env.JOURNAL_STREAM !== "";
}

/** pino's `hooks.streamWrite`: prefixes each serialised line with its syslog priority. */
export function withSyslogPriority(line: string): string {
  const level = /"level":(\d+)/.exec(line)?.[1];
  return level === undefined ? line : `<${syslogPriority(Number(level))}>${line}`;
}
