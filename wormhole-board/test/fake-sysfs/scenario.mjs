// The sysfs backend against a fake sysfs tree. Must run as root in a private
// mount namespace (unshare -m --propagation private): it mounts a tmpfs over
// /sys/class there, builds fake GPIO chips, and prints what was written as JSON.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = "/sys/class/gpio";
const log = "/sys/class/fake-kernel.log";

execFileSync("mount", ["-t", "tmpfs", "smw-fake-sysfs", "/sys/class"]);
mkdirSync(root);
execFileSync("mkfifo", [`${root}/export`, `${root}/unexport`]);
writeFileSync(log, "");
const chips = [
  ["gpiochip512", "pinctrl-bcm2711", 512, 58],
  ["gpiochip570", "raspberrypi-exp-gpio", 570, 8],
  ["gpiochip571", "pinctrl-rp1", 571, 54],
];
for (const [name, label, base, ngpio] of chips) {
  mkdirSync(`${root}/${name}`);
  writeFileSync(`${root}/${name}/label`, `${label}\n`);
  writeFileSync(`${root}/${name}/base`, `${base}\n`);
  writeFileSync(`${root}/${name}/ngpio`, `${ngpio}\n`);
}
// A line exported by someone else before us: claimed, never unexported.
mkdirSync(`${root}/gpio539`);
for (const [file, text] of [
  ["direction", "out"],
  ["value", "1"],
  ["active_low", "0"],
  ["edge", "none"],
]) {
  writeFileSync(`${root}/gpio539/${file}`, `${text}\n`);
}

const kernel = spawn(process.execPath, [path.join(here, "fake-kernel.mjs"), root, log], {
  stdio: ["ignore", "pipe", "inherit"],
});
await new Promise((resolve) => kernel.stdout.once("data", resolve));

const { BoardLines, SysfsLines, sysfsNumber } = await import("../../dist/index.js");
const line = (role, chip, offset, activeLow, initial, safe) => ({
  role,
  chip,
  offset,
  activeLow,
  initial,
  safe,
});
const board = {
  id: "pi1",
  guards: "srv1",
  lines: [
    line("reset", "pinctrl-bcm2711", 17, true, "inactive", "active"),
    line("power", "pinctrl-bcm2711", 27, false, "active", "active"),
    line("write-protect", "pinctrl-bcm2711", 22, false, "active", "active"),
    line("alarm", "pinctrl-rp1", 24, false, "inactive", "active"),
  ],
};
const files = (number) =>
  existsSync(`${root}/gpio${number}`)
    ? Object.fromEntries(
        ["direction", "value", "active_low"].map((f) => [
          f,
          readFileSync(`${root}/gpio${number}/${f}`, "utf8").trim(),
        ]),
      )
    : null;
const snapshot = () => Object.fromEntries([529, 534, 539, 595].map((n) => [n, files(n)]));

const result = { numbers: {}, steps: {} };
for (const l of board.lines) result.numbers[l.role] = sysfsNumber(l.chip, l.offset);
try {
  sysfsNumber("pinctrl-bcm2711", 58);
} catch (error) {
  result.outOfRange = error.message;
}
try {
  sysfsNumber("no-such-chip", 1);
} catch (error) {
  result.unknownChip = error.message;
}

const lines = BoardLines.claim(board, new SysfsLines());
result.steps.claimed = snapshot();
lines.set("write-protect", "inactive");
result.steps.writeProtectLowered = snapshot();
result.readBack = lines.get("write-protect");
// One process owns the lines: a second process is refused while the first holds the lock.
const lockPath = "/sys/class/lines.lock";
const held = BoardLines.claim({ ...board, lines: [] }, new SysfsLines(), { lockPath });
const second = spawnSync(
  process.execPath,
  [path.join(here, "claim-child.mjs"), JSON.stringify(board), "exit", lockPath],
  { encoding: "utf8" },
);
result.lockRefused = { status: second.status, stdout: second.stdout.trim() };
held.releaseAll();
const after = spawnSync(
  process.execPath,
  [
    path.join(here, "claim-child.mjs"),
    JSON.stringify({ ...board, lines: board.lines.filter((l) => l.role === "write-protect") }),
    "exit",
    lockPath,
  ],
  { encoding: "utf8" },
);
result.lockFreed = { status: after.status, stdout: after.stdout.trim() };
lines.releaseAll({ unexport: true });
// The fake kernel handles unexport in another process: wait until it has
// logged all three and removed their folders, so the next claims start clean.
const unexported = () =>
  readFileSync(log, "utf8")
    .split("\n")
    .filter((l) => l.startsWith("unexport")).length;
