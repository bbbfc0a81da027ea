/**
 * The Raspberry Pi's 40-pin header (the same on the Pi 2 to 5): which physical pin carries each
 * GPIO of the SoC's header bank, and where the grounds are. On a Pi 5 the header GPIOs are the
 * RP1's lines 0-27, numbered as before.
 */

/** GPIO number -> physical pin. */
const HEADER_PIN: ReadonlyMap<number, number> = new Map([
  [2, 3],
  [3, 5],
  [4, 7],
  [14, 8],
  [15, 10],
  [17, 11],
  [18, 12],
  [27, 13],
  [22, 15],
  [23, 16],
  [24, 18],
  [10, 19],
  [9, 21],
  [25, 22],
  [11, 23],
  [8, 24],
  [7, 26],
  [0, 27],
  [1, 28],
  [5, 29],
  [6, 31],
  [12, 32],
  [13, 33],
  [19, 35],
  [16, 36],
  [26, 37],
  [20, 38],
  [21, 40],
]);

export const HEADER_GROUND_PINS: readonly number[] = [6, 9, 14, 20, 25, 30, 34, 39];

/** The SoC GPIO controllers whose lines 0-27 are on the header. */
const HEADER_CHIPS = new Set(["pinctrl-bcm2835", "pinctrl-bcm2711", "pinctrl-rp1"]);

/** The header pin of a line, if it is on the header. */
export function headerPin(chip: string, offset: number): number | undefined {
  return HEADER_CHIPS.has(chip) ? HEADER_PIN.get(offset) : undefined;
}
