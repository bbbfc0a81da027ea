/**
 * `smw rig demo`: the 6-host rig, a client load throughout, one host's SM code
 * tampered into a Byzantine replica and another host's stored state corrupted,
 * then rejuvenation periods until each has been found and cleaned. With two
 * periods the faults land after the first (a clean baseline); with one, as
 * soon as the service is healthy, before the tampered hosts' turns.
 */
import type { Testbed } from "@smw/wiring";
import { type RigRunResult, runRig } from "./rig-run.js";

export interface DemoOptions {
  testbedFile: string;
  periods: number;
  outDir?: string;
  say: (line: string) => void;
  netns?: boolean;
}

/** The demo's victims: the middle hosts of the rejuvenation order, so their turn comes after the faults. */
export function demoVictims(testbed: Testbed): { byzantine: string; corrupted: string } {
  const order = testbed.rejuvenation.groups.flat();
  const byzantine = order[Math.floor(order.length / 2) - 1] ?? order[0];
  const corrupted = order[Math.floor(order.length / 2) + 1] ?? order[order.length - 1];
  if (byzantine === undefined || corrupted === undefined)
    throw new RangeError("the testbed has no hosts");
  return { byzantine, corrupted };
}

export async function runDemo(options: DemoOptions): Promise<RigRunResult> {
  return runRig({
    testbedFile: options.testbedFile,
    title: `smw rig demo: ${options.periods} rejuvenation period${options.periods === 1 ? "" : "s"}`,
    periods: options.periods,
    say: options.say,
    ...(options.netns ? { netns: true } : {}),
    ...(options.outDir === undefined ? {} : { outDir: options.outDir }),
    scenario: async (rig, context) => {
      const { byzantine, corrupted } = demoVictims(rig.testbed);
      if (options.periods >= 2) {
        const tP = rig.testbed.rejuvenation.tPMs ?? 0;
        await context.periodComplete(options.periods - 2, (options.periods - 1) * tP + 30_000);
      }
      rig.compromise(byzantine, ["wrong-replies", "equivocate"]);
      // Corrupted while the host is down, so its replica boots from it (a running one would
      // overwrite it at its next checkpoint).
      rig.corruptStateAtNextBoot(corrupted);
    },
  });
}
