/**
 * A validated testbed: what the rest of smw reads. Paths are absolute
 * (resolved against the testbed file's folder), durations are milliseconds,
 * every default is filled in.
 */
import path from "node:path";
import type { ExhaustionModel } from "../plan/exhaustion-model.js";
import type { ImageName, Level, LineRole, RawTestbed } from "./schema.js";

export type { ImageName, Level, LineRole } from "./schema.js";

export interface Line {
  role: LineRole;
  /** gpiochip label; the board translates label + offset to its sysfs number. */
  chip: string;
  offset: number;
  activeLow: boolean;
  initial: Level;
  safe: Level;
  label?: string;
}

export interface SerialEndpoint {
  device: string;
  baud: number;
}

export interface ImagePaths {
  live: string;
  golden: string;
  manifest: string;
}

export type BoardControl =
  | { kind: "links"; links: ReadonlyArray<{ peer: string; device: string }> }
  | { kind: "bus"; device: string }
  | { kind: "ethernet"; address: string; port: number };

export interface Board {
  id: string;
  guards: string;
  stateDir: string;
  /** The daemon's operator endpoint on the network, if it has one. */
  operatorEndpoint?: { host: string; port: number };
  /** Where the daemon serves its Prometheus metrics, if anywhere. */
  metricsEndpoint?: { host: string; port: number };
  /** How the board drives its lines on real hardware (a simulated testbed ignores it). */
  gpio: "sysfs" | "gpiod";
  lines: Line[];
  control: BoardControl;
  hostLink: SerialEndpoint;
  images: Record<ImageName, ImagePaths>;
  keys: { signingPath: string; linkDir: string };
}

export interface ReplicaSettings {
  checkpointInterval: number;
  batchMax: number;
  /** Batches proposed and not yet executed, at most: the pipeline's depth. */
  batchesInFlight: number;
  viewChangeTimeoutMs: number;
}

export interface Host {
  id: string;
  address: { host: string; port: number };
  console: SerialEndpoint;
  stateDir: string;
  replica: ReplicaSettings;
}

export type ControlTopology = "mesh" | "ring" | "star" | "bus";

export interface ControlNetwork {
  transport: "serial" | "udp" | "tcp";
  /** Serial only. */
  baud?: number;
  topology?: ControlTopology;
  hub?: string;
  heartbeatMs: number;
  /** A peer silent for this long is declared silent (a fail-safe trigger). */
  silenceBoundMs: number;
  /** Upper bound on one-way delivery of a control frame. */
  deliveryBoundMs: number;
  /** A board not running the peers' schedule this long after it started (or was cleared) fails safe. */
  joinDeadlineMs?: number;
}

export interface StepBudgets {
  tShutdownMs: number;
  tCheckcodeMs: number;
  tRestorecodeMs: number;
  tBootMs: number;
  tTransferMs: number;
}

export interface Rejuvenation {
  k: number;
  kPrime: number;
  f: number;
  tPMs?: number;
  tDMs?: number;
  budgets: StepBudgets;
  /** How long a board's lease on its host's current key lasts (`KeyLease`). */
  keyLeaseMs: number;
  /** Host ids per group, in rejuvenation order (default: hosts in order, k per group). */
  groups: string[][];
}

export type FailsafeAction =
  | { kind: "hold-reset" }
  | { kind: "power-off" }
  | { kind: "alarm-line" }
  | { kind: "webhook"; url: string }
  | { kind: "exec"; argv: string[] };

export interface Testbed {
  /** Absolute path of the file it was read from. */
  file: string;
  name: string;
  description?: string;
  simulated: boolean;
  operatorKeyPath: string;
  /** Folder of client public keys (<id>.pub), if the testbed names one. */
  clientKeysDir?: string;
  timeliness: {
    procMaxMs: number;
    driftMaxPpm: number;
    clockOffsetBoundMs: number;
    /** How far a client's clock may be from the boards' (a key lease must have this much left). */
    clientClockBoundMs: number;
  };
  hosts: Host[];
  boards: Board[];
  controlNetwork: ControlNetwork;
  rejuvenation: Rejuvenation;
  tExhaust: ExhaustionModel;
  failsafe: {
    actions: FailsafeAction[];
    /** `authFailureLimit` frames failing authentication within `authFailureWindowMs`: an attack. */
    authFailureLimit: number;
    authFailureWindowMs: number;
    onAuthFailures: "alarm" | "fail-safe";
  };
}

/** What a line does when the file leaves its levels out: the safe choice for its role. */
export const DEFAULT_LEVELS: Record<LineRole, { initial: Level; safe: Level }> = {
  // Claiming must not reset a running host; a dead board must hold it in reset.
  reset: { initial: "inactive", safe: "active" },
  power: { initial: "active", safe: "active" },
  // The code disk is writable only inside a restore.
  "write-protect": { initial: "active", safe: "active" },
  // active = the disk is switched to the board.
  "storage-mux": { initial: "inactive", safe: "inactive" },
  // A board that dies raises the alarm.
  alarm: { initial: "inactive", safe: "active" },
  status: { initial: "inactive", safe: "inactive" },
};

