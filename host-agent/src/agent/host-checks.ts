/**
 * `smw host doctor`: whether this machine can run a payload host of the testbed, checked before
 * its board first releases it (a host that cannot boot its agent costs a fail-safe, not an error
 * message): Node, where the code loads from (the bundle and its code cache, or why not), the
 * console's serial binding and device, the state folder, the keys its replica reads, and its
 * replica's address.
 */
import { accessSync, constants, statSync } from "node:fs";
import { createServer } from "node:net";
import path from "node:path";
import type { Host, Testbed } from "@smw/wiring";
import type { NativeModule } from "@smw/wiring/cli";
import { boardPublicKeys, clientPublicKeys } from "../service/service-keys.js";

export type Verdict = "ok" | "warn" | "fail";

export interface HostCheck {
  name: string;
  verdict: Verdict;
  detail: string;
}

/** What the checks ask of the machine: the real one, or a test's. */
export interface HostDoctorEnvironment {
  nodeVersion: string;
  /** How this program's code was loaded (`CliIo.loadedFrom`); undefined: not said. */
  loadedFrom?: string;
  /** Whether a package with a native binding loads here. */
  loads(module: NativeModule): { ok: true } | { ok: false; why: string };
  /** Whether this machine can listen at the address (closed again at once). */
  canListen(host: string, port: number): Promise<{ ok: true } | { ok: false; code: string }>;
}

export const MIN_NODE_MAJOR = 20;

export function listenProbe(
  host: string,
  port: number,
): Promise<{ ok: true } | { ok: false; code: string }> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", (error: NodeJS.ErrnoException) =>
      resolve({ ok: false, code: error.code ?? error.message }),
    );
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve({ ok: true })));
  });
}

export async function hostChecks(
  testbed: Testbed,
  host: Host,
  env: HostDoctorEnvironment,
  serialport: NativeModule,
): Promise<HostCheck[]> {
  const checks: HostCheck[] = [];
  const add = (name: string, verdict: Verdict, detail: string) =>
    checks.push({ name, verdict, detail });

  const major = Number(env.nodeVersion.replace(/^v/, "").split(".")[0]);
  add(
    "node",
    major >= MIN_NODE_MAJOR ? "ok" : "fail",
    major >= MIN_NODE_MAJOR
      ? `Node ${env.nodeVersion}`
      : `Node ${env.nodeVersion}: smw needs Node ${MIN_NODE_MAJOR} or newer`,
  );

  // The agent and its replica start at every boot; where their code comes from is most of it.
  if (env.loadedFrom !== undefined) {
    const used = env.loadedFrom === "host bundle, code cache used";
    add(
      "code",
      used ? "ok" : "warn",
      used
        ? "the host bundle, with V8's code cache: the agent and its replica start fastest"
        : env.loadedFrom === "modules"
          ? "the module tree: the host bundle is missing or older than its sources (npm run build makes it); every boot starts slower"
          : `${env.loadedFrom}; every boot starts slower`,
    );
  }

  const binding = env.loads(serialport);
  add(
    "serial",
    binding.ok ? "ok" : "fail",
    binding.ok ? "serialport's native binding loaded (the console to the board)" : binding.why,
  );

  const [verdict, detail] = consoleVerdict(host.console.device);
  add(
    "console",
    verdict,
    verdict === "fail" && testbed.simulated
      ? `${detail}; on a simulated testbed the rig makes it as it starts its hosts`
      : detail,
  );
  add("state", ...stateVerdict(host.stateDir));

  try {
    const boards = boardPublicKeys(testbed);
    const clients = clientPublicKeys(testbed);
    add(
      "keys",
      clients.size > 0 ? "ok" : "warn",
      `${boards.size} boards' public keys${clients.size > 0 ? `, ${clients.size} clients' public keys` : "; no client keys: no client can be served"}`,
    );
  } catch (error) {
    add("keys", "fail", (error as Error).message);
  }

  const { host: address, port } = host.address;
  const listen = await env.canListen(address, port);
  add(
    "address",
    listen.ok ? "ok" : "fail",
    listen.ok
      ? `the replica can listen at ${address}:${port}`
      : listen.code === "EADDRINUSE"
        ? `${address}:${port} is in use (a replica already running here, or another program)`
        : listen.code === "EADDRNOTAVAIL"
          ? `${address} is not an address of this machine (the testbed's address for ${host.id})`
          : `cannot listen at ${address}:${port}: ${listen.code}`,
  );
  return checks;
}

function consoleVerdict(device: string): [Verdict, string] {
  let stat: ReturnType<typeof statSync>;
  try {
    stat = statSync(device);
  } catch {
    return [
      "fail",
      `${device}: not found (the host's console to its board: the testbed's console.device)`,
    ];
  }
  if (!stat.isCharacterDevice())
    return ["fail", `${device}: not a character device (a serial line or PTY is)`];
  try {
    accessSync(device, constants.R_OK | constants.W_OK);
  } catch {
    return ["fail", `${device}: not readable and writable by this user (the dialout group?)`];
  }
  return ["ok", `${device}: a character device, readable and writable`];
}

function stateVerdict(stateDir: string): [Verdict, string] {
  // The agent makes the folder: its nearest existing ancestor must take it.
  let dir = stateDir;
  while (true) {
    try {
      if (!statSync(dir).isDirectory()) return ["fail", `${dir}: not a folder (on ${stateDir})`];
      accessSync(dir, constants.W_OK);
      return [
        "ok",
        dir === stateDir ? `${stateDir}: writable` : `${stateDir}: will be made in ${dir}`,
      ];
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "EACCES" || code === "EROFS")
        return ["fail", `${dir}: not writable by this user (${stateDir}, the host's state)`];
      if (code !== "ENOENT") return ["fail", `${dir}: ${(error as Error).message}`];
    }
    const parent = path.dirname(dir);
    if (parent === dir) return ["fail", `${stateDir}: no folder on its path exists`];
    dir = parent;
  }
}
