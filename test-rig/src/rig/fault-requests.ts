/**
 * The faults a person (or a script) can inject into a running rig, as
 * requests: what `smw rig fault` sends over the rig's fault socket. Read
 * defensively, since anything on this machine can write to the socket: a
 * request that is not one of these gets an error naming what is wrong.
 */
import { BYZANTINE_BEHAVIOURS } from "@smw/host-agent";
import type { Testbed } from "@smw/wiring";

export type FaultRequest =
  | { fault: "byzantine"; host: string; behaviours: string[] }
  | { fault: "corrupt-os"; host: string }
  | { fault: "corrupt-state"; host: string; now: boolean }
  | { fault: "boot-hang"; host: string }
  | { fault: "slow-transfer"; host: string; stallMs: number }
  | { fault: "kill-board"; board: string }
  | { fault: "restart-board"; board: string }
  | { fault: "cut-link"; board: string; peer: string }
  | { fault: "skew-clock"; board: string; offsetMs: number }
  | { fault: "tamper-golden"; image: "os" | "sm" }
  | { fault: "tamper-manifest"; image: "os" | "sm" }
  | { fault: "jam-write-protect"; board: string };

export type FaultName = FaultRequest["fault"];

/** Each fault and what it does, for `smw rig fault --help` and the README. */
export const FAULTS: Record<FaultName, string> = {
  byzantine: "--host H [--behaviours B,...]: plant Byzantine SM code on H's disk, reboot H into it",
  "corrupt-os": "--host H: flip 64 bytes of H's live OS image",
  "corrupt-state":
    "--host H [--now]: corrupt H's stored checkpoint while it is down, before its next boot (--now: at once)",
  "boot-hang": "--host H: H's next boots hang before its agent starts",
  "slow-transfer":
    "--host H [--ms N]: H stalls N ms once its key is certified (default T_transfer + 5 s)",
  "kill-board": "--board B: kill B's daemon",
  "restart-board":
    "--board B: start B's killed daemon again (it comes back in its latched fail-safe, if any)",
  "cut-link": "--board B --peer C: remove the serial control link between B and C",
  "skew-clock": "--board B [--ms N]: B's clock jumps N ms (default 3 × clockOffsetBound)",
  "tamper-golden": "[--image sm|os]: alter the golden image (default sm)",
  "tamper-manifest": "[--image os|sm]: alter a chunk digest in the signed manifest (default os)",
  "jam-write-protect": "--board B: B's write-protect line sticks: restores cannot write",
};

export const FAULT_NAMES = Object.keys(FAULTS) as FaultName[];

type Fields = Record<string, unknown>;

/** The fields each request may carry besides its name. */
const FIELDS: Record<FaultName, string[]> = {
  byzantine: ["host", "behaviours"],
  "corrupt-os": ["host"],
  "corrupt-state": ["host", "now"],
  "boot-hang": ["host"],
  "slow-transfer": ["host", "stallMs"],
  "kill-board": ["board"],
  "restart-board": ["board"],
  "cut-link": ["board", "peer"],
  "skew-clock": ["board", "offsetMs"],
  "tamper-golden": ["image"],
  "tamper-manifest": ["image"],
  "jam-write-protect": ["board"],
};

/** How `smw rig fault` spells each field. */
const FLAG_OF: Record<string, string> = {
  host: "--host",
  board: "--board",
  peer: "--peer",
  behaviours: "--behaviours",
  now: "--now",
  stallMs: "--ms",
  offsetMs: "--ms",
  image: "--image",
};

