/**
 * What `smw doctor` checks on a board before its daemon runs: the platform (Node, the native
 * bindings, the tools the daemon starts), the testbed's files for this board (keys and their
 * modes, images, devices), its GPIO chips and lines, its state folder, its privileges and its
 * clock. Each check says what it found; nothing is changed but the state folder, created if
 * missing (as the daemon would) and probed with a file it removes.
 */
import { spawnSync } from "node:child_process";
import {
  accessSync,
  constants,
  existsSync,
  mkdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import { userInfo } from "node:os";
import path from "node:path";
import { type Board, checkFiles, type Testbed } from "@smw/wiring";
import {
  type NativeModule,
  nativeModuleStatus,
  ONOFF_MODULE,
  SERIALPORT_MODULE,
} from "@smw/wiring/cli";
import { GpiodLines } from "../lines/gpiod-lines.js";
import { listChips } from "../lines/sysfs-chips.js";
import { blake3Backend } from "../media/chunk-digest.js";

export type Verdict = "ok" | "warn" | "fail";

export interface Check {
  name: string;
  verdict: Verdict;
  detail: string;
}

export interface DoctorEnvironment {
  nodeVersion: string;
  /** Whether a command runs here (`tool --version` or the like exits 0). */
  hasTool: (command: string, args: readonly string[]) => boolean;
  /** The clock's synchronisation as the system reports it, if it can tell. */
  clockSynchronised: () => boolean | undefined;
  /** Whether a package with a native binding loads here. */
  loads: (module: NativeModule) => { ok: true } | { ok: false; why: string };
  /** Whether this user may read and write the file (a device the daemon opens). */
  mayReadWrite: (file: string) => boolean;
  /** Root or CAP_SYS_NICE: may raise the event loop's priority. */
  mayRaisePriority: () => boolean;
  sysfsRoot?: string;
}

export const MIN_NODE_MAJOR = 20;

export function hostEnvironment(): DoctorEnvironment {
  return {
    nodeVersion: process.versions.node,
    hasTool: (command, args) => spawnSync(command, args, { stdio: "ignore" }).status === 0,
    loads: (module) => nativeModuleStatus(createRequire(import.meta.url), module),
    mayReadWrite: (file) => {
      try {
        accessSync(file, constants.R_OK | constants.W_OK);
        return true;
      } catch {
        return false;
      }
    },
    clockSynchronised: () => {
      const run = spawnSync("timedatectl", ["show", "--property=NTPSynchronized", "--value"], {
        encoding: "utf8",
      });
      if (run.status !== 0) return undefined;
      return run.stdout.trim() === "yes";
    },
    mayRaisePriority: () => {
      if (process.getuid?.() === 0) return true;
      try {
        const status = readFileSync("/proc/self/status", "utf8");
        const effective = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1];
        // CAP_SYS_NICE is capability 23.
        return effective !== undefined && (BigInt(`0x${effective}`) & (1n << 23n)) !== 0n;
      } catch {
        return false;
      }
    },
  };
}

/**
 * The devices the daemon opens, each with the group that grants it on Raspberry Pi OS: the
 * installing user's group memberships are what this checks, as the daemon's user runs it.
 */
function accessFindings(testbed: Testbed, board: Board, env: DoctorEnvironment): string[] {
  const wanted: Array<{ file: string; what: string; group: string }> = [
    { file: board.hostLink.device, what: "the host link", group: "dialout" },
  ];
  if (board.control.kind === "links")
    for (const link of board.control.links)
      wanted.push({
        file: link.device,
        what: `the control link to ${link.peer}`,
        group: "dialout",
      });
  if (board.control.kind === "bus")
    wanted.push({ file: board.control.device, what: "the control bus", group: "dialout" });
  for (const [name, image] of Object.entries(board.images))
    wanted.push({ file: image.live, what: `the live ${name} image`, group: "disk" });
  if (!testbed.simulated) {
    if (board.gpio === "sysfs")
      wanted.push({ file: "/sys/class/gpio/export", what: "sysfs GPIO's export", group: "gpio" });
    else
      for (const chip of new Set(board.lines.map((l) => l.chip)))
        for (const c of safeChips().filter((c) => c.label === chip))
          wanted.push({ file: `/dev/${c.name}`, what: `GPIO chip ${chip}`, group: "gpio" });
  }
  const user = userInfo().username;
  const findings: string[] = [];
  for (const { file, what, group } of wanted) {
    // A missing one is the files check's to report.
    if (!existsSync(file)) continue;
    if (!env.mayReadWrite(file))
      findings.push(
        `${file} (${what}) is not readable and writable by ${user}: add ${user} to group ${group} (sudo usermod -aG ${group} ${user}) and log in again, or restart its service`,
      );
  }
  return findings;
}

function safeChips(): Array<{ name: string; label: string }> {
  try {
    return new GpiodLines().listChips();
  } catch {
    return [];
  }
}

export interface DoctorOptions {
  /** The kernel watchdog the daemon will feed (`smw board run --watchdog`), if any. */
  watchdogDevice?: string;
}

