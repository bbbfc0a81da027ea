/** How a doctor's checks are said: a line each, or a JSON object each, then the verdict and exit status. */
import type { CliContext } from "./context.js";

export interface CheckLine {
  name: string;
  verdict: "ok" | "warn" | "fail";
  detail: string;
}

/** `subject`: what was checked ("board pi1", "host srv1"). Exit 1 when any check failed. */
export function reportChecks(
  context: CliContext,
  subject: string,
  checks: readonly CheckLine[],
  json: boolean,
): void {
  if (json) for (const check of checks) context.io.out(`${JSON.stringify(check)}\n`);
  else {
    for (const check of checks)
      context.io.out(
        `${check.verdict.toUpperCase().padEnd(4)}  ${check.name.padEnd(8)} ${check.detail}\n`,
      );
    const failed = checks.filter((c) => c.verdict === "fail").length;
    const warned = checks.filter((c) => c.verdict === "warn").length;
    context.io.out(
      failed === 0
        ? `${subject}: ready${warned === 0 ? "" : ` (${warned} warning${warned === 1 ? "" : "s"})`}\n`
        : `${subject}: ${failed} check${failed === 1 ? "" : "s"} failed\n`,
    );
  }
  context.setExitCode(checks.some((c) => c.verdict === "fail") ? 1 : 0);
}
