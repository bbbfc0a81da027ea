// Finding (or, as root on Debian, installing) the external tools that the demo, the tests
// and the benchmarks need. One helper for all of them, so the main command and the test
// command do exactly the same set-up.
import { spawnSync } from "node:child_process";

const has = (command) => spawnSync("sh", ["-c", `command -v ${command}`]).status === 0;

let aptUpdated = false;

/**
 * Makes sure `command` is on PATH; installs `debianPackage` with apt-get when it is not and
 * this process is root on Debian. Returns true when it installed something. Throws an Error
 * whose message says what to run when it cannot.
 * `why` says what the tool is for, in the message a user reads.
 */
export function ensureTool(command, debianPackage, why = "") {
  if (has(command)) return false;
  const root = process.getuid?.() === 0;
  if (root && has("apt-get")) {
    if (!aptUpdated) {
      spawnSync("apt-get", ["update", "-qq"], { stdio: "ignore" });
      aptUpdated = true;
    }
    // apt-get's own chatter is shown only when it fails: the user gets one line either way.
    const install = spawnSync("apt-get", ["install", "-y", "-qq", debianPackage], {
      stdio: ["ignore", "ignore", "pipe"],
      encoding: "utf8",
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    });
    if (install.status === 0 && has(command)) return true;
    const said = (install.stderr ?? "").trim().split("\n").slice(-3).join("\n");
    throw new Error(
      `${command} is missing and apt-get could not install ${debianPackage} (exit ${install.status})${said ? `:\n${said}\n` : "; "}install it by hand${why ? `. ${why}` : ""}`,
    );
  }
  const how = root
    ? `install the package that provides ${command} (Debian: apt-get install ${debianPackage})`
    : `run as root: apt-get install ${debianPackage} (or install ${command} from your system's packages)`;
  throw new Error(`${command} is not installed; ${how}${why ? `. ${why}` : ""}`);
}

/**
 * Ensures every tool of a list; prints one line naming what it installed (nothing when all
 * were there). On failure prints what to run and exits 2, the status of bad set-up.
 */
export function ensureToolsOrExit(who, tools) {
  const installed = [];
  try {
    for (const { command, debianPackage, why } of tools) {
      if (ensureTool(command, debianPackage, why)) installed.push(`${command} (${debianPackage})`);
    }
  } catch (error) {
    process.stderr.write(`${who}: ${error.message}\n`);
    process.exit(2);
  }
  if (installed.length > 0) process.stderr.write(`${who}: installed ${installed.join(", ")}\n`);
}

/** What the simulated testbed needs: the demo, the rig's commands and the tests alike. */
export const RIG_TOOLS = [
  {
    command: "socat",
    debianPackage: "socat",
    why: "The rig makes every serial link (host consoles, control links) a real PTY pair with socat",
  },
];

/** What the tests need besides: a browser for the live page's test (Debian's Chromium). */
export const TEST_TOOLS = [
  ...RIG_TOOLS,
  {
    command: "chromium",
    debianPackage: "chromium",
    why: "The live page is tested in a real browser (headless Chromium, driven by puppeteer-core)",
  },
  {
    command: "curl",
    debianPackage: "curl",
    why: "A running board's metrics endpoint is scraped with curl, as an operator would",
  },
];
