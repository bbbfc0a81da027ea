/** Messages between the host agent and the replica process it supervises (node IPC). */
import type { KeyLease, Testbed } from "@smw/wiring";

export type AgentToReplica =
  /**
   * The testbed as the agent read it, sent as soon as the process is there: the file is parsed
   * once on the boot path, not once in each process (T_boot is one Node start).
   */
  | { type: "testbed"; testbed: Testbed }
  /**
   * The key is certified: start the replica. The process was spawned earlier, when the host
   * booted, so that loading its code overlaps the wait for the board's certificate.
   */
  | {
      type: "start";
      keyFile: string;
      certificateFile: string;
      recovering: boolean;
      coldStart: boolean;
      revokedKeys: Array<{ host: string; before: number }>;
    }
  | { type: "prepare-shutdown" }
  | { type: "install-key"; keyFile: string; certificateFile: string }
  /** The board revoked these hosts' current keys: their group's rejuvenation began. */
  | { type: "revoke"; hosts: string[]; before: number }
  /** The board vouches for the replica's key until `lease.notAfterMs` (passed on to clients). */
  | { type: "lease"; lease: KeyLease };

export type ReplicaToAgent =
  /** Loaded and listening for "start". */
  | { type: "ready" }
  | { type: "started" }
  | { type: "recovered"; seq: number; digest: string }
  | { type: "shutdown-prepared" };

const TO_AGENT = new Set(["ready", "started", "recovered", "shutdown-prepared"]);
const TO_REPLICA = new Set([
  "testbed",
  "start",
  "prepare-shutdown",
  "install-key",
  "revoke",
  "lease",
]);

function typeOf(m: unknown): unknown {
  return typeof m === "object" && m !== null ? (m as { type?: unknown }).type : undefined;
}

export function isReplicaToAgent(m: unknown): m is ReplicaToAgent {
  return TO_AGENT.has(typeOf(m) as string);
}

export function isAgentToReplica(m: unknown): m is AgentToReplica {
  return TO_REPLICA.has(typeOf(m) as string);
}