export function boardChecks(
  testbed: Testbed,
  board: Board,
  env: DoctorEnvironment,
  options: DoctorOptions = {},
): Check[] {
  const checks: Check[] = [];
  const add = (name: string, verdict: Verdict, detail: string) =>
    checks.push({ name, verdict, detail });

  const major = Number(env.nodeVersion.split(".")[0]);
  add(
    "node",
    major >= MIN_NODE_MAJOR ? "ok" : "fail",
    major >= MIN_NODE_MAJOR
      ? `Node ${env.nodeVersion}`
      : `Node ${env.nodeVersion}: smw needs Node ${MIN_NODE_MAJOR} or newer (Raspberry Pi OS Bookworm ships 18: install 20 from NodeSource or nvm)`,
  );
  add(
    "blake3",
    blake3Backend.kind === "native" ? "ok" : "warn",
    blake3Backend.kind === "native"
      ? "native BLAKE3 binding loaded"
      : `native BLAKE3 binding not loaded (${blake3Backend.reason}): hashing in pure JS, over 100x slower; seal this board's images with --algorithm sha256`,
  );

  // Loaded only when used (a broken one fails what needs it, not all of smw): checked here.
  const sysfs = !testbed.simulated && board.gpio !== "gpiod";
  for (const module of [SERIALPORT_MODULE, ...(sysfs ? [ONOFF_MODULE] : [])]) {
    const status = env.loads(module);
    add(
      module.specifier,
      status.ok ? "ok" : "fail",
      status.ok ? `native binding loaded (${module.neededFor})` : status.why,
    );
  }

  for (const [tool, args, why, verdict] of [
    ["socat", ["-V"], "systemd's watchdog (the daemon notifies through it)", "warn"],
    ["chrt", ["--version"], "the event loop's real-time priority", "warn"],
  ] as const) {
    add(
      tool,
      env.hasTool(tool, args) ? "ok" : verdict,
      env.hasTool(tool, args) ? `present (${why})` : `not found: needed for ${why}`,
    );
  }
  add(
    "priority",
    env.mayRaisePriority() ? "ok" : "warn",
    env.mayRaisePriority()
      ? "may raise the event loop's priority (root or CAP_SYS_NICE)"
      : "neither root nor CAP_SYS_NICE: the event loop runs at normal priority, timers late under load (the systemd unit grants CAP_SYS_NICE)",
  );

  const files = checkFiles(testbed, { kind: "board", board: board.id });
  if (files.length === 0) add("files", "ok", "keys (owner-only), images and devices present");
  for (const finding of files)
    add("files", "fail", `${finding.path.join(".")}: ${finding.message}`);

  if (testbed.simulated) add("gpio", "ok", "simulated lines");
  else {
    if (board.gpio === "gpiod") {
      const tools = new GpiodLines().checkTools(board.lines.map((l) => l.chip));
      add("gpio", tools.ok ? "ok" : "fail", tools.detail);
    }
    try {
      const chips =
        board.gpio === "gpiod"
          ? new GpiodLines().listChips().map((c) => ({
              name: c.name,
              label: c.label,
              ngpio: c.lines,
              where: (o: number) => `${c.name} line ${o}`,
            }))
          : listChips(env.sysfsRoot).map((c) => ({
              name: c.name,
              label: c.label,
              ngpio: c.ngpio,
              where: (o: number) => `${c.name}, sysfs gpio${c.base + o}`,
            }));
      for (const line of board.lines) {
        const chip = chips.find((c) => c.label === line.chip);
        if (chip === undefined)
          add(
            "gpio",
            "fail",
            `${line.role}: no GPIO chip labelled ${line.chip} (this board has: ${chips.map((c) => c.label).join(", ") || "none"}; a Pi 4 is pinctrl-bcm2711, a Pi 5 pinctrl-rp1)`,
          );
        else if (line.offset >= chip.ngpio)
          add(
            "gpio",
            "fail",
            `${line.role}: ${chip.name} (${chip.label}) has ${chip.ngpio} lines, no offset ${line.offset}`,
          );
        else
          add(
            "gpio",
            "ok",
            `${line.role}: ${line.chip}/${line.offset} is ${chip.where(line.offset)}`,
          );
      }
    } catch (error) {
      add("gpio", "fail", (error as Error).message);
    }
  }

  for (const finding of accessFindings(testbed, board, env)) add("access", "fail", finding);
  const watchdog = options.watchdogDevice;
  if (watchdog !== undefined) {
    if (!existsSync(watchdog))
      add(
        "watchdog",
        "fail",
        `${watchdog} does not exist: enable the Pi's watchdog (dtparam=watchdog=on in config.txt) or leave --watchdog out`,
      );
    else if (!env.mayReadWrite(watchdog))
      add(
        "watchdog",
        "fail",
        `${watchdog} is not writable by ${userInfo().username}: add the udev rule KERNEL=="watchdog*", GROUP="smw", MODE="0660" (install guide, step 7)`,
      );
    else add("watchdog", "ok", `${watchdog} writable: a hung daemon will reboot the board`);
  }
  if (!checks.some((c) => c.name === "access"))
    add("access", "ok", "this user may read and write every device the board opens");

  const probe = path.join(board.stateDir, `.smw-doctor-${process.pid}`);
  try {
    mkdirSync(board.stateDir, { recursive: true, mode: 0o700 });
    accessSync(board.stateDir, constants.W_OK);
    writeFileSync(probe, "");
    rmSync(probe);
    add("state", "ok", `${board.stateDir} writable`);
  } catch (error) {
    add("state", "fail", `${board.stateDir} is not writable: ${(error as Error).message}`);
  }

  const synchronised = env.clockSynchronised();
  add(
    "clock",
    synchronised === true ? "ok" : "warn",
    synchronised === true
      ? "synchronised (timedatectl)"
      : synchronised === false
        ? "not synchronised (timedatectl): the boards' clock offset bound needs NTP or PTP"
        : "cannot tell (no timedatectl): check the time service by hand",
  );
  return checks;
}
