/**
 * Replica scenarios as text (`wiring/test/text-script.ts`): replica cores on a network the script
 * drives by hand (`replica-cluster.ts`), a client's requests, and lies told in a replica's name
 * with its own key. A reader follows a Byzantine or seam scenario message by message.
 *
 * Commands:
 *   boot [n=4] [kprime=1] [k=0]   the replicas r1..rn start, each with every peer's key
 *   request TS OP KEY [VALUE] [to=r1,r2]
 *                                 client c1's request number TS (put, get, del) reaches the
 *                                 replicas named (default: all), each copy with its MAC
 *   deliver [drop-from=R] [drop-to=R] [drop-type=T]
 *                                 every message in flight arrives, and what it causes, until
 *                                 none is left; those the filters name are lost
 *   run MS [drop-...]             time passes in steps of 10 ms: every core ticks, and each step's
 *                                 messages arrive as with deliver
 *   speak AS TO BODY              AS, Byzantine, sends TO the body (JSON) signed with its own key
 *   shutdown R                    R's board announces its shutdown (a primary hands off)
 *   rejuvenate R                  R comes back with a new key and no memory, recovering
 *   status                        each replica's view, primary, executed, stable checkpoint
 * Output: what each replica did, replica by replica in order: its messages (STATUS, key and
 * session chatter only counted), executions, views, checkpoints, replies and the problems it
 * found with what it was sent.
 */
import type { ReplicaBody } from "../src/replica/messages.js";
import type { ReplicaAction } from "../src/replica/replica-core.js";
import { replicaCluster } from "./replica-cluster.js";

type Cluster = ReturnType<typeof replicaCluster>;
interface InFlight {
  from: string;
  to: string;
  message: Buffer;
}

/** Sent often, said little: counted, not printed. */
const CHATTER = new Set(["STATUS", "KEY_QUERY", "KEYS", "SESSION", "NEW_KEY", "LEASE"]);

export class ReplicaScript {
  private cluster: Cluster | undefined;

  run(command: string): string {
    const [verb, ...args] = command.trim().split(/\s+/);
    const c = verb === "boot" ? undefined : this.need();
    const before = this.marks();
    switch (verb) {
      case "boot": {
        const o = keyValues(args);
        const n = Number(o.n ?? 4);
        this.cluster = replicaCluster(n, Number(o.kprime ?? 1), Number(o.k ?? 0));
        for (const id of this.cluster.ids) this.cluster.boot(id, { recovering: false });
        return this.report(new Map());
      }
      case "request": {
        const [ts, op, key, ...rest] = args;
        const value = rest.find((a) => !a.includes("="));
        const to = keyValues(rest).to?.split(",") ?? c?.ids ?? [];
        const kv =
          op === "put"
            ? { op: "put" as const, key: key as string, value: value ?? "" }
            : op === "del"
              ? { op: "del" as const, key: key as string }
              : { op: "get" as const, key: key as string };
        const request = c?.request(Number(ts), kv);
        if (request !== undefined) for (const id of to) c?.fromClient(id, request);
        break;
      }
      case "deliver":
        c?.deliver(passing(keyValues(args)));
        break;
      case "run":
        c?.run(Number(args[0]), passing(keyValues(args.slice(1))));
        break;
      case "speak": {
        const [as, to, ...body] = args;
        c?.hand(to as string, c.speakAs(as as string, JSON.parse(body.join(" ")) as ReplicaBody));
        break;
      }
      case "shutdown":
        c?.shutDown(args[0] as string);
        break;
      case "rejuvenate":
        c?.rejuvenate(args[0] as string, { recovering: true });
        break;
      case "status":
        return [...(c?.cores ?? [])]
          .map(
            ([id, core]) =>
              `${id} view ${core.currentView} primary ${core.primary} executed ${core.executedUpTo} stable ${core.stableCheckpoint.seq}${core.isRecovered ? "" : " recovering"}`,
          )
          .join("\n");
      default:
        throw new Error(`unknown command "${verb}"`);
    }
    return this.report(before);
  }

