/** The rig's serial links: one socat PTY pair per link, registered so nothing outlives the rig, and cuttable. */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, rmSync } from "node:fs";
import path from "node:path";
import type { ProcessRegistry } from "./process-registry.js";

export class PtyLinks {
  private readonly pairs = new Map<string, { kill(): void; a: string; b: string }>();

  constructor(private readonly registry: ProcessRegistry) {}

  async add(a: string, b: string, what: string): Promise<void> {
    for (const end of [a, b]) {
      mkdirSync(path.dirname(end), { recursive: true });
      rmSync(end, { force: true });
    }
    const child = spawn("socat", [`pty,raw,echo=0,link=${a}`, `pty,raw,echo=0,link=${b}`], {
      stdio: "ignore",
    });
    this.registry.add(child, what, false);
    const deadline = Date.now() + 5_000;
    while (!(existsSync(a) && existsSync(b))) {
      if (Date.now() > deadline || child.exitCode !== null)
        throw new Error(`socat did not make the PTY pair for the ${what} (${a}, ${b})`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    this.pairs.set(what, { kill: () => child.kill("SIGKILL"), a, b });
  }

  /** Cuts a link: its PTY pair is gone, both ends see the line drop. */
  cut(what: string): boolean {
    const pair = this.pairs.get(what);
    if (pair === undefined) return false;
    pair.kill();
    this.pairs.delete(what);
    return true;
  }

  names(): string[] {
    return [...this.pairs.keys()];
  }
}
