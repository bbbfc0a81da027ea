/** Messages between the host agent and the replica process it supervises (node IPC). */
export type AgentToReplica =
  | { type: "prepare-shutdown" }
  | { type: "install-key"; keyFile: string; certificateFile: string }
  /** The board revoked these hosts' current keys: their group's rejuvenation began. */
  | { type: "revoke"; hosts: string[]; before: number };

export type ReplicaToAgent =
  | { type: "started" }
  | { type: "recovered"; seq: number; digest: string }
  | { type: "shutdown-prepared" };

export function isReplicaToAgent(m: unknown): m is ReplicaToAgent {
  if (typeof m !== "object" || m === null) return false;
  const t = (m as { type?: unknown }).type;
  return t === "started" || t === "recovered" || t === "shutdown-prepared";
}

export function isAgentToReplica(m: unknown): m is AgentToReplica {
  if (typeof m !== "object" || m === null) return false;
  const t = (m as { type?: unknown }).type;
  return t === "prepare-shutdown" || t === "install-key" || t === "revoke";
}
