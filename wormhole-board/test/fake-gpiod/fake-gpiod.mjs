// A stand-in for libgpiod's gpioset, gpioget and gpiodetect (v2, or v1 when the state's version
// starts with "1.") and the Raspberry Pi's pinctrl: it keeps the lines' physical levels and
// directions in a JSON file ($FAKE_GPIOD_STATE), records every call ($FAKE_GPIOD_LOG), and
// refuses what the real tools would do that a board must not: holding a line until killed
// (gpioset without --toggle 0, or v1's without --mode=exit) or turning a driven output into an
// input (v2's gpioget without --as-is; v1's gpioget always does, and the fake does it too).
// `revertOnExit` in the state models a driver that makes a released line an input.
import { appendFileSync, readFileSync, writeFileSync } from "node:fs";

const [tool, ...args] = process.argv.slice(2);
const statePath = process.env.FAKE_GPIOD_STATE;
const state = JSON.parse(readFileSync(statePath, "utf8"));
appendFileSync(process.env.FAKE_GPIOD_LOG, `${JSON.stringify([tool, ...args])}\n`);
const fail = (message) => {
  process.stderr.write(`${tool}: ${message}\n`);
  process.exit(1);
};
if (args.includes("--version")) {
  process.stdout.write(
    `${tool} (libgpiod) v${state.version}\nCopyright (C) 2017-2023 Bartosz Golaszewski\n`,
  );
  process.exit(0);
}
if (tool === "gpiodetect") {
  for (const chip of state.chips)
    process.stdout.write(`${chip.name} [${chip.label}] (${chip.lines} lines)\n`);
  process.exit(0);
}
const v1 = String(state.version).startsWith("1.");
state.directions ??= {};
const save = () => writeFileSync(statePath, JSON.stringify(state));
if (tool === "pinctrl") {
  // `pinctrl get N`: N is a GPIO number of the Pi's own chip (its offset there).
  if (args[0] !== "get" || args.length !== 2) fail("expected: pinctrl get N");
  const pi = state.chips.find((c) => /^pinctrl-(bcm2835|bcm2711|rp1)$/.test(c.label));
  const n = Number(args[1]);
  if (pi === undefined || !(n < pi.lines)) {
    process.stdout.write(`Unknown GPIO "${args[1]}"\n`);
    process.exit(1);
  }
  const k = `${pi.name}:${n}`;
  const dir = state.directions[k] ?? "ip";
  const level = (state.values[k] ?? 0) === 1 ? "hi" : "lo";
  const drive = dir === "op" ? (level === "hi" ? "dh" : "dl") : "  ";
  process.stdout.write(
    `${String(n).padStart(2)}: ${dir} ${drive} pn | ${level} // GPIO${n} = ${dir === "op" ? "output" : "input"}\n`,
  );
  process.exit(0);
}
if (v1) {
  if (args.some((a) => a === "--chip" || a.startsWith("--toggle") || a === "--as-is"))
    fail(`unrecognized option '${args.find((a) => a.startsWith("--"))}'`);
  const activeLow = args.includes("--active-low") || args.includes("-l");
  const positional = args.filter((a) => !a.startsWith("-"));
  const chip = state.chips.find((c) => c.name === positional[0]);
  if (chip === undefined) fail(`error opening the GPIO chip: No such file or directory`);
  const k = (offset) => `${chip.name}:${offset}`;
  if (tool === "gpioset") {
    const mode = args.find((a) => a.startsWith("--mode="))?.slice(7) ?? "exit";
    if (mode !== "exit") fail(`would hold the lines (--mode=${mode})`);
    const [offset, value] = positional[1].split("=");
    if (Number(offset) >= chip.lines) fail("error setting the GPIO line values: Invalid argument");
    if (!state.stuck?.includes(k(offset)))
      state.values[k(offset)] = activeLow ? 1 - Number(value) : Number(value);
    state.directions[k(offset)] = state.revertOnExit ? "ip" : "op";
    save();
    process.exit(0);
  }
  if (tool === "gpioget") {
    // What v1's gpioget does: request the line as an input.
    const offset = positional[1];
    state.directions[k(offset)] = "ip";
    save();
    const physical = state.values[k(offset)] ?? 0;
    process.stdout.write(`${activeLow ? 1 - physical : physical}\n`);
    process.exit(0);
  }
}
const option = (name) => {
  const at = args.indexOf(name);
  return at < 0 ? undefined : args[at + 1];
};
const chipName = option("--chip");
const chip = state.chips.find((c) => c.name === chipName);
if (chip === undefined) fail(`cannot find GPIO chip '${chipName}'`);
const activeLow = args.includes("--active-low");
const key = (offset) => `${chipName}:${offset}`;
if (tool === "gpioset") {
  if (option("--toggle") !== "0") fail("would hold the lines until killed (no --toggle 0)");
  const [offset, value] = args.at(-1).split("=");
  if (Number(offset) >= chip.lines) fail(`line '${offset}' not found`);
  const physical = activeLow ? 1 - Number(value) : Number(value);
  if (!state.stuck?.includes(key(offset))) state.values[key(offset)] = physical;
  state.directions[key(offset)] = "op";
  save();
  process.exit(0);
}
if (tool === "gpioget") {
  if (!args.includes("--as-is")) fail("would make the line an input (no --as-is)");
  if (!args.includes("--numeric")) fail("expected --numeric");
  const offset = args.at(-1);
  const physical = state.values[key(offset)] ?? 0;
  process.stdout.write(`${activeLow ? 1 - physical : physical}\n`);
  process.exit(0);
}
fail("unknown tool");
