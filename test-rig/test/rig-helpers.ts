import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

export const SMW_BIN = path.resolve("bin/smw.js");

/** A copy of the example rig in a folder of its own: its run folder is made there. */
export function copyRig6(): { dir: string; file: string; remove(): void } {
  const dir = mkdtempSync(path.join(tmpdir(), "smw-rig-"));
  const file = path.join(dir, "rig-6.yaml");
  copyFileSync(path.resolve("wiring/examples/rig-6.yaml"), file);
  return { dir, file, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Pids of running processes whose command line mentions `marker`. */
export function processesMentioning(marker: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${name}/cmdline`, "utf8");
      const state = readFileSync(`/proc/${name}/stat`, "utf8").split(") ")[1]?.[0];
      if (state !== "Z" && cmdline.includes(marker)) pids.push(Number(name));
    } catch {
      // Gone meanwhile.
    }
  }
  return pids;
}

export async function eventually(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return check();
}
