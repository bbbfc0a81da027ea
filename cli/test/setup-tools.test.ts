/**
 * The set-up the README's two commands share (`scripts/ensure-tools.mjs`): what it says when
 * it cannot find or install a tool, and that it does not stop when the tools are there.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const script = path.join(root, "scripts", "ensure-tools.mjs");
const shPath = spawnSync("sh", ["-c", "command -v sh"], { encoding: "utf8" }).stdout.trim();
// A PATH with a shell and nothing else: no socat, no apt-get.
const bare = mkdtempSync(path.join(tmpdir(), "smw-bare-path-"));
symlinkSync(shPath, path.join(bare, "sh"));
afterAll(() => rmSync(bare, { recursive: true, force: true }));

const run = (purpose: string, env: NodeJS.ProcessEnv = process.env) =>
  spawnSync(process.execPath, [script, purpose], { encoding: "utf8", env });

describe("the set-up of npm run demo and npm test", () => {
  it("without socat and with no way to install it, says what to install and exits 2", () => {
    for (const [purpose, who] of [
      ["demo", "smw demo"],
      ["test", "smw tests"],
    ] as const) {
      const r = run(purpose, { ...process.env, PATH: bare });
      expect(r.status).toBe(2);
      expect(r.stderr).toMatch(new RegExp(`^${who}: socat is not installed; `));
      expect(r.stderr).toMatch(/apt-get install socat/);
      expect(r.stderr).toMatch(/real PTY pair with socat/);
    }
  });

  it("with socat there, says nothing and goes on", () => {
    const r = run("demo");
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
  });

  it("refuses a purpose it does not know", () => {
    const r = run("deploy");
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/usage: node scripts\/ensure-tools\.mjs demo\|test/);
  });
});
