/** `smw ... | head`: a reader that stops early ends the output, with no stack trace for it. */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { describe, expect, it } from "vitest";

describe("smw piped into a reader that closes early", () => {
  it("stops writing, keeps its exit status, and prints no stack trace", async () => {
    const child = spawn(
      process.execPath,
      ["bin/smw.js", "status", "--testbed", "wiring/examples/rig-6.yaml"],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    // Closed before the first line is written: the write fails with EPIPE.
    child.stdout.destroy();
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const [code] = await once(child, "exit");
    expect(stderr).not.toMatch(/EPIPE|Unhandled 'error' event|\n\s+at /);
    // Exit 2 all the same: no board of that testbed could be asked here.
    expect(code).toBe(2);
  });
});
