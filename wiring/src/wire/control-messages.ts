/**
 * What boards say to each other over the control link. Each message is a
 * frame type and a JSON body; bodies from the wire are checked field by field
 * before anything acts on them.
 */

export type ControlMessage =
  /**
   * A sign of life. `period`: the sender's last period started (-1: none).
   * `schedule`: the wall-clock instant (ms) of period 0's trigger it proposes,
   * or has `joined` (committed to). `sentAtMs`: the sender's clock when it
   * sent the frame, for the receiver's check of the clock offset bound.
   */
  | {
      type: "HB";
      period: number;
      schedule: number;
      joined: boolean;
      sentAtMs?: number;
      /** The `sentAtMs` of the last heartbeat heard from the addressee, and how long ago. */
      echoMs?: number;
      heldMs?: number;
      /** Present while the sender is in the fail-safe state: whose trigger it was, and why. */
      failsafe?: { origin: string; reason: string };
      /**
       * While joining: every key the sender certified before it began joining has an epoch below
       * this, every key it certifies from then on one at or above it. A cold start revokes the
       * keys below it (the era before), whatever the ring of a replica started cold would take.
       */
      keyFloor?: number;
    }
  /**
   * The sender finished Algorithm 1 in `period` of the schedule whose period 0 is at `schedule`
   * (period numbers start again with each schedule: a DONE of an earlier one is no DONE here).
   */
  | {
      type: "DONE";
      period: number;
      schedule: number;
    }
  /**
   * The sender is in the fail-safe state (sent on entering it, and on starting in it). `sentAtMs`
   * is its clock: a recorded FAILSAFE replayed later is stale, and refused.
   */
  | { type: "FAILSAFE"; reason: string; origin: string; sentAtMs: number };

const MAX_REASON_CHARS = 400;

export function controlMessageBody(message: ControlMessage): Record<string, unknown> {
  const { type: _type, ...body } = message;
  return body;
}

/** Checks a body received as `type`; undefined when it is not a well-formed message. */
export function parseControlMessage(
  type: string,
  body: Record<string, unknown>,
): ControlMessage | undefined {
  const count = (value: unknown, min: number) =>
    typeof value === "number" && Number.isSafeInteger(value) && value >= min;
  const finite = (value: unknown) => typeof value === "number" && Number.isFinite(value);
  switch (type) {
    case "HB": {
      const optional = ["sentAtMs", "echoMs", "heldMs"] as const;
      if (body.keyFloor !== undefined && !count(body.keyFloor, 0)) return undefined;
      if (!count(body.period, -1) || !count(body.schedule, 0) || typeof body.joined !== "boolean")
        return undefined;
      for (const key of Object.keys(body)) {
        if (!["period", "schedule", "joined", "failsafe", "keyFloor", ...optional].includes(key))
          return undefined;
      }
      const message: ControlMessage = {
        type,
        period: body.period as number,
        schedule: body.schedule as number,
        joined: body.joined,
      };
      if (body.keyFloor !== undefined) message.keyFloor = body.keyFloor as number;
      for (const key of optional) {
        if (body[key] === undefined) continue;
        if (!finite(body[key])) return undefined;
        message[key] = body[key] as number;
      }
      if (body.failsafe !== undefined) {
        const failsafe = parseFailsafe(body.failsafe);
        if (failsafe === undefined) return undefined;
        message.failsafe = failsafe;
      }
      return message;
    }
    case "DONE": {
      // Two numbers and nothing else: a DONE gates the next group's start, and on a 115200-baud
      // line each byte costs 87 µs (the step records it once carried took 1.1 kB, 96 ms; each
      // board keeps its own in steps.jsonl).
      if (!count(body.period, 0) || !count(body.schedule, 0)) return undefined;
      if (Object.keys(body).some((key) => key !== "period" && key !== "schedule")) return undefined;
      return { type, period: body.period as number, schedule: body.schedule as number };
    }
    case "FAILSAFE": {
      const failsafe = parseFailsafe(body);
      if (failsafe === undefined || !finite(body.sentAtMs)) return undefined;
      return { type, ...failsafe, sentAtMs: body.sentAtMs as number };
    }
    default:
      return undefined;
  }
}

function parseFailsafe(value: unknown): { origin: string; reason: string } | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const { reason, origin } = value as Record<string, unknown>;
  if (typeof reason !== "string" || typeof origin !== "string") return undefined;
  return { reason: reason.slice(0, MAX_REASON_CHARS), origin: origin.slice(0, 32) };
}