const waitStarted = Date.now();
while (unexported() < 3 || [529, 534, 595].some((n) => existsSync(`${root}/gpio${n}`))) {
  if (Date.now() - waitStarted > 10_000)
    throw new Error(`the fake kernel did not unexport: ${readFileSync(log, "utf8")}`);
  await new Promise((resolve) => setTimeout(resolve, 5));
}
result.steps.released = snapshot();
// Each line's files as it was given back: the unexported ones from the fake kernel's record,
// the one exported by someone else (539) as it stays.
const given = Object.fromEntries(
  readFileSync(`${log}.released`, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l))
    .map(({ number, ...files }) => [number, files]),
);
result.steps.releasedValues = Object.fromEntries(
  [529, 534, 539, 595].map((n) => [n, given[n] ?? files(n)]),
);
result.log = readFileSync(log, "utf8").trim().split("\n").filter(Boolean);

// Crash paths, each in a process of its own: the lines must end at their safe levels.
for (const how of ["throw", "wait", "exit"]) {
  writeFileSync(log, "");
  const child = spawn(
    process.execPath,
    [path.join(here, "claim-child.mjs"), JSON.stringify(board), how],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  await new Promise((resolve) => child.stdout.once("data", resolve));
  result.steps[`${how}:running`] = snapshot();
  if (how === "wait") child.kill("SIGTERM");
  const code = await new Promise((resolve) => child.on("exit", (c, s) => resolve(c ?? s)));
  result.steps[`${how}:after`] = snapshot();
  result[`${how}:exit`] = code;
  result[`${how}:log`] = readFileSync(log, "utf8").trim().split("\n").filter(Boolean);
}
// Commissioning with `smw lines` on pi-lab's pi1 (pinctrl-bcm2711: reset 17 -> gpio529,
// write-protect 22 -> gpio534).
writeFileSync(log, "");
const smw = path.join(here, "..", "..", "..", "bin", "smw.js");
const pilab = path.join(here, "..", "..", "..", "wiring", "examples", "pi-lab.yaml");
const linesCli = (...args) =>
  spawnSync(process.execPath, [smw, "lines", ...args, "--testbed", pilab, "--board", "pi1"], {
    encoding: "utf8",
  });
const listed = linesCli("list");
result.linesList = { status: listed.status, stdout: listed.stdout, stderr: listed.stderr };
const setting = spawn(
  process.execPath,
  [
    smw,
    "lines",
    "set",
    "write-protect",
    "inactive",
    // Held until the refusal below has been seen, however slow the machine: then Ctrl-C.
    "--hold",
    "120s",
    "--testbed",
    pilab,
    "--board",
    "pi1",
  ],
  { stdio: ["ignore", "pipe", "pipe"] },
);
let setOut = "";
setting.stdout.on("data", (chunk) => {
  setOut += chunk;
});
const setStarted = Date.now();
while (!setOut.includes("holding")) {
  if (Date.now() - setStarted > 10_000) throw new Error(`smw lines set did not hold: ${setOut}`);
  await new Promise((resolve) => setTimeout(resolve, 10));
}
result.steps["lines-set:holding"] = snapshot();
// The daemon's lock is held by the set: a second command is refused.
const refused = linesCli("get", "reset");
result.linesRefused = { status: refused.status, stderr: refused.stderr };
const setExited = new Promise((resolve) => setting.on("exit", (c, signal) => resolve(c ?? signal)));
setting.kill("SIGINT");
const setExit = await setExited;
result.steps["lines-set:after"] = snapshot();
result.linesSet = { status: setExit, stdout: setOut };
// The same, held to its end: released at its safe level, said so, exit 0.
const heldToEnd = linesCli("set", "write-protect", "inactive", "--hold", "10ms");
result.steps["lines-set-to-end:after"] = snapshot();
result.linesSetToEnd = { status: heldToEnd.status, stdout: heldToEnd.stdout };
const got = linesCli("get", "reset");
result.linesGet = { status: got.status, stdout: got.stdout, stderr: got.stderr };

kernel.kill();
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(0);
