/**
 * `smw host doctor`: whether this machine can run a payload host of the testbed, checked before
 * its board first releases it (a host that cannot boot its agent costs a fail-safe, not an error
 * message): Node, where the code loads from (the bundle and its code cache, or why not), the
 * console's serial binding and device, socat (systemd's notifications), the state folder, the
 * keys its replica reads, and its replica's address; and whether it was run as root, for whom
 * every permission check passes.
 */
import { accessSync, closeSync, constants, openSync, statSync } from "node:fs";
import { createServer } from "node:net";
import path from "node:path";
import { isatty } from "node:tty";
import type { Host, Testbed } from "@smw/wiring";
import type { NativeModule } from "@smw/wiring/cli";
import { surveyPublicKeys } from "../service/service-keys.js";

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
  /** Whether a program runs here (`socat -V`). */
  hasTool(command: string, args: readonly string[]): boolean;
  /** Run as root: every permission check passes, though the host's unit runs as its own user. */
  isRoot: boolean;
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

  if (env.isRoot)
    add(
      "user",
      "warn",
      "run as root, for whom every permission passes: run it as the user the host's unit runs as (sudo -u smw node …/bin/smw.js host doctor …), with the node that unit starts",
    );
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

  const consoleCheck = consoleVerdict(host.console.device);
  // A simulated testbed's consoles are PTYs the rig makes as it starts its hosts.
  if (consoleCheck.missing && testbed.simulated)
    add(
      "console",
      "warn",
      `${consoleCheck.detail}; on a simulated testbed the rig makes it as it starts its hosts`,
    );
  else add("console", consoleCheck.verdict, consoleCheck.detail);
  // Under systemd (Type=notify) the agent tells systemd it is up through socat, and refuses to
  // start without it.
  const socat = env.hasTool("socat", ["-V"]);
  add(
    "socat",
    socat ? "ok" : "warn",
    socat
      ? "present (the agent's notifications to systemd)"
      : "not found: under the systemd unit (Type=notify) smw host run does not start without it (apt install socat)",
  );
  add("state", ...stateVerdict(host.stateDir));

  // Every key problem at once: one fixed at a time, each found by a run of the doctor, is slow
  // on a host reached over a serial console.
  const { boardKeys: boards, clientKeys: clients, problems } = surveyPublicKeys(testbed);
  // Each board's certificates must check only under its own key: boards whose public keys are
  // one (the same file on this host, or copies) would each certify any host.
  const byKey = new Map<string, string[]>();
  for (const board of testbed.boards) {
    const key = boards.get(board.guards);
    if (key !== undefined) byKey.set(key, [...(byKey.get(key) ?? []), board.id]);
  }
  for (const ids of byKey.values())
    if (ids.length > 1)
      problems.push(
        `${ids.join(", ")}: one public key for several boards (each board's own .pub beside its signing key path, on this host): a replica would take any of their certificates for any of their hosts`,
      );
  if (testbed.clientKeysDir === undefined)
    problems.push(
      `${testbed.file}: no client keys: add "keys: { clients: FOLDER }" and put each client's public key there as <id>.pub (smw keys gen --out FOLDER --name <id>)`,
    );
  if (problems.length > 0)
    add(
      "keys",
      "fail",
      problems.length === 1
        ? (problems[0] as string)
        : `${problems.length} problems: ${problems.map((p, i) => `(${i + 1}) ${p}`).join("; ")}`,
    );
  else
    add(
      "keys",
      clients.size > 0 ? "ok" : "warn",
      `${boards.size} boards' public keys${clients.size > 0 ? `, ${clients.size} client public key${clients.size === 1 ? "" : "s"}` : "; no client keys: no client can be served"}`,
    );

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

/**
 * Opened as the agent opens it (read and write, not as a controlling terminal, without waiting
 * for a modem's carrier), then asked whether it is a terminal: a serial line and a PTY are, and
 * serialport fails on anything else (`/dev/null` included).
 */
function consoleVerdict(device: string): { verdict: Verdict; detail: string; missing?: true } {
  let stat: ReturnType<typeof statSync>;
  try {
    stat = statSync(device);
  } catch {
    return {
      verdict: "fail",
      detail: `${device}: not found (the host's console to its board: the testbed's console.device)`,
      missing: true,
    };
  }
  if (!stat.isCharacterDevice())
    return {
      verdict: "fail",
      detail: `${device}: not a character device (a serial line or PTY is)`,
    };
  let fd: number;
  try {
    fd = openSync(device, constants.O_RDWR | constants.O_NOCTTY | constants.O_NONBLOCK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return {
      verdict: "fail",
      detail:
        code === "EACCES"
          ? `${device}: this user may not read and write it (the dialout group?)`
          : `${device}: cannot be opened (${code ?? (error as Error).message})`,
    };
  }
  try {
    return isatty(fd)
      ? {
          verdict: "ok",
          detail: `${device}: a terminal (serial line or PTY), opened for reading and writing`,
        }
      : {
          verdict: "fail",
          detail: `${device}: not a terminal: the console must be a serial line or a PTY`,
        };
  } finally {
    closeSync(fd);
  }
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
      if (code === "EACCES")
        return ["fail", `${dir}: not writable by this user (${stateDir}, the host's state)`];
      if (code === "EROFS")
        return ["fail", `${dir}: on a read-only file system (${stateDir}, the host's state)`];
      // A file on the path: its own check names it, one step up.
      if (code !== "ENOENT" && code !== "ENOTDIR")
        return ["fail", `${dir}: ${(error as Error).message}`];
    }
    const parent = path.dirname(dir);
    if (parent === dir) return ["fail", `${stateDir}: no folder on its path exists`];
    dir = parent;
  }
}