/** A request read from untrusted JSON, checked against the testbed: the request, or what is wrong with it. */
export function parseFaultRequest(
  value: unknown,
  testbed: Testbed,
): { request: FaultRequest } | { error: string } {
  if (typeof value !== "object" || value === null || Array.isArray(value))
    return { error: "a fault request is a JSON object" };
  const v = value as Fields;
  const name = v.fault;
  if (typeof name !== "string" || !(FAULT_NAMES as string[]).includes(name))
    return {
      error: `fault ${JSON.stringify(name)}: no such fault (faults: ${FAULT_NAMES.join(", ")})`,
    };
  const extra = Object.keys(v).filter(
    (k) => k !== "fault" && !FIELDS[name as FaultName].includes(k),
  );
  if (extra.length > 0)
    return {
      error: `fault ${name}: ${extra.map((k) => FLAG_OF[k] ?? k).join(", ")} does not apply to it (${FAULTS[name as FaultName]})`,
    };
  try {
    return { request: readFields(name as FaultName, v, testbed) };
  } catch (error) {
    if (error instanceof RequestError) return { error: `fault ${name}: ${error.message}` };
    throw error;
  }
}

class RequestError extends Error {}

function readFields(fault: FaultName, v: Fields, testbed: Testbed): FaultRequest {
  const r = testbed.rejuvenation;
  switch (fault) {
    case "byzantine": {
      const behaviours =
        v.behaviours === undefined ? ["wrong-replies", "equivocate"] : stringList(v, "behaviours");
      for (const b of behaviours)
        if (!(BYZANTINE_BEHAVIOURS as readonly string[]).includes(b))
          throw new RequestError(
            `behaviour "${b}" is not one (behaviours: ${BYZANTINE_BEHAVIOURS.join(", ")})`,
          );
      if (behaviours.length === 0) throw new RequestError("behaviours: name at least one");
      return { fault, host: host(v, testbed), behaviours };
    }
    case "corrupt-os":
    case "boot-hang":
      return { fault, host: host(v, testbed) };
    case "corrupt-state":
      return { fault, host: host(v, testbed), now: v.now === true };
    case "slow-transfer":
      return {
        fault,
        host: host(v, testbed),
        stallMs: milliseconds(v, "stallMs", (r.budgets.tTransferMs ?? 0) + 5_000),
      };
    case "kill-board":
    case "restart-board":
    case "jam-write-protect":
      return { fault, board: board(v, "board", testbed) };
    case "cut-link": {
      const a = board(v, "board", testbed);
      const b = board(v, "peer", testbed);
      if (a === b) throw new RequestError(`--peer ${b}: a board has no link to itself`);
      return { fault, board: a, peer: b };
    }
    case "skew-clock":
      return {
        fault,
        board: board(v, "board", testbed),
        offsetMs: milliseconds(v, "offsetMs", 3 * testbed.timeliness.clockOffsetBoundMs, true),
      };
    case "tamper-golden":
    case "tamper-manifest": {
      const image = v.image ?? (fault === "tamper-golden" ? "sm" : "os");
      if (image !== "os" && image !== "sm")
        throw new RequestError(`--image ${String(image)}: expected os or sm`);
      return { fault, image };
    }
  }
}

function host(v: Fields, testbed: Testbed): string {
  const id = v.host;
  const ids = testbed.hosts.map((h) => h.id);
  if (typeof id !== "string")
    throw new RequestError(`--host: which host (hosts: ${ids.join(", ")})`);
  if (!ids.includes(id))
    throw new RequestError(`--host ${id}: no such host (hosts: ${ids.join(", ")})`);
  return id;
}

function board(v: Fields, field: "board" | "peer", testbed: Testbed): string {
  const id = v[field];
  const ids = testbed.boards.map((b) => b.id);
  if (typeof id !== "string")
    throw new RequestError(`--${field}: which board (boards: ${ids.join(", ")})`);
  if (!ids.includes(id))
    throw new RequestError(`--${field} ${id}: no such board (boards: ${ids.join(", ")})`);
  return id;
}

function stringList(v: Fields, field: string): string[] {
  const list = v[field];
  if (!Array.isArray(list) || !list.every((x) => typeof x === "string"))
    throw new RequestError(`${field}: expected a list of names`);
  return list as string[];
}

function milliseconds(v: Fields, field: string, fallback: number, signed = false): number {
  const ms = v[field];
  if (ms === undefined) return fallback;
  if (typeof ms !== "number" || !Number.isSafeInteger(ms) || (!signed && ms < 0))
    throw new RequestError(`--ms ${String(ms)}: expected a whole number of milliseconds`);
  return ms;
}