export const DEFAULT_REPLICA_SETTINGS: ReplicaSettings = {
  checkpointInterval: 128,
  batchMax: 32,
  batchesInFlight: 2,
  viewChangeTimeoutMs: 2_000,
};

/**
 * The key lease and the client clock bound a testbed runs with: as written, or by default 1 s
 * (at most half of T_shutdown, and T_shutdown less procMax: the shutdown step waits for the last
 * lease to lapse before it resets the host) and 250 ms (at most a quarter of the lease, so that a
 * lease is usable for most of its length).
 */
/** The step budgets a testbed file gives, in the names the code uses. */
export function stepBudgetsOf(raw: RawTestbed): StepBudgets {
  const b = raw.rejuvenation.budgets;
  return {
    tShutdownMs: b.tShutdown,
    tCheckcodeMs: b.tCheckcode,
    tRestorecodeMs: b.tRestorecode,
    tBootMs: b.tBoot,
    tTransferMs: b.tTransfer,
  };
}

export function keyLeaseDefaults(raw: RawTestbed): {
  keyLeaseMs: number;
  clientClockBoundMs: number;
} {
  const shutdownMs = raw.rejuvenation.budgets.tShutdown;
  const keyLeaseMs =
    raw.rejuvenation.keyLease ??
    Math.min(1_000, Math.floor(shutdownMs / 2), shutdownMs - raw.timeliness.procMax);
  const clientClockBoundMs =
    raw.timeliness.clientClockBound ?? Math.min(250, Math.floor(keyLeaseMs / 4));
  return { keyLeaseMs, clientClockBoundMs };
}

/** Default group order: hosts in file order, k per group. */
export function defaultGroups(hostIds: readonly string[], k: number): string[][] {
  const groups: string[][] = [];
  for (let i = 0; i < hostIds.length; i += k) groups.push(hostIds.slice(i, i + k));
  return groups;
}

/** Builds the typed view of a raw testbed that passed every check. */
export function toTestbed(raw: RawTestbed, file: string): Testbed {
  const dir = path.dirname(file);
  const at = (p: string) => path.resolve(dir, p);
  const replicaDefaults: ReplicaSettings = {
    checkpointInterval:
      raw.replication?.checkpointInterval ?? DEFAULT_REPLICA_SETTINGS.checkpointInterval,
    batchMax: raw.replication?.batchMax ?? DEFAULT_REPLICA_SETTINGS.batchMax,
    batchesInFlight: raw.replication?.batchesInFlight ?? DEFAULT_REPLICA_SETTINGS.batchesInFlight,
    viewChangeTimeoutMs:
      raw.replication?.viewChangeTimeout ?? DEFAULT_REPLICA_SETTINGS.viewChangeTimeoutMs,
  };
  const k = raw.rejuvenation.k;
  const kPrime = raw.rejuvenation.kPrime;
  const { keyLeaseMs, clientClockBoundMs } = keyLeaseDefaults(raw);
  return {
    file,
    name: raw.name,
    ...(raw.description === undefined ? {} : { description: raw.description }),
    simulated: raw.simulated,
    operatorKeyPath: at(raw.keys.operator),
    ...(raw.keys.clients !== undefined ? { clientKeysDir: at(raw.keys.clients) } : {}),
    timeliness: {
      procMaxMs: raw.timeliness.procMax,
      driftMaxPpm: raw.timeliness.driftMaxPpm,
      clockOffsetBoundMs: raw.timeliness.clockOffsetBound,
      clientClockBoundMs,
    },
    hosts: raw.hosts.map((host) => {
      return {
        id: host.id,
        address: splitHostPort(host.address),
        console: { device: at(host.console.device), baud: host.console.baud },
        stateDir: at(host.stateDir),
        replica: {
          checkpointInterval:
            host.replica?.checkpointInterval ?? replicaDefaults.checkpointInterval,
          batchMax: host.replica?.batchMax ?? replicaDefaults.batchMax,
          batchesInFlight: host.replica?.batchesInFlight ?? replicaDefaults.batchesInFlight,
          viewChangeTimeoutMs:
            host.replica?.viewChangeTimeout ?? replicaDefaults.viewChangeTimeoutMs,
        },
      };
    }),
    boards: raw.boards.map((board) => ({
      id: board.id,
      guards: board.guards,
      stateDir: board.stateDir === undefined ? `/var/lib/smw/${board.id}` : at(board.stateDir),
      ...(board.operatorEndpoint === undefined
        ? {}
        : { operatorEndpoint: splitHostPort(board.operatorEndpoint) }),
      ...(board.metricsEndpoint === undefined
        ? {}
        : { metricsEndpoint: splitHostPort(board.metricsEndpoint) }),
      gpio: board.gpio ?? "sysfs",
      lines: board.lines.map((line) => ({
        role: line.role,
        chip: line.chip,
        offset: line.offset,
        activeLow: line.activeLow,
        initial: line.initial ?? DEFAULT_LEVELS[line.role].initial,
        safe: line.safe ?? DEFAULT_LEVELS[line.role].safe,
        ...(line.label === undefined ? {} : { label: line.label }),
      })),
      control: toBoardControl(board.control, raw.controlNetwork, at),
      hostLink: { device: at(board.hostLink.device), baud: board.hostLink.baud },
      images: {
        os: imagePaths(board.images.os, at),
        sm: imagePaths(board.images.sm, at),
      },
      keys: { signingPath: at(board.keys.signing), linkDir: at(board.keys.linkDir) },
    })),
    controlNetwork: {
      transport: raw.controlNetwork.transport,
      ...(raw.controlNetwork.transport === "serial"
        ? {
            baud: raw.controlNetwork.baud ?? 115200,
            topology: raw.controlNetwork.topology ?? "mesh",
            ...(raw.controlNetwork.hub === undefined ? {} : { hub: raw.controlNetwork.hub }),
          }
        : {}),
      heartbeatMs: raw.controlNetwork.heartbeat,
      silenceBoundMs: raw.controlNetwork.silenceBound,
      deliveryBoundMs: raw.controlNetwork.deliveryBound,
      ...(raw.controlNetwork.joinDeadline === undefined
        ? {}
        : { joinDeadlineMs: raw.controlNetwork.joinDeadline }),
    },
    rejuvenation: {
      k,
      kPrime,
      f: raw.rejuvenation.f ?? k + kPrime,
      ...(raw.rejuvenation.tP === undefined ? {} : { tPMs: raw.rejuvenation.tP }),
      ...(raw.rejuvenation.tD === undefined ? {} : { tDMs: raw.rejuvenation.tD }),
      budgets: stepBudgetsOf(raw),
      keyLeaseMs,
      groups:
        raw.rejuvenation.order ??
        defaultGroups(
          raw.hosts.map((h) => h.id),
          k,
        ),
    },
    tExhaust: toExhaustionModel(raw.tExhaust),
    failsafe: {
      actions: raw.failsafe.actions.map((action): FailsafeAction => {
        if (typeof action === "string") return { kind: action };
        if ("webhook" in action) return { kind: "webhook", url: action.webhook };
        return { kind: "exec", argv: action.exec };
      }),
      authFailureLimit: raw.failsafe.authFailureLimit,
      authFailureWindowMs: raw.failsafe.authFailureWindow,
      onAuthFailures: raw.failsafe.onAuthFailures,
    },
  };
}

