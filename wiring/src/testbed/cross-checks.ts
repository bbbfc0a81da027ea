/**
 * Checks that span several parts of a testbed file: references between
 * boards and hosts, the wiring of each board, the control network, the group
 * order. Each finding names the path of the value at fault.
 */
import path from "node:path";
import { formatDurationMs } from "../duration.js";
import { tableMonotonicityProblem } from "../plan/exhaustion-model.js";
import { defaultJoinLeadMs } from "../plan/planner.js";
import { formatPath } from "./problem.js";
import type { RawTestbed } from "./schema.js";
import {
  DEFAULT_LEVELS,
  defaultGroups,
  keyLeaseDefaults,
  stepBudgetsOf,
  toExhaustionModel,
} from "./testbed.js";

export interface Finding {
  path: Array<string | number>;
  message: string;
}

export function crossCheck(raw: RawTestbed): Finding[] {
  const findings: Finding[] = [];
  const add = (path: Array<string | number>, message: string) => findings.push({ path, message });

  const hostIds = uniqueIds(raw.hosts, "hosts", "host", add);
  const boardIds = uniqueIds(raw.boards, "boards", "board", add);

  checkGuards(raw, hostIds, add);
  raw.boards.forEach((board, b) => {
    checkLines(board, b, add);
  });
  checkControlNetwork(raw, boardIds, add);
  checkHostLinks(raw, add);
  checkImages(raw, add);
  checkGroups(raw, hostIds, add);
  checkUniqueAddresses(raw, add);
  checkSigningKeys(raw, add);
  checkFailsafe(raw, add);
  checkTimeliness(raw, add);
  checkKeyLease(raw, add);
  checkJoinDeadline(raw, add);

  if ("table" in raw.tExhaust) {
    const model = toExhaustionModel(raw.tExhaust);
    if (model.kind === "table") {
      const problem = tableMonotonicityProblem(model.byCountMs);
      if (problem !== undefined) add(["tExhaust", "table"], problem);
    }
  }
  return findings;
}

type Add = (path: Array<string | number>, message: string) => void;

function uniqueIds(
  items: ReadonlyArray<{ id: string }>,
  section: string,
  noun: string,
  add: Add,
): Set<string> {
  const seen = new Map<string, number>();
  items.forEach((item, i) => {
    const first = seen.get(item.id);
    if (first !== undefined) {
      add([section, i, "id"], `${noun} id "${item.id}" is already used by ${section}[${first}]`);
    } else {
      seen.set(item.id, i);
    }
  });
  return new Set(seen.keys());
}

function checkGuards(raw: RawTestbed, hostIds: Set<string>, add: Add): void {
  const guardedBy = new Map<string, number[]>();
  raw.boards.forEach((board, b) => {
    if (!hostIds.has(board.guards)) {
      add(
        ["boards", b, "guards"],
        `board "${board.id}" guards host "${board.guards}", which is not among hosts (${listOf(hostIds)})`,
      );
      return;
    }
    guardedBy.set(board.guards, [...(guardedBy.get(board.guards) ?? []), b]);
  });
  raw.hosts.forEach((host, h) => {
    const boards = guardedBy.get(host.id) ?? [];
    if (boards.length === 0) {
      add(
        ["hosts", h, "id"],
        `host "${host.id}" is guarded by no board; every host needs exactly one`,
      );
    }
    for (const b of boards.slice(1)) {
      add(
        ["boards", b, "guards"],
        `host "${host.id}" is already guarded by board "${raw.boards[boards[0] as number]?.id}"; every host has exactly one board`,
      );
    }
  });
}

