/**
 * Putting the service's parts together from a testbed: a replica on one of
 * its hosts, the unreplicated baseline, and clients. Used by `smw kv`, the
 * host agent and the benchmark.
 */
import { readdirSync } from "node:fs";
import type { KeyCertificate, Testbed } from "@smw/wiring";
import { KvClient } from "../client/kv-client.js";
import { Ed25519Scheme, newReplicaSigner } from "../replica/ed25519.js";
import { KeyRing, type Signer } from "../replica/key-ring.js";
import type { ReplicaAction } from "../replica/replica-core.js";
import { ReplicaServer, type StoredCheckpointAndParts } from "./replica-server.js";
import {
  boardPublicKeys,
  certifyWithBoardKey,
  clientPublicKeys,
  clientSigner,
  KeyFileError,
  leaseWithBoardKey,
} from "./service-keys.js";
import { SingleServer } from "./single-server.js";

export interface ReplicaStartOptions {
  recovering?: boolean;
  /** The board released the host in a cold start: agree afresh on the state to start from. */
  coldStart?: boolean;
  /** Keys revoked so far, as the board told the host agent. */
  revokedKeys?: ReadonlyArray<{ host: string; before: number }>;
  k?: number;
  log?: (line: string) => void;
  /** Given by the host agent (its board certified it); otherwise made here with the board's key. */
  signer?: Signer;
  certificate?: KeyCertificate;
  period?: number;
  onAction?: (action: ReplicaAction) => void;
  rewrite?: (actions: ReplicaAction[]) => ReplicaAction[];
  /** Read already, before the certificate came (`readStoredCheckpoint`). */
  storedCheckpoint?: StoredCheckpointAndParts;
  /** The boards' and clients' public keys, read already (`readServiceKeys`). */
  serviceKeys?: ServiceKeys;
  /** When the start was asked (`performance.now()`): the replica's clock counts from then. */
  startAskedAtMs?: number;
}

/** Board (by the host it guards) and client public keys: what a replica checks certificates and clients with. */
export interface ServiceKeys {
  boardKeys: Map<string, string>;
  clientKeys: Map<string, string>;
}

export function readServiceKeys(testbed: Testbed): ServiceKeys {
  return { boardKeys: boardPublicKeys(testbed), clientKeys: clientPublicKeys(testbed) };
}

export async function startReplica(
  testbed: Testbed,
  hostId: string,
  options: ReplicaStartOptions = {},
): Promise<ReplicaServer> {
  if (!testbed.hosts.some((h) => h.id === hostId))
    throw new KeyFileError(
      `${testbed.file}: no host "${hostId}"; hosts are ${testbed.hosts.map((h) => h.id).join(", ")}`,
    );
  const signer = options.signer ?? newReplicaSigner();
  // Self-certified keys take the time in seconds as their period: a restarted replica's new
  // key is newer than the one its peers hold, as after a board's rejuvenation.
  const certificate =
    options.certificate ??
    certifyWithBoardKey(testbed, hostId, signer, options.period ?? Math.floor(Date.now() / 1000));
  // Certified here with the board's key, it is leased here too; a board's certificate comes with
  // the board's leases (over the host link, through the agent).
  const selfLease =
    options.certificate === undefined
      ? {
          lease: leaseWithBoardKey(testbed, hostId),
          everyMs: testbed.rejuvenation.keyLeaseMs / 4,
        }
      : undefined;
  const { boardKeys, clientKeys } = options.serviceKeys ?? readServiceKeys(testbed);
  const server = new ReplicaServer({
    testbed,
    hostId,
    scheme: new Ed25519Scheme(),
    signer,
    certificate,
    boardKeys,
    clientKeys,
    recovering: options.recovering ?? false,
    ...(options.coldStart === true ? { coldStart: true } : {}),
    ...(options.revokedKeys ? { revokedKeys: options.revokedKeys } : {}),
    ...(options.k !== undefined ? { k: options.k } : {}),
    ...(options.log ? { log: options.log } : {}),
    ...(options.onAction ? { onAction: options.onAction } : {}),
    ...(options.rewrite ? { rewrite: options.rewrite } : {}),
    ...(options.storedCheckpoint ? { storedCheckpoint: options.storedCheckpoint } : {}),
    ...(options.startAskedAtMs !== undefined ? { startAskedAtMs: options.startAskedAtMs } : {}),
    ...(selfLease !== undefined ? { selfLease } : {}),
  });
  await server.start();
  return server;
}

/** The baseline serves at the first host's address, under that host's board certificate. */
export async function startSingle(
  testbed: Testbed,
  listen?: { host: string; port: number },
): Promise<SingleServer> {
  const first = testbed.hosts[0];
  if (first === undefined) throw new KeyFileError(`${testbed.file}: no hosts`);
  const signer = newReplicaSigner();
  const certificate = certifyWithBoardKey(testbed, first.id, signer, 0);
  const scheme = new Ed25519Scheme();
  const ring = new KeyRing(scheme, boardPublicKeys(testbed), clientPublicKeys(testbed));
  const server = new SingleServer(first.id, listen ?? first.address, ring, signer, certificate);
  await server.start();
  return server;
}

export interface ClientStartOptions {
  clientId: string;
  keyFile?: string;
  single?: boolean;
  k?: number;
}

export function connectClient(testbed: Testbed, options: ClientStartOptions): KvClient {
  const scheme = new Ed25519Scheme();
  const common = {
    id: options.clientId,
    scheme,
    signer: clientSigner(testbed, options.clientId, options.keyFile),
    boardKeys: boardPublicKeys(testbed),
  };
  const first = testbed.hosts[0];
  const client =
    options.single && first
      ? new KvClient({ ...common, replicas: { [first.id]: first.address }, replyQuorum: 1 })
      : KvClient.forTestbed(testbed, {
          ...common,
          ...(options.k !== undefined ? { k: options.k } : {}),
        });
  client.start();
  return client;
}

/** The client ids that have a private key in the testbed's client folder, sorted. */
export function clientIdsWithKeys(testbed: Testbed): string[] {
  if (testbed.clientKeysDir === undefined) return [];
  try {
    return readdirSync(testbed.clientKeysDir)
      .filter((n) => n.endsWith(".key"))
      .map((n) => n.slice(0, -4))
      .sort();
  } catch {
    return [];
  }
}
