/**
 * The benchmark scripts are plain JavaScript run against the build, outside the type-check:
 * every name they take from one of the project's modules must still be exported by it, or
 * `npm run bench` breaks without a test noticing.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

function benchScripts(): string[] {
  const dirs = [
    "bench",
    ...readdirSync(root, { withFileTypes: true })
      .filter((d) => d.isDirectory() && !d.name.startsWith(".") && d.name !== "node_modules")
      .map((d) => path.join(d.name, "bench")),
  ];
  return dirs.flatMap((dir) => {
    try {
      return readdirSync(path.join(root, dir))
        .filter((f) => f.endsWith(".mjs"))
        .map((f) => path.join(dir, f));
    } catch {
      return [];
    }
  });
}

interface Use {
  names: string[];
  /** The module as the script names it, and the folder it is relative to. */
  spec: string;
  base: string;
}

/** `import { a, b as c } from "x"` and `const { a, b } = await import(path.join(root, "x"))`. */
function importsOf(file: string): Use[] {
  const text = readFileSync(path.join(root, file), "utf8");
  const dir = path.dirname(path.join(root, file));
  const names = (list: string) =>
    list
      .split(",")
      .map((n) => n.trim().split(/\s+as\s+|\s*:\s*/)[0] as string)
      .filter((n) => n !== "");
  const uses: Use[] = [];
  for (const m of text.matchAll(/import\s*\{([^}]*)\}\s*from\s*"([^"]+)"/g))
    uses.push({ names: names(m[1] as string), spec: m[2] as string, base: dir });
  for (const m of text.matchAll(
    /const\s*\{([^}]*)\}\s*=\s*await\s+import\(\s*(?:path\.join\(\s*root\s*,\s*)?"([^"]+)"/g,
  ))
    uses.push({
      names: names(m[1] as string),
      spec: m[2] as string,
      base: m[0].includes("path.join") ? root : dir,
    });
  return uses;
}

/** The source a project module is built from; undefined for a third-party package. */
function sourceOf(use: Use): string | undefined {
  if (use.spec.startsWith("@smw/")) return use.spec;
  // A bare name not joined to the repository's root is a package from npm.
  if (!use.spec.startsWith(".") && use.base !== root) return undefined;
  const file = path.resolve(use.base, use.spec);
  const built = file.match(/^(.*)\/dist\/(.*)\.js$/);
  return built === null ? file : `${built[1]}/src/${built[2]}.ts`;
}

describe("benchmark scripts", () => {
  const scripts = benchScripts();

  it("are found", () => {
    expect(scripts).toEqual(
      expect.arrayContaining([
        "wormhole-board/bench/link-bench.mjs",
        "host-agent/bench/kv-bench.mjs",
        "test-rig/bench/rig-bench.mjs",
      ]),
    );
    // Both forms are read: static imports and `await import(path.join(root, ...))`.
    const names = (f: string) => importsOf(f).flatMap((u) => u.names);
    expect(names("wormhole-board/bench/link-bench.mjs")).toContain("openBoardDaemon");
    expect(names("test-rig/bench/rig-bench.mjs")).toEqual(
      expect.arrayContaining(["ClientLoad", "startSingle", "loadTestbedFile"]),
    );
  });

  for (const script of scripts) {
    it(`${script} imports only names the project's modules export`, async () => {
      for (const use of importsOf(script)) {
        const source = sourceOf(use);
        if (source === undefined) continue;
        const mod = (await import(source)) as Record<string, unknown>;
        const missing = use.names.filter((n) => !(n in mod));
        expect(missing, `${script}: from "${use.spec}"`).toEqual([]);
      }
    });
  }
});
