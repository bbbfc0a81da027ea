/**
 * The Raspberry Pi `config.txt` lines that put a board's GPIO lines at their safe levels from the
 * moment the firmware starts, until the daemon claims them; and, for each line, whether an
 * external pull resistor is needed for the second or so before that (from power-on the SoC's
 * own pulls hold the pins: on BCM2835-BCM2711, GPIO 0-8 pulled high, 9-27 pulled low).
 */
import type { Board, Line } from "@smw/wiring";
import { physicalHigh } from "../lines/line.js";

/** The SoC's GPIO controllers whose header pins `gpio=` in config.txt can set. */
const SOC_CHIPS = new Set(["pinctrl-bcm2835", "pinctrl-bcm2711", "pinctrl-rp1"]);
const BCM_CHIPS = new Set(["pinctrl-bcm2835", "pinctrl-bcm2711"]);

export interface ConfigTxtLine {
  line: Line;
  /** The config.txt line, where the firmware can set it. */
  gpio?: string;
  /** What holds the line from power-on until the firmware applies config.txt. */
  resistor: string;
}

export function configTxtLines(board: Board): ConfigTxtLine[] {
  return board.lines.map((line) => {
    const high = physicalHigh(line.safe, line.activeLow);
    const level = high ? "high" : "low";
    if (!SOC_CHIPS.has(line.chip) || line.offset > 27)
      return {
        line,
        resistor: `an external pull-${high ? "up" : "down"} resistor (10 kΩ to ${high ? "3V3" : "GND"}): ${line.chip}/${line.offset} is not a header GPIO the firmware sets, so nothing else holds it ${level} until the daemon claims it`,
      };
    const gpio = `gpio=${line.offset}=op,${high ? "dh" : "dl"}`;
    if (BCM_CHIPS.has(line.chip)) {
      const socPullHigh = line.offset <= 8;
      return {
        line,
        gpio,
        resistor:
          socPullHigh === high
            ? `none needed: GPIO ${line.offset} is pulled ${level} by the SoC from power-on`
            : `an external pull-${high ? "up" : "down"} resistor (10 kΩ to ${high ? "3V3" : "GND"}, stronger than the SoC's ~50 kΩ pull-${high ? "down" : "up"} on GPIO ${line.offset}) to hold it ${level} from power-on until the firmware applies config.txt`,
      };
    }
    return {
      line,
      gpio,
      resistor: `an external pull-${high ? "up" : "down"} resistor (10 kΩ to ${high ? "3V3" : "GND"}) to hold it ${level} from power-on until the firmware applies config.txt (check ${line.chip}'s reset pulls for GPIO ${line.offset})`,
    };
  });
}

/** The text `smw deploy config-txt` prints: a block to append to /boot/firmware/config.txt. */
export function renderConfigTxt(board: Board, testbedName: string): string {
  const lines = configTxtLines(board);
  const out = [
    `# smw: board ${board.id} of testbed ${testbedName}, guarding ${board.guards}.`,
    "# Append to /boot/firmware/config.txt (Raspberry Pi OS Bookworm): each line is driven to its",
    "# safe level by the firmware at boot, long before smw board run claims it.",
  ];
  for (const { line, gpio } of lines) {
    const what = `${line.role}${line.activeLow ? " (active-low)" : ""}, safe ${line.safe}`;
    out.push(
      gpio === undefined
        ? `# ${what}: ${line.chip}/${line.offset} cannot be set here`
        : `${gpio}    # ${what}`,
    );
  }
  out.push("#", "# Pull resistors, for the time from power-on until the firmware runs:");
  for (const { line, resistor } of lines) out.push(`#   ${line.role}: ${resistor}`);
  return `${out.join("\n")}\n`;
}
