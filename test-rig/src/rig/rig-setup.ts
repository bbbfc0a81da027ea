/**
 * What the rig needs before anything starts: a check that this machine can
 * realise the testbed (socat, free ports), and a fresh run folder with every
 * file the testbed names: operator, board, link and client keys, golden images
 * sealed by the operator, each host's disk (a copy of both images) and empty
 * state folders. Boards' state folders are emptied too, so no fail-safe state
 * latched by an earlier run survives.
 */
import { randomBytes } from "node:crypto";
import { createSocket } from "node:dgram";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import path from "node:path";
import type { Testbed } from "@smw/wiring";
import {
  generateKeyPairFiles,
  generateLinkKeys,
  readPrivateKey,
  readPublicKey,
  sealImage,
  socatUnavailable,
  writeManifest,
} from "@smw/wormhole-board";
import {
  DEFAULT_LOAD,
  loadClientIds,
  MAX_LOAD_CLIENTS,
  PERSONAL_CLIENT_IDS,
} from "../load/client-load.js";
import { encodeSmImage } from "./sm-image.js";

export class RigSetupError extends Error {}

export const OS_IMAGE_SIZE_BYTES = 8 * 1024 * 1024;
export const CLIENT_IDS = loadClientIds(DEFAULT_LOAD.clients);

/** Everything that stops the rig from realising this testbed here, each with what to do. */
export async function rigProblems(
  testbed: Testbed,
  options: { hostPorts?: boolean } = {},
): Promise<string[]> {
  const problems: string[] = [];
  if (!testbed.simulated)
    problems.push(
      `${testbed.file}: the testbed is not marked "simulated: true"; the rig only brings up simulated testbeds (smw rig measure --observe measures a running one)`,
    );
  const needsSocat = testbed.controlNetwork.transport === "serial" || testbed.boards.length > 0;
  const socat = needsSocat ? socatUnavailable() : undefined;
  if (socat !== undefined)
    problems.push(
      `${socat}: the rig makes every serial link (host links, control links) a PTY pair with socat`,
    );
  if (testbed.controlNetwork.transport === "serial" && testbed.controlNetwork.topology !== "mesh")
    problems.push(
      `${testbed.file}: controlNetwork.topology is ${testbed.controlNetwork.topology}; the board daemon runs serial meshes only`,
    );
  // In namespaces of their own, the hosts' ports are not this machine's.
  for (const host of options.hostPorts === false ? [] : testbed.hosts) {
    const inUse = await tcpPortInUse(host.address.host, host.address.port);
    if (inUse)
      problems.push(
        `host ${host.id}'s address ${host.address.host}:${host.address.port} is in use (see: ss -ltnp 'sport = :${host.address.port}'): stop what listens there or change the port in ${testbed.file}`,
      );
  }
  for (const board of testbed.boards) {
    if (board.operatorEndpoint !== undefined) {
      const { host, port } = board.operatorEndpoint;
      if (await tcpPortInUse(host, port))
        problems.push(
          `board ${board.id}'s operator endpoint ${host}:${port} is in use: stop what listens there or change operatorEndpoint in ${testbed.file}`,
        );
    }
    if (board.control.kind === "ethernet") {
      const { address, port } = board.control;
      const inUse =
        testbed.controlNetwork.transport === "udp"
          ? await udpPortInUse(address, port)
          : await tcpPortInUse(address, port);
      if (inUse)
        problems.push(
          `board ${board.id}'s control port ${address}:${port} (${testbed.controlNetwork.transport}) is in use: stop what uses it or change control.port in ${testbed.file}`,
        );
    }
  }
  return problems;
}

function tcpPortInUse(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(true));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(false)));
  });
}

function udpPortInUse(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createSocket("udp4");
    socket.once("error", () => resolve(true));
    socket.bind(port, host, () => socket.close(() => resolve(false)));
  });
}

/** Writes a fresh run: keys, sealed golden images, host disks, empty state folders. */
export function prepareRun(testbed: Testbed, options: { osImageSizeBytes?: number } = {}): void {
  for (const host of testbed.hosts) {
    rmSync(host.stateDir, { recursive: true, force: true });
    mkdirSync(host.stateDir, { recursive: true });
  }
  for (const board of testbed.boards) {
    rmSync(board.stateDir, { recursive: true, force: true });
    mkdirSync(board.stateDir, { recursive: true, mode: 0o700 });
  }
  const operatorDir = path.dirname(testbed.operatorKeyPath);
  const operatorName = path.basename(testbed.operatorKeyPath, ".pub");
  const operator = generateKeyPairFiles(operatorDir, operatorName, { force: true });
  for (const board of testbed.boards) {
    generateKeyPairFiles(
      path.dirname(board.keys.signingPath),
      path.basename(board.keys.signingPath, ".key"),
      { force: true },
    );
  }
  if (testbed.clientKeysDir !== undefined) {
    rmSync(testbed.clientKeysDir, { recursive: true, force: true });
    // Keys for the most clients a load may have, and for people's own commands: the replicas
    // load every key in the folder.
    for (const id of [...loadClientIds(MAX_LOAD_CLIENTS), ...PERSONAL_CLIENT_IDS])
      generateKeyPairFiles(testbed.clientKeysDir, id);
  }
  generateLinkKeys(testbed, { force: true });
  const goldenBytes = {
    os: randomBytes(options.osImageSizeBytes ?? OS_IMAGE_SIZE_BYTES),
    sm: encodeSmImage({ kind: "host-agent" }),
  };
  const privateKey = readPrivateKey(operator.privateKeyPath);
  const publicKey = readPublicKey(operator.publicKeyPath);
  const sealed = new Set<string>();
  for (const board of testbed.boards) {
    for (const image of ["os", "sm"] as const) {
      const paths = board.images[image];
      if (!sealed.has(paths.golden)) {
        sealed.add(paths.golden);
        mkdirSync(path.dirname(paths.golden), { recursive: true });
        writeFileSync(paths.golden, goldenBytes[image]);
        const manifest = sealImage({
          goldenPath: paths.golden,
          privateKey,
          publicKey,
          image,
          chunkSizeBytes: 64 * 1024,
        });
        mkdirSync(path.dirname(paths.manifest), { recursive: true });
        writeManifest(paths.manifest, manifest);
      }
      mkdirSync(path.dirname(paths.live), { recursive: true });
      writeFileSync(paths.live, goldenBytes[image]);
    }
  }
}

/** The serial links the rig makes as PTY pairs: each board's host link and its host's console, and every control-link pair. */
export function ptyPairsOf(testbed: Testbed): Array<{ a: string; b: string; what: string }> {
  const pairs: Array<{ a: string; b: string; what: string }> = [];
  for (const board of testbed.boards) {
    const host = testbed.hosts.find((h) => h.id === board.guards);
    if (host !== undefined)
      pairs.push({
        a: board.hostLink.device,
        b: host.console.device,
        what: `host link ${board.id}-${host.id}`,
      });
  }
  const devices = new Map<string, string>();
  for (const board of testbed.boards) {
    if (board.control.kind !== "links") continue;
    for (const { peer, device } of board.control.links) devices.set(`${board.id}>${peer}`, device);
  }
  for (const [key, device] of devices) {
    const [from, to] = key.split(">") as [string, string];
    if (from > to) continue;
    const back = devices.get(`${to}>${from}`);
    if (back !== undefined) pairs.push({ a: device, b: back, what: `control link ${from}-${to}` });
  }
  return pairs;
}
