/**
 * A compromised replica, what a Byzantine SM code image runs: the ordinary
 * replica with its outgoing messages rewritten by the simulation's Byzantine
 * filter (it lies in replies, equivocates as primary, sends wrong digests...).
 * It holds a key its board certified, so what it sends verifies: the honest
 * replicas must out-vote it, not merely reject it.
 */
import {
  BYZANTINE_BEHAVIOURS,
  type ByzantineBehaviour,
  ByzantineFilter,
  Prng,
  type ReplicaAction,
  type ReplicaKeyFiles,
  readReplicaKey,
  signerFor,
  startReplica,
} from "@smw/host-agent";
import type { KeyLease, Testbed } from "@smw/wiring";

export function parseBehaviours(text: string): ByzantineBehaviour[] {
  const names = text.split(",").filter((b) => b !== "");
  for (const name of names) {
    if (!(BYZANTINE_BEHAVIOURS as readonly string[]).includes(name))
      throw new RangeError(
        `unknown Byzantine behaviour "${name}" (known: ${BYZANTINE_BEHAVIOURS.join(", ")})`,
      );
  }
  return names as ByzantineBehaviour[];
}

export async function runByzantineReplica(
  testbed: Testbed,
  hostId: string,
  keyFiles: ReplicaKeyFiles,
  behaviours: readonly ByzantineBehaviour[],
  log: (line: string) => void,
): Promise<{ close(): Promise<void>; installLease(lease: KeyLease): void }> {
  const { privateKey, certificate } = readReplicaKey(keyFiles);
  const signer = signerFor(privateKey);
  const peers = testbed.hosts.map((h) => h.id).filter((id) => id !== hostId);
  const filter = new ByzantineFilter(
    hostId,
    new Set(behaviours),
    peers,
    () => ({ signer, epoch: certificate.period }),
    new Prng(Date.now() >>> 0),
  );
  const rewrite = (actions: ReplicaAction[]): ReplicaAction[] => {
    const kept = actions.filter(
      (a) => a.type !== "send" && a.type !== "broadcast" && a.type !== "reply",
    );
    const sent: ReplicaAction[] = filter
      .filter(actions)
      .map((o) =>
        o.toClient === true
          ? { type: "reply", client: o.to, message: o.message }
          : o.to === "all"
            ? { type: "broadcast", message: o.message }
            : { type: "send", to: o.to, message: o.message },
      );
    return [...sent, ...kept];
  };
  const server = await startReplica(testbed, hostId, {
    signer,
    certificate,
    recovering: true,
    log,
    rewrite,
  });
  return { close: () => server.close(), installLease: (lease) => server.installLease(lease) };
}
