// How busy the machine is with other work, sampled before a benchmark starts. A benchmark shares
// the cores with whatever else runs (a niced job too, which takes what the benchmark leaves
// between its turns), and its figures then say little: a simulation at nice 19 on both cores of
// a 2-core machine halved the kv benchmark's raw TCP floor and took its n = 6 ratio from 0.05 to
// 0.04.
import { readFileSync } from "node:fs";

/** Above this share of the machine busy before a benchmark, its figures are called unreliable. */
export const BUSY_WARNING_SHARE = 0.1;

/** The machine's CPU time so far, busy and in all, in jiffies (Linux `/proc/stat`); undefined elsewhere. */
export function cpuJiffies() {
  try {
    const fields = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1);
    const [user, nice, system, idle, iowait, irq, softirq, steal] = fields.map(Number);
    const busy = user + nice + system + irq + softirq + steal;
    const all = busy + idle + iowait;
    return Number.isFinite(all) ? { busy, all } : undefined;
  } catch {
    return undefined;
  }
}

/** The share (0 to 1) of every core's time that was busy over the next `sampleMs`; undefined where unknown. */
export async function busyShare(sampleMs) {
  const before = cpuJiffies();
  if (before === undefined) return undefined;
  await new Promise((resolve) => setTimeout(resolve, sampleMs));
  const after = cpuJiffies();
  if (after === undefined || after.all <= before.all) return undefined;
  return (after.busy - before.busy) / (after.all - before.all);
}

/** What to print before benchmark `name` if the machine was `share` busy, or undefined. */
export function busyWarning(name, share) {
  if (share === undefined || share <= BUSY_WARNING_SHARE) return undefined;
  return `warning: before ${name} started, the machine's cores were ${(share * 100).toFixed(0)}% busy with other work: its figures will be low and its ratios skewed; run it on an idle machine`;
}
