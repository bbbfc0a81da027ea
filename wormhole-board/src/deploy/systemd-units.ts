/**
 * systemd units for one board of a testbed and the host it guards: the board daemon
 * (`Type=notify`, fed watchdog, restarted always) and the host agent (`Type=notify`, fed
 * watchdog, restarted on failure). Pure: text in, text out.
 */
import path from "node:path";
import type { Board, Testbed } from "@smw/wiring";

export interface SystemdUnitOptions {
  /** The testbed file as the board will read it (an absolute path on the board). */
  testbedPath: string;
  /** How to run smw on the board: node and the path of `bin/smw.js`. */
  nodePath: string;
  smwPath: string;
  /** The services' own user; the units add the groups each needs (gpio, dialout, disk). */
  user: string;
  /** The hardware watchdog the daemon feeds, if any. */
  watchdogDevice?: string;
  /** systemd's watchdog: restarted when not fed for this long. */
  watchdogSec: number;
}

export interface UnitFile {
  name: string;
  text: string;
}

/** Both units for `board`: `smw-board-<id>.service` and `smw-host-<host>.service`. */
export function systemdUnits(
  testbed: Testbed,
  board: Board,
  options: SystemdUnitOptions,
): UnitFile[] {
  return [boardUnit(testbed, board, options), hostUnit(testbed, board, options)];
}

/** The end of both units: the sandboxing every smw service gets, and started at boot. */
const HARDENED_AND_INSTALLED = [
  "NoNewPrivileges=yes",
  "ProtectSystem=full",
  "ProtectHome=yes",
  "PrivateTmp=yes",
  "",
  "[Install]",
  "WantedBy=multi-user.target",
];

function boardUnit(testbed: Testbed, board: Board, o: SystemdUnitOptions): UnitFile {
  checkOptions(o);
  const exec = [
    o.nodePath,
    o.smwPath,
    "board",
    "run",
    "--testbed",
    o.testbedPath,
    "--board",
    board.id,
    ...(o.watchdogDevice === undefined ? [] : ["--watchdog", o.watchdogDevice]),
  ];
  const lines = [
    "[Unit]",
    `Description=smw board daemon ${board.id} (the local SMW guarding ${board.guards}, testbed ${testbed.name})`,
    `Documentation=file:${readmeOf(o.smwPath)}`,
    // The schedule needs the clock synchronised, and the network for an Ethernet control link.
    "After=network-online.target time-sync.target",
    "Wants=network-online.target time-sync.target",
    // A crash loop is not given up on: while the daemon is down its peers hear silence and fail
    // safe; each start claims the lines at their safe levels and rejoins at a period boundary.
    "StartLimitIntervalSec=0",
    "",
    "[Service]",
    "Type=notify",
    // The daemon speaks to systemd through a socat it starts (node has no datagram Unix sockets).
    "NotifyAccess=all",
    `ExecStart=${exec.map(quoteArgument).join(" ")}`,
    `WatchdogSec=${o.watchdogSec}s`,
    "Restart=always",
    "RestartSec=2s",
    // SIGTERM: the host runs until the last lease on its key has lapsed (a key lease at most),
    // then every line goes to its safe level and the daemon exits 143: a clean stop.
    "KillMode=mixed",
    "SuccessExitStatus=143",
    `TimeoutStopSec=${Math.max(10, Math.ceil((testbed.rejuvenation.keyLeaseMs + 5_000) / 1_000))}s`,
    `User=${o.user}`,
    `Group=${o.user}`,
    // gpio: the lines; dialout: the host link and serial control links; disk: the host's code disks.
    "SupplementaryGroups=gpio dialout disk",
    ...stateDirectives(board.stateDir, `board ${board.id}'s stateDir`),
    "RuntimeDirectory=smw",
    // The line lock lives there: a restart must not delete it under a bench command's feet.
    "RuntimeDirectoryPreserve=yes",
    // nice -10 and SCHED_FIFO 10 for the event loop (smw board run raises them itself).
    "AmbientCapabilities=CAP_SYS_NICE",
    "CapabilityBoundingSet=CAP_SYS_NICE",
    "LimitRTPRIO=10",
    "LimitNICE=-10",
    ...HARDENED_AND_INSTALLED,
  ];
  return { name: `smw-board-${board.id}.service`, text: `${lines.join("\n")}\n` };
}

