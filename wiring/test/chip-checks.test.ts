/**
 * `smw wiring check --board` on the board: each line's GPIO chip found by its label in the
 * kernel's sysfs GPIO folder, the offset in range (a fake folder stands for /sys/class/gpio); for
 * a `gpio: gpiod` board, in what gpiodetect lists (a fake gpiodetect stands for the tool).
 */
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { loadTestbedFile } from "@smw/wiring";
import { afterAll, describe, expect, it } from "vitest";

const here = path.dirname(fileURLToPath(import.meta.url));
const piLab = path.join(here, "..", "examples", "pi-lab.yaml");
const dir = mkdtempSync(path.join(tmpdir(), "smw-chips-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function sysfs(name: string, chips: Array<[string, string, number]>): string {
  const root = path.join(dir, name);
  for (const [chip, label, ngpio] of chips) {
    mkdirSync(path.join(root, chip), { recursive: true });
    writeFileSync(path.join(root, chip, "label"), `${label}\n`);
    writeFileSync(path.join(root, chip, "ngpio"), `${ngpio}\n`);
  }
  mkdirSync(root, { recursive: true });
  return root;
}

/** The chip problems of pi-lab's pi1 against a sysfs folder (its keys and images are not here either). */
function chipProblems(sysfsGpioRoot: string) {
  const loaded = loadTestbedFile(piLab, { files: { kind: "board", board: "pi1" }, sysfsGpioRoot });
  expect(loaded.ok).toBe(false);
  return loaded.ok
    ? []
    : loaded.problems
        .filter((p) => p.path.includes("lines") || p.path.at(-1) === "gpio")
        .map((p) => `${p.path.join(".")}: ${p.message}`);
}

describe("the board's GPIO chips", () => {
  it("passes a board whose chip is there with every offset", () => {
    expect(chipProblems(sysfs("pi4", [["gpiochip512", "pinctrl-bcm2711", 58]]))).toEqual([]);
  });

  it("names a chip the board does not have (a Pi 4's testbed on a Pi 5)", () => {
    const problems = chipProblems(sysfs("pi5", [["gpiochip571", "pinctrl-rp1", 54]]));
    expect(problems).toHaveLength(6);
    expect(problems[0]).toBe(
      "boards.0.lines.0.chip: no GPIO chip labelled pinctrl-bcm2711 on this board (it has: pinctrl-rp1; a Pi 4's header is pinctrl-bcm2711, a Pi 5's pinctrl-rp1)",
    );
  });

  it("names an offset past the chip's end, and a kernel without sysfs GPIO", () => {
    const problems = chipProblems(sysfs("short", [["gpiochip512", "pinctrl-bcm2711", 24]]));
    // pi1's lines: 17, 27, 22, 23, 24, 25: the last three and 27 are out of range.
    expect(problems).toEqual([
      "boards.0.lines.1.offset: gpiochip512 (pinctrl-bcm2711) has lines 0-23; offset 27 is out of range",
      "boards.0.lines.4.offset: gpiochip512 (pinctrl-bcm2711) has lines 0-23; offset 24 is out of range",
      "boards.0.lines.5.offset: gpiochip512 (pinctrl-bcm2711) has lines 0-23; offset 25 is out of range",
    ]);
    expect(chipProblems(path.join(dir, "absent"))).toEqual([
      expect.stringMatching(
        /^boards\.0\.gpio: cannot read .*absent \(ENOENT\): this kernel has no sysfs GPIO; set gpio: gpiod/,
      ),
    ]);
  });

  it("lists a gpio: gpiod board's chips with gpiodetect, and names a wrong label, an offset past the end, and a missing tool", () => {
    const file = path.join(dir, "pi-lab-gpiod.yaml");
    writeFileSync(
      file,
      readFileSync(piLab, "utf8").replace("  - id: pi1\n", "  - id: pi1\n    gpio: gpiod\n"),
    );
    const fake = (name: string, listing: string) => {
      const tool = path.join(dir, name);
      writeFileSync(tool, `#!/bin/sh\ncat <<'EOF'\n${listing}EOF\n`);
      chmodSync(tool, 0o755);
      return tool;
    };
    const problems = (gpiodetect: string) => {
      const loaded = loadTestbedFile(file, { files: { kind: "board", board: "pi1" }, gpiodetect });
      return loaded.ok
        ? []
        : loaded.problems
            .filter((p) => p.path.includes("lines") || p.path.at(-1) === "gpio")
            .map((p) => `${p.path.join(".")}: ${p.message}`);
    };
    // A Pi 4 (v1 and v2 print the same).
    expect(
      problems(
        fake(
          "gpiodetect-pi4",
          "gpiochip0 [pinctrl-bcm2711] (58 lines)\ngpiochip1 [raspberrypi-exp-gpio] (8 lines)\n",
        ),
      ),
    ).toEqual([]);
    // A Pi 5: its header is pinctrl-rp1.
    const pi5 = problems(
      fake(
        "gpiodetect-pi5",
        "gpiochip0 [gpio-brcmstb@107d508500] (32 lines)\ngpiochip4 [pinctrl-rp1] (54 lines)\n",
      ),
    );
    expect(pi5).toHaveLength(6);
    expect(pi5[0]).toBe(
      "boards.0.lines.0.chip: no GPIO chip labelled pinctrl-bcm2711 on this board (it has: gpio-brcmstb@107d508500, pinctrl-rp1; a Pi 4's header is pinctrl-bcm2711, a Pi 5's pinctrl-rp1)",
    );
    expect(
      problems(fake("gpiodetect-short", "gpiochip0 [pinctrl-bcm2711] (24 lines)\n")),
    ).toHaveLength(3);
    expect(problems(path.join(dir, "no-such-gpiodetect"))).toEqual([
      expect.stringMatching(
        /^boards\.0\.gpio: cannot list the GPIO chips with .*no-such-gpiodetect \(.*ENOENT\): install the libgpiod tools \(apt install gpiod\)$/,
      ),
    ]);
  });
});
