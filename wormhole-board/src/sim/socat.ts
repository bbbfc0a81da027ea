/** socat PTY pairs: real serial devices for the simulated links. */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";

/** Why socat PTY pairs cannot be made here, or undefined when they can. */
export function socatUnavailable(): string | undefined {
  const probe = spawnSync("socat", ["-V"], { encoding: "utf8" });
  return probe.status === 0 ? undefined : "socat is not installed (Debian: apt-get install socat)";
}

/** A real PTY pair from socat, its two ends linked at `a` and `b`. */
export async function ptyPair(a: string, b: string): Promise<{ close(): Promise<void> }> {
  const child: ChildProcess = spawn(
    "socat",
    [`pty,raw,echo=0,link=${a}`, `pty,raw,echo=0,link=${b}`],
    { stdio: "ignore" },
  );
  const deadline = Date.now() + 5_000;
  while (!(existsSync(a) && existsSync(b))) {
    if (Date.now() > deadline || child.exitCode !== null)
      throw new Error(`socat did not make ${a} and ${b}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return {
    close: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) resolve();
        else {
          child.once("exit", () => resolve());
          child.kill("SIGTERM");
        }
      }),
  };
}