export function toExhaustionModel(raw: RawTestbed["tExhaust"]): ExhaustionModel {
  if ("sequential" in raw) return { kind: "sequential", perReplicaMs: raw.sequential };
  if ("parallel" in raw) return { kind: "parallel", allMs: raw.parallel };
  return {
    kind: "table",
    byCountMs: new Map(Object.entries(raw.table).map(([x, ms]) => [Number(x), ms])),
  };
}

function imagePaths(raw: RawTestbed["boards"][number]["images"]["os"], at: (p: string) => string) {
  return { live: at(raw.live), golden: at(raw.golden), manifest: at(raw.manifest) };
}

function toBoardControl(
  raw: RawTestbed["boards"][number]["control"],
  network: RawTestbed["controlNetwork"],
  at: (p: string) => string,
): BoardControl {
  if (network.transport !== "serial") {
    return { kind: "ethernet", address: raw.address ?? "", port: raw.port ?? 0 };
  }
  if ((network.topology ?? "mesh") === "bus") return { kind: "bus", device: at(raw.device ?? "") };
  return {
    kind: "links",
    links: Object.entries(raw.links ?? {}).map(([peer, device]) => ({ peer, device: at(device) })),
  };
}

export function lineOf(board: Board, role: LineRole): Line | undefined {
  return board.lines.find((line) => line.role === role);
}

export function boardGuarding(testbed: Testbed, hostId: string): Board | undefined {
  return testbed.boards.find((board) => board.guards === hostId);
}

/** A path as the testbed file wrote it: relative to the file's folder when inside it. */
export function displayPath(testbed: Testbed, absolute: string): string {
  const relative = path.relative(path.dirname(testbed.file), absolute);
  return relative !== "" && !relative.startsWith("..") && !path.isAbsolute(relative)
    ? relative
    : absolute;
}

/** The 1-based rejuvenation group of a host. */
export function groupOf(testbed: Testbed, hostId: string): number | undefined {
  const index = testbed.rejuvenation.groups.findIndex((group) => group.includes(hostId));
  return index < 0 ? undefined : index + 1;
}

function splitHostPort(text: string): { host: string; port: number } {
  const colon = text.lastIndexOf(":");
  return {
    host: text.slice(0, colon).replace(/^\[(.*)\]$/, "$1"),
    port: Number(text.slice(colon + 1)),
  };
}