function checkLines(board: RawTestbed["boards"][number], b: number, add: Add): void {
  const byRole = new Map<string, number>();
  const byPin = new Map<string, number>();
  board.lines.forEach((line, l) => {
    const where = ["boards", b, "lines", l];
    const earlierRole = byRole.get(line.role);
    if (earlierRole !== undefined) {
      add(
        [...where, "role"],
        `board "${board.id}" already has a ${line.role} line (lines[${earlierRole}]); each role is wired once`,
      );
    } else {
      byRole.set(line.role, l);
    }
    const pin = `${line.chip}/${line.offset}`;
    const earlierPin = byPin.get(pin);
    if (earlierPin !== undefined) {
      add(
        [...where, "offset"],
        `chip "${line.chip}" line ${line.offset} is already used by lines[${earlierPin}] of board "${board.id}"`,
      );
    } else {
      byPin.set(pin, l);
    }
    const safe = line.safe ?? DEFAULT_LEVELS[line.role].safe;
    const initial = line.initial ?? DEFAULT_LEVELS[line.role].initial;
    if (line.role === "reset" && safe !== "active") {
      add(
        [...where, "safe"],
        "the reset line's safe level must be active: a board that stops must hold its host in reset",
      );
    }
    if (line.role === "write-protect") {
      if (safe !== "active") {
        add([...where, "safe"], "the write-protect line's safe level must be active (protected)");
      }
      if (initial !== "active") {
        add(
          [...where, "initial"],
          "the write-protect line's initial level must be active: the disk is writable only inside a restore",
        );
      }
    }
  });
  if (!byRole.has("reset")) {
    add(["boards", b, "lines"], `board "${board.id}" has no reset line; it needs exactly one`);
  }
}

function checkControlNetwork(raw: RawTestbed, boardIds: Set<string>, add: Add): void {
  const network = raw.controlNetwork;
  if (network.transport === "serial") {
    const topology = network.topology ?? "mesh";
    if (network.hub !== undefined && topology !== "star") {
      add(["controlNetwork", "hub"], `hub is for the star topology, not ${topology}`);
    }
    if (topology === "star") {
      if (network.hub === undefined) {
        add(["controlNetwork"], "a star topology names its hub board: hub: <board id>");
      } else if (!boardIds.has(network.hub)) {
        add(["controlNetwork", "hub"], `hub "${network.hub}" is not a board (${listOf(boardIds)})`);
      }
    }
    raw.boards.forEach((board, b) => {
      const where = ["boards", b, "control"];
      if (board.control.address !== undefined || board.control.port !== undefined) {
        add(where, "address and port are for an Ethernet control network; this one is serial");
      }
      if (topology === "bus") {
        if (board.control.device === undefined) {
          add(where, "on a serial bus each board names its device: device: /dev/ttyUSB0");
        }
        if (board.control.links !== undefined) {
          add(
            [...where, "links"],
            "links are for mesh, ring and star topologies; on a bus use device",
          );
        }
        return;
      }
      if (board.control.device !== undefined) {
        add(
          [...where, "device"],
          `device is for the bus topology; a ${topology} names links per peer`,
        );
      }
      if (board.control.links === undefined) {
        add(where, `a serial ${topology} needs links: { <peer board id>: <device> }`);
      }
    });
    if (topology !== "bus") checkSerialLinks(raw, boardIds, topology, network.hub, add);
    return;
  }
  if (network.baud !== undefined)
    add(["controlNetwork", "baud"], "baud is for serial control links");
  if (network.topology !== undefined) {
    add(["controlNetwork", "topology"], "topology is for serial control links");
  }
  if (network.hub !== undefined) add(["controlNetwork", "hub"], "hub is for serial control links");
  const endpoints = new Map<string, number>();
  raw.boards.forEach((board, b) => {
    const where = ["boards", b, "control"];
    if (board.control.links !== undefined || board.control.device !== undefined) {
      add(where, `links and device are for serial control links; this one is ${network.transport}`);
    }
    if (board.control.address === undefined || board.control.port === undefined) {
      add(
        where,
        `a ${network.transport.toUpperCase()} control network needs address and port on every board`,
      );
      return;
    }
    const endpoint = `${board.control.address}:${board.control.port}`;
    const earlier = endpoints.get(endpoint);
    if (earlier !== undefined) {
      add(
        where,
        `${endpoint} is already the control endpoint of board "${raw.boards[earlier]?.id}"`,
      );
    } else {
      endpoints.set(endpoint, b);
    }
  });
}