  private need(): Cluster {
    if (this.cluster === undefined) throw new Error("boot first");
    return this.cluster;
  }

  /** How many actions each replica had taken. */
  private marks(): Map<string, number> {
    return new Map([...(this.cluster?.sent ?? [])].map(([id, a]) => [id, a.length]));
  }

  /** What each replica did since `before`. */
  private report(before: Map<string, number>): string {
    const out: string[] = [];
    for (const id of this.cluster?.ids ?? []) {
      const actions = this.cluster?.sent.get(id)?.slice(before.get(id) ?? 0) ?? [];
      const chatter = new Map<string, number>();
      for (const a of actions) {
        const line = describeAction(a, chatter);
        if (line !== undefined) out.push(`${id} ${line}`);
      }
      if (chatter.size > 0)
        out.push(`${id} (${[...chatter].map(([type, count]) => `${count} ${type}`).join(", ")})`);
    }
    return out.join("\n");
  }
}

function keyValues(args: readonly string[]): Record<string, string> {
  return Object.fromEntries(
    args.filter((a) => a.includes("=")).map((a) => a.split("=") as [string, string]),
  );
}

function passing(o: Record<string, string>): (m: InFlight) => boolean {
  return (m) =>
    m.from !== o["drop-from"] &&
    m.to !== o["drop-to"] &&
    (o["drop-type"] === undefined || bodyOf(m.message)?.type !== o["drop-type"]);
}

function bodyOf(message: Buffer): ReplicaBody | undefined {
  const line = message.toString("utf8").split("\n")[1];
  if (line === undefined) return undefined;
  try {
    return JSON.parse(line) as ReplicaBody;
  } catch {
    return undefined;
  }
}

function describeAction(a: ReplicaAction, chatter: Map<string, number>): string | undefined {
  switch (a.type) {
    case "send":
    case "broadcast":
    case "reply": {
      const body = bodyOf(a.message);
      if (body === undefined) return `${a.type} (unparsed)`;
      if (CHATTER.has(body.type)) {
        chatter.set(body.type, (chatter.get(body.type) ?? 0) + 1);
        return undefined;
      }
      const to = a.type === "send" ? a.to : a.type === "reply" ? a.client : "all";
      return `→ ${to} ${describeBody(body)}`;
    }
    case "executed":
      return `executed ${a.seq} (${a.requests.length} request${a.requests.length === 1 ? "" : "s"})`;
    case "stable":
      return `stable checkpoint ${a.seq}`;
    case "view":
      return `view ${a.view}, primary ${a.primary}`;
    case "recovered":
      return `recovered at checkpoint ${a.seq}`;
    case "transfer-started":
      return `state transfer for checkpoint ${a.seq}`;
    case "problem":
      return `refused from ${a.from}: ${a.kind}: ${a.detail}`;
    default:
      return undefined;
  }
}

const short = (digest: string) => digest.slice(0, 6);

function describeBody(b: ReplicaBody): string {
  switch (b.type) {
    case "PRE_PREPARE":
      return `PRE_PREPARE view ${b.view} seq ${b.seq} ${short(b.digest)} (${b.requests?.length ?? 0} requests)`;
    case "PREPARE":
    case "COMMIT":
      return `${b.type} view ${b.view} seq ${b.seq} ${short(b.digest)}`;
    case "CHECKPOINT":
      return `CHECKPOINT ${b.seq} ${short(b.digest)}`;
    case "VIEW_CHANGE":
      return `VIEW_CHANGE to view ${b.newView} (stable ${b.stable.seq}, ${b.prepared.length} prepared)`;
    case "NEW_VIEW":
      return `NEW_VIEW view ${b.view} (${b.viewChanges.length} view changes)`;
    case "HANDOFF":
      return `HANDOFF view ${b.view}`;
    case "REPLY":
    case "READ_REPLY":
      return `${b.type} ts ${b.ts} ${JSON.stringify(b.result)}`;
    default:
      return b.type;
  }
}
