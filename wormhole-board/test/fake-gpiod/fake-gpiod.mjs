// A stand-in for libgpiod v2's gpioset, gpioget and gpiodetect: it keeps the lines' physical
// levels in a JSON file ($FAKE_GPIOD_STATE), records every call ($FAKE_GPIOD_LOG), and refuses
// what the real tools would do that a board must not: holding a line until killed (gpioset
// without --toggle 0) or turning a driven output into an input (gpioget without --as-is).
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
  writeFileSync(statePath, JSON.stringify(state));
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