function checkSerialLinks(
  raw: RawTestbed,
  boardIds: Set<string>,
  topology: "mesh" | "ring" | "star",
  hub: string | undefined,
  add: Add,
): void {
  const peersOf = new Map<string, Set<string>>();
  raw.boards.forEach((board, b) => {
    const peers = new Set<string>();
    for (const peer of Object.keys(board.control.links ?? {})) {
      const where = ["boards", b, "control", "links", peer];
      if (peer === board.id) add(where, "a board does not link to itself");
      else if (!boardIds.has(peer))
        add(where, `peer "${peer}" is not a board (${listOf(boardIds)})`);
      else peers.add(peer);
    }
    peersOf.set(board.id, peers);
  });
  raw.boards.forEach((board, b) => {
    for (const peer of peersOf.get(board.id) ?? []) {
      if (!peersOf.get(peer)?.has(board.id)) {
        add(
          ["boards", b, "control", "links", peer],
          `board "${board.id}" links to "${peer}", but "${peer}" has no link back to "${board.id}": a serial link has two ends`,
        );
      }
    }
  });
  if (raw.boards.length < 2) return;
  raw.boards.forEach((board, b) => {
    if (board.control.links === undefined) return;
    const peers = peersOf.get(board.id) ?? new Set<string>();
    const where = ["boards", b, "control", "links"];
    if (topology === "mesh") {
      const missing = [...boardIds].filter((other) => other !== board.id && !peers.has(other));
      if (missing.length > 0) {
        add(
          where,
          `in a mesh every board links to every other; "${board.id}" lacks ${missing.join(", ")}`,
        );
      }
    } else if (topology === "star" && hub !== undefined && boardIds.has(hub)) {
      if (board.id === hub) {
        const missing = [...boardIds].filter((other) => other !== hub && !peers.has(other));
        if (missing.length > 0)
          add(where, `the star's hub "${hub}" lacks links to ${missing.join(", ")}`);
      } else if (peers.size !== 1 || !peers.has(hub)) {
        add(where, `in a star, "${board.id}" links only to the hub "${hub}"`);
      }
    } else if (topology === "ring" && raw.boards.length > 2 && peers.size !== 2) {
      add(
        where,
        `in a ring every board links to exactly two neighbours; "${board.id}" has ${peers.size}`,
      );
    }
  });
  if (topology === "ring" && raw.boards.length > 2) {
    // Two neighbours each is not enough: the links must form one cycle, not several.
    const start = raw.boards[0]?.id as string;
    const reached = new Set([start]);
    const queue = [start];
    while (queue.length > 0) {
      for (const peer of peersOf.get(queue.pop() as string) ?? []) {
        if (!reached.has(peer)) {
          reached.add(peer);
          queue.push(peer);
        }
      }
    }
    if (reached.size !== boardIds.size) {
      add(
        ["controlNetwork", "topology"],
        `the ring's links do not connect every board: ${[...boardIds].filter((id) => !reached.has(id)).join(", ")} cannot be reached from ${start}`,
      );
    }
  }
}

function checkHostLinks(raw: RawTestbed, add: Add): void {
  raw.boards.forEach((board, b) => {
    const h = raw.hosts.findIndex((host) => host.id === board.guards);
    const host = raw.hosts[h];
    if (host === undefined) return;
    if (host.console.baud !== board.hostLink.baud) {
      add(
        ["boards", b, "hostLink", "baud"],
        `board "${board.id}" talks to host "${host.id}" at ${board.hostLink.baud} baud, but the host's console runs at ${host.console.baud} (hosts[${h}].console.baud)`,
      );
    }
  });
  if (!raw.simulated) return;
  // On one machine every serial endpoint is a distinct file; on real boards
  // /dev/ttyUSB0 on two boards are two different ports.
  const seen = new Map<string, string>();
  const claim = (device: string, path: Array<string | number>) => {
    const earlier = seen.get(device);
    if (earlier !== undefined) add(path, `device "${device}" is already used by ${earlier}`);
    else seen.set(device, formatPath(path));
  };
  raw.hosts.forEach((host, h) => {
    claim(host.console.device, ["hosts", h, "console", "device"]);
  });
  raw.boards.forEach((board, b) => {
    claim(board.hostLink.device, ["boards", b, "hostLink", "device"]);
    for (const [peer, device] of Object.entries(board.control.links ?? {})) {
      claim(device, ["boards", b, "control", "links", peer]);
    }
  });
}

