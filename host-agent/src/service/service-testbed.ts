/**
 * A testbed for the replicated service alone, on loopback, in a temporary
 * folder: n hosts with their addresses and state folders, a board signing key
 * per host (the boards vouch for replica keys), and client keys. For tests,
 * benchmarks and trying the service out; the boards' own parts (lines,
 * images, links) are described but not brought up.
 */
import { generateKeyPairSync } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { formatProblem, loadTestbedFile, type Testbed } from "@smw/wiring";

export interface ServiceTestbed {
  dir: string;
  file: string;
  testbed: Testbed;
  clientIds: string[];
  remove(): void;
}

export function writeKeyPair(dir: string, name: string): void {
  mkdirSync(dir, { recursive: true });
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  writeFileSync(
    path.join(dir, `${name}.key`),
    privateKey.export({ type: "pkcs8", format: "pem" }),
    {
      mode: 0o600,
    },
  );
  writeFileSync(path.join(dir, `${name}.pub`), publicKey.export({ type: "spki", format: "pem" }));
}

export function makeServiceTestbed(options: {
  n: number;
  kPrime: number;
  k: number;
  basePort: number;
  clients?: number;
  checkpointInterval?: number;
  batchMax?: number;
  batchesInFlight?: number;
  viewChangeTimeout?: string;
}): ServiceTestbed {
  const dir = mkdtempSync(path.join(tmpdir(), "smw-service-"));
  const hosts = Array.from({ length: options.n }, (_, i) => `h${i + 1}`);
  const clientIds = Array.from({ length: options.clients ?? 1 }, (_, i) => `client${i + 1}`);
  const lines = [
    "smw: 1",
    `name: service-${options.n}`,
    "simulated: true",
    "keys: { operator: keys/operator.pub, clients: keys/clients }",
    "replication:",
    `  checkpointInterval: ${options.checkpointInterval ?? 64}`,
    `  batchMax: ${options.batchMax ?? 16}`,
    ...(options.batchesInFlight !== undefined
      ? [`  batchesInFlight: ${options.batchesInFlight}`]
      : []),
    `  viewChangeTimeout: ${options.viewChangeTimeout ?? "1s"}`,
    "hosts:",
    ...hosts.map(
      (h, i) =>
        `  - { id: ${h}, address: "127.0.0.1:${options.basePort + i}", console: { device: pty/${h}-host }, stateDir: hosts/${h}/state }`,
    ),
    "boards:",
  ];
  for (const [i, h] of hosts.entries()) {
    lines.push(
      `  - id: b${i + 1}`,
      `    guards: ${h}`,
      `    stateDir: boards/b${i + 1}`,
      `    lines: [{ role: reset, chip: sim-b${i + 1}, offset: 0, activeLow: true }]`,
      `    control: { address: 127.0.0.1, port: ${options.basePort + 100 + i} }`,
      `    hostLink: { device: pty/${h}-board }`,
      "    images:",
      `      os: { live: hosts/${h}/os.img, golden: golden/os.img, manifest: golden/os.json }`,
      `      sm: { live: hosts/${h}/sm.img, golden: golden/sm.img, manifest: golden/sm.json }`,
      `    keys: { signing: keys/b${i + 1}/board.key, linkDir: keys/b${i + 1}/link }`,
    );
  }
  lines.push(
    "controlNetwork: { transport: udp }",
    "rejuvenation:",
    `  k: ${Math.max(1, options.k)}`,
    `  kPrime: ${options.kPrime}`,
    "  tP: 10m",
    "  tD: 9m",
    "  budgets: { tShutdown: 1s, tCheckcode: 1s, tRestorecode: 1s, tBoot: 2s, tTransfer: 5s }",
    "tExhaust: { sequential: 1d }",
    "failsafe: { actions: [hold-reset] }",
  );
  const file = path.join(dir, "testbed.yaml");
  writeFileSync(file, `${lines.join("\n")}\n`);
  writeKeyPair(path.join(dir, "keys"), "operator");
  for (let i = 1; i <= options.n; i++) writeKeyPair(path.join(dir, "keys", `b${i}`), "board");
  for (const c of clientIds) writeKeyPair(path.join(dir, "keys", "clients"), c);
  const loaded = loadTestbedFile(file, { files: { kind: "none" } });
  if (!loaded.ok) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(loaded.problems.map(formatProblem).join("\n"));
  }
  return {
    dir,
    file,
    testbed: loaded.testbed,
    clientIds,
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