function hostUnit(testbed: Testbed, board: Board, o: SystemdUnitOptions): UnitFile {
  const host = testbed.hosts.find((h) => h.id === board.guards);
  const exec = [
    o.nodePath,
    o.smwPath,
    "host",
    "run",
    "--testbed",
    o.testbedPath,
    "--host",
    board.guards,
  ];
  const lines = [
    "[Unit]",
    `Description=smw host agent ${board.guards} (its replica, rejuvenated by board ${board.id}, testbed ${testbed.name})`,
    `Documentation=file:${readmeOf(o.smwPath)}`,
    "After=network-online.target",
    "Wants=network-online.target",
    "",
    "[Service]",
    // Started at every boot of the host. Ready once its console link to the board is open; its
    // watchdog is fed from its event loop (through a socat it starts, hence NotifyAccess=all).
    "Type=notify",
    "NotifyAccess=all",
    `ExecStart=${exec.map(quoteArgument).join(" ")}`,
    `WatchdogSec=${o.watchdogSec}s`,
    // An agent that crashed or hung (killed by its watchdog) is started again and comes back as
    // a crashed replica does: under a new key the board certifies once a period. A start limit
    // stops a loop; the board's next rejuvenation reboots the host and starts it afresh.
    "Restart=on-failure",
    "RestartSec=2s",
    // SIGTERM to the agent alone: it stops its replica itself (SIGKILL after 2 s), then exits.
    "KillMode=mixed",
    "TimeoutStopSec=10s",
    `User=${o.user}`,
    `Group=${o.user}`,
    "SupplementaryGroups=dialout",
    // No RuntimeDirectory: the agent keeps nothing at run time outside its state folder.
    ...stateDirectives(host?.stateDir, `host ${board.guards}'s stateDir`),
    ...HARDENED_AND_INSTALLED,
  ];
  return { name: `smw-host-${board.guards}.service`, text: `${lines.join("\n")}\n` };
}

/**
 * A state folder under /var/lib is systemd's to create and give to the service's user
 * (StateDirectory, mode 0700); any other is only made writable through the hardening.
 */
function stateDirectives(stateDir: string | undefined, what: string): string[] {
  if (stateDir === undefined) return [];
  const checked = unitPath(stateDir, what);
  return checked.startsWith("/var/lib/")
    ? [`StateDirectory=${checked.slice("/var/lib/".length)}`, "StateDirectoryMode=0700"]
    : [`ReadWritePaths=${checked}`];
}

export class DeployError extends Error {
  override name = "DeployError";
}

/**
 * A path as a unit file may hold it: absolute, no whitespace or control characters (a newline
 * would start a directive of its own, and a testbed file is not trusted to write unit files),
 * `%` escaped as systemd's specifier syntax wants.
 */
function unitPath(value: string, what: string): string {
  if (!value.startsWith("/") || /[\s\p{Cc}"'\\]/u.test(value))
    throw new DeployError(
      `${what} ${JSON.stringify(value)}: a unit file needs an absolute path without spaces, quotes, backslashes or control characters`,
    );
  return value.replaceAll("%", "%%");
}

/** The README beside the installed `bin/smw.js`. */
function readmeOf(smwPath: string): string {
  return path.posix.join(path.posix.dirname(smwPath), "..", "README.md");
}

function checkOptions(o: SystemdUnitOptions): void {
  unitPath(o.testbedPath, "the testbed path");
  unitPath(o.nodePath, "node's path");
  unitPath(o.smwPath, "smw's path");
  if (o.watchdogDevice !== undefined) unitPath(o.watchdogDevice, "the watchdog device");
}

/** systemd's command-line quoting: an argument with spaces, quotes, backslashes or `$`/`%` is quoted and escaped. */
function quoteArgument(argument: string): string {
  const escaped = argument.replaceAll("%", "%%").replaceAll("$", "$$");
  if (/^[A-Za-z0-9_./:=@+,-]+$/.test(escaped)) return escaped;
  return `"${escaped.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
}