function checkImages(raw: RawTestbed, add: Add): void {
  raw.boards.forEach((board, b) => {
    const { os, sm } = board.images;
    for (const [name, image] of [
      ["os", os],
      ["sm", sm],
    ] as const) {
      if (image.live === image.golden) {
        add(
          ["boards", b, "images", name, "golden"],
          "the golden copy must be a different medium from the live image it restores",
        );
      }
    }
    if (os.live === sm.live) {
      add(
        ["boards", b, "images", "sm", "live"],
        `the sm image is the same as the os image (${os.live})`,
      );
    }
  });
}

function checkGroups(raw: RawTestbed, hostIds: Set<string>, add: Add): void {
  const { k, order } = raw.rejuvenation;
  const groups = order ?? defaultGroups([...hostIds], k);
  const placed = new Map<string, string>();
  groups.forEach((group, g) => {
    if (group.length > k) {
      add(
        ["rejuvenation", "order", g],
        `group ${g + 1} holds ${group.length} hosts but k = ${k}: never more than k hosts are down at once`,
      );
    }
    group.forEach((hostId, i) => {
      const where = ["rejuvenation", "order", g, i];
      if (!hostIds.has(hostId)) {
        add(where, `"${hostId}" is not a host (${listOf(hostIds)})`);
        return;
      }
      const earlier = placed.get(hostId);
      if (earlier !== undefined)
        add(where, `host "${hostId}" is already in ${earlier}; each host is in one group`);
      else placed.set(hostId, `group ${g + 1}`);
    });
  });
  const missing = [...hostIds].filter((id) => !placed.has(id));
  if (missing.length > 0) {
    add(
      ["rejuvenation", "order"],
      `the groups leave out ${missing.join(", ")}; every host is rejuvenated`,
    );
  }
}

function checkUniqueAddresses(raw: RawTestbed, add: Add): void {
  const seen = new Map<string, number>();
  raw.hosts.forEach((host, h) => {
    const earlier = seen.get(host.address);
    if (earlier !== undefined) {
      add(
        ["hosts", h, "address"],
        `${host.address} is already the address of host "${raw.hosts[earlier]?.id}"`,
      );
    } else {
      seen.set(host.address, h);
    }
  });
}

/**
 * Every host reads every board's public key from that board's signing-key path (with `.pub`) to
 * check certificates: two boards with one path would have one key there, and either one's
 * certificates fail at every host or (one key copied to both) each certifies the other's host.
 */
function checkSigningKeys(raw: RawTestbed, add: Add): void {
  const seen = new Map<string, number>();
  raw.boards.forEach((board, b) => {
    const key = path.posix.normalize(board.keys.signing);
    const earlier = seen.get(key);
    if (earlier !== undefined)
      add(
        ["boards", b, "keys", "signing"],
        `${board.keys.signing} is already the signing key of board "${raw.boards[earlier]?.id}": each board needs a path of its own, as every host reads each board's public key beside it`,
      );
    else seen.set(key, b);
  });
}

function checkFailsafe(raw: RawTestbed, add: Add): void {
  raw.failsafe.actions.forEach((action, a) => {
    const role = action === "alarm-line" ? "alarm" : action === "power-off" ? "power" : undefined;
    if (role === undefined) return;
    const lacking = raw.boards.filter((board) => !board.lines.some((line) => line.role === role));
    if (lacking.length > 0) {
      add(
        ["failsafe", "actions", a],
        `${action} needs ${role === "alarm" ? "an" : "a"} ${role} line on every board; ${lacking.map((board) => board.id).join(", ")} ha${lacking.length === 1 ? "s" : "ve"} none`,
      );
    }
  });
}

