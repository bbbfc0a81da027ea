/** Waiting on the boards' schedule, from the rig's event stream. */
import type { RigEventStream } from "./rig-events.js";

/** Waits until every board has completed `period`; false on a fail-safe or the timeout. */
export async function periodComplete(
  events: RigEventStream,
  boards: number,
  period: number,
  timeoutMs: number,
): Promise<boolean> {
  const done = new Set<string>();
  for (const e of events.all) {
    if (e.kind === "board" && e.msg === "period complete" && Number(e.fields.period) >= period)
      done.add(e.board);
    if (e.kind === "board" && e.msg === "FAIL-SAFE") return false;
  }
  const deadline = Date.now() + timeoutMs;
  while (done.size < boards) {
    const e = await events.waitFor(
      (x) => x.kind === "board" && (x.msg === "period complete" || x.msg === "FAIL-SAFE"),
      Math.max(0, deadline - Date.now()),
    );
    if (e === undefined || e.kind !== "board") return false;
    if (e.msg === "FAIL-SAFE") return false;
    if (Number(e.fields.period) >= period) done.add(e.board);
  }
  return true;
}
