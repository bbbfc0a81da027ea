/**
 * A complete simulated 6-board testbed in a temporary folder, for the board
 * daemon tests and benchmarks: the testbed file, operator and board keys, pairwise link keys,
 * sealed golden images and live copies, and socat PTY pairs for every host
 * link (and, in serial mode, every control link).
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { formatProblem, loadTestbedFile, type Testbed } from "@smw/wiring";
import { generateLinkKeys } from "../link/link-keys.js";
import { generateKeyPairFiles, readPrivateKey, readPublicKey } from "../media/keys.js";
import { writeManifest } from "../media/manifest.js";
import { sealImage } from "../media/seal.js";
import { freePortBand } from "./free-ports.js";
import { ptyPair } from "./socat.js";

export interface Testbed6 {
  dir: string;
  file: string;
  testbed: Testbed;
  close(): Promise<void>;
}

/**
 * `replaced`: lines of the testbed file, exactly as written below, and what each is replaced by
 * (a test's own fail-safe actions or budgets); a line that is not there is an error.
 */
/** Ports a six-board local testbed uses from its base port on (+1..6, +51..56, +101..106). */
export const TESTBED6_PORT_SPAN = 107;

export async function makeTestbed6(
  transport: "udp" | "serial",
  /** Its ports from here on (`TESTBED6_PORT_SPAN` of them); "free": a band found free (`freePortBand`). */
  base: number | "free",
  extra = "",
  replaced: Readonly<Record<string, string>> = {},
): Promise<Testbed6> {
  const basePort = base === "free" ? await freePortBand(TESTBED6_PORT_SPAN) : base;
  const dir = mkdtempSync(path.join(tmpdir(), `smw-6-${transport}-`));
  const boards = [1, 2, 3, 4, 5, 6].map((i) => `b${i}`);
  const closers: Array<() => Promise<void>> = [];
  const lines: string[] = [
    "smw: 1",
    `name: six-${transport}`,
    "simulated: true",
    "keys: { operator: keys/operator.pub }",
    "timeliness: { procMax: 200ms, driftMaxPpm: 100, clockOffsetBound: 10ms }",
    "hosts:",
  ];
  for (let i = 1; i <= 6; i++) {
    lines.push(
      `  - { id: h${i}, address: "127.0.0.1:${basePort + 100 + i}", console: { device: pty/h${i}-host }, stateDir: hosts/h${i}/state }`,
    );
  }
  lines.push("boards:");
  for (let i = 1; i <= 6; i++) {
    const b = `b${i}`;
    lines.push(
      `  - id: ${b}`,
      `    guards: h${i}`,
      `    stateDir: boards/${b}`,
      `    operatorEndpoint: "127.0.0.1:${basePort + 50 + i}"`,
    );
    lines.push("    lines:");
    lines.push(`      - { role: reset, chip: sim-${b}, offset: 0, activeLow: true }`);
    lines.push(`      - { role: write-protect, chip: sim-${b}, offset: 1 }`);
    lines.push(`      - { role: alarm, chip: sim-${b}, offset: 2 }`);
    if (transport === "udp") {
      lines.push(`    control: { address: 127.0.0.1, port: ${basePort + i} }`);
    } else {
      lines.push("    control:", "      links:");
      for (const peer of boards)
        if (peer !== b) lines.push(`        ${peer}: pty/ctl-${b}-${peer}`);
    }
    lines.push(`    hostLink: { device: pty/h${i}-board }`);
    lines.push("    images:");
    for (const image of ["os", "sm"]) {
      lines.push(
        `      ${image}: { live: hosts/h${i}/${image}.img, golden: golden/${image}.img, manifest: golden/${image}.json }`,
      );
    }
    lines.push(`    keys: { signing: keys/${b}/board.key, linkDir: keys/${b}/link }`);
  }
  lines.push(
    "controlNetwork:",
    `  transport: ${transport}`,
    ...(transport === "serial" ? ["  topology: mesh"] : []),
    "  heartbeat: 100ms",
    "  silenceBound: 600ms",
    // The tests run all six boards in one process, beside the rest of the suite, on two cores: in
    // two runs of npm test a heartbeat arrived 44 and 45 ms after its stamp, before its board had
    // an echo to tell clock from network, and 20 ms took the rig to fail-safe. Offsets the tests
    // plant (80 ms) stay well over this bound plus the clock bound.
    "  deliveryBound: 50ms",
    "rejuvenation:",
    "  k: 1",
    "  kPrime: 1",
    // T_localexec = 1.5 s; six groups with hand-offs and procMax, and the clock offset: T_Xmax = 10.51 s.
    // T_shutdown holds the wait for the last key lease (100 ms: T_shutdown less procMax) to lapse.
    "  tP: 11500ms",
    "  tD: 11s",
    "  budgets: { tShutdown: 300ms, tCheckcode: 150ms, tRestorecode: 200ms, tBoot: 250ms, tTransfer: 250ms }",
    "tExhaust: { sequential: 1h }",
    "failsafe:",
    "  actions: [hold-reset, alarm-line]",
    // Its drills show forged frames taking the testbed to fail-safe: the stricter policy.
    "  onAuthFailures: fail-safe",
    extra,
  );
  for (const [line, by] of Object.entries(replaced)) {
    const at = lines.indexOf(line);
    if (at < 0) {
      rmSync(dir, { recursive: true, force: true });
      throw new RangeError(`makeTestbed6: no line ${JSON.stringify(line)} to replace`);
    }
    lines[at] = by;
  }
  const file = path.join(dir, "testbed.yaml");
  writeFileSync(file, `${lines.join("\n")}\n`);

  // Whatever fails from here on, nothing is left running or lying around.
  const cleanUp = async () => {
    await Promise.all(closers.map((close) => close()));
    rmSync(dir, { recursive: true, force: true });
  };
  let testbed: Testbed;
  try {
    // Keys: operator, one signing key per board, pairwise link keys.
    const operator = generateKeyPairFiles(path.join(dir, "keys"), "operator");
    for (const b of boards) generateKeyPairFiles(path.join(dir, "keys", b), "board");
    // Images: golden copies sealed by the operator, a live copy per host.
    mkdirSync(path.join(dir, "golden"), { recursive: true });
    mkdirSync(path.join(dir, "pty"), { recursive: true });
    for (const image of ["os", "sm"]) {
      const golden = path.join(dir, "golden", `${image}.img`);
      const bytes = randomBytes(64 * 1024);
      writeFileSync(golden, bytes);
      const manifest = sealImage({
        goldenPath: golden,
        privateKey: readPrivateKey(operator.privateKeyPath),
        publicKey: readPublicKey(operator.publicKeyPath),
        image,
        chunkSizeBytes: 4096,
      });
      writeManifest(path.join(dir, "golden", `${image}.json`), manifest);
      for (let i = 1; i <= 6; i++) {
        mkdirSync(path.join(dir, "hosts", `h${i}`), { recursive: true });
        writeFileSync(path.join(dir, "hosts", `h${i}`, `${image}.img`), bytes);
      }
    }
    for (let i = 1; i <= 6; i++) {
      const pair = await ptyPair(
        path.join(dir, "pty", `h${i}-board`),
        path.join(dir, "pty", `h${i}-host`),
      );
      closers.push(pair.close);
    }
    if (transport === "serial") {
      for (const [n, a] of boards.entries()) {
        for (const b of boards.slice(n + 1)) {
          const pair = await ptyPair(
            path.join(dir, "pty", `ctl-${a}-${b}`),
            path.join(dir, "pty", `ctl-${b}-${a}`),
          );
          closers.push(pair.close);
        }
      }
    }
    const loaded = loadTestbedFile(file);
    if (!loaded.ok) throw new Error(loaded.problems.map(formatProblem).join("\n"));
    generateLinkKeys(loaded.testbed);
    const checked = loadTestbedFile(file, { files: { kind: "all" } });
    if (!checked.ok) throw new Error(checked.problems.map(formatProblem).join("\n"));
    testbed = checked.testbed;
  } catch (error) {
    await cleanUp();
    throw error;
  }
  return { dir, file, testbed, close: cleanUp };
}