function checkTimeliness(raw: RawTestbed, add: Add): void {
  const { heartbeat, silenceBound, deliveryBound } = raw.controlNetwork;
  if (silenceBound <= heartbeat + deliveryBound) {
    add(
      ["controlNetwork", "silenceBound"],
      `silenceBound (${formatDurationMs(silenceBound)}) must exceed heartbeat + deliveryBound (${formatDurationMs(heartbeat + deliveryBound)}), or a live peer would be declared silent`,
    );
  }
}

/**
 * The shutdown step waits for the last lease on its host's key to lapse before it resets the host
 * (so that no client counts a key whose host the adversary may leave at that reset): a lease, and
 * P1's processing delay, must fit T_shutdown. A client counts a lease only while it has the client
 * clock bound left by its own clock, which may run ahead by the bound, and a lease is renewed four
 * times a lease: the bound must leave room.
 */
function checkKeyLease(raw: RawTestbed, add: Add): void {
  const r = raw.rejuvenation;
  const { keyLeaseMs, clientClockBoundMs } = keyLeaseDefaults(raw);
  const procMaxMs = raw.timeliness.procMax;
  if (keyLeaseMs + procMaxMs > r.budgets.tShutdown)
    add(
      ["rejuvenation", "keyLease"],
      `keyLease (${formatDurationMs(keyLeaseMs)}) plus timeliness.procMax (${formatDurationMs(procMaxMs)}) must fit rejuvenation.budgets.tShutdown (${formatDurationMs(r.budgets.tShutdown)}): the shutdown step resets its host only once the last lease on the host's key lapsed; shorten the lease or raise tShutdown`,
    );
  if (clientClockBoundMs > keyLeaseMs / 4)
    add(
      ["timeliness", "clientClockBound"],
      `clientClockBound (${formatDurationMs(clientClockBoundMs)}) must be at most a quarter of rejuvenation.keyLease (${formatDurationMs(keyLeaseMs)}): a client whose clock is ahead by the bound counts a lease only while it has twice the bound left, and a lease is renewed once a quarter lease`,
    );
}

/**
 * Boards propose period 0 a join lead ahead (`defaultJoinLeadMs`: every host's first boot over
 * before it) and commit a silence bound before it; joining for longer than the deadline is a
 * fail-safe trigger. The deadline leaves the lead twice over, for boards started up to a lead apart.
 */
function checkJoinDeadline(raw: RawTestbed, add: Add): void {
  const leadMs = defaultJoinLeadMs({
    silenceBoundMs: raw.controlNetwork.silenceBound,
    keyLeaseMs: keyLeaseDefaults(raw).keyLeaseMs,
    budgets: stepBudgetsOf(raw),
  });
  const explicit = raw.controlNetwork.joinDeadline;
  const deadlineMs = explicit ?? raw.rejuvenation.tP;
  if (deadlineMs === undefined || deadlineMs >= 2 * leadMs) return;
  add(
    explicit === undefined ? ["rejuvenation", "tP"] : ["controlNetwork", "joinDeadline"],
    `${explicit === undefined ? `the join deadline (by default tP, ${formatDurationMs(deadlineMs)})` : `joinDeadline (${formatDurationMs(deadlineMs)})`} must be at least twice the boards' join lead (${formatDurationMs(leadMs)}: a silence bound, a key lease, both image checks and twice tBoot, so that every host's first boot is over before period 0): boards started up to a lead apart would fail safe before they agree; ${explicit === undefined ? "set controlNetwork.joinDeadline" : "raise it"}`,
  );
}

function listOf(ids: Set<string>): string {
  return ids.size === 0 ? "none defined" : [...ids].join(", ");
}
