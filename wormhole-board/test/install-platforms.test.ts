/**
 * The lock file installs on the boards' platforms: linux on x64, arm64 (Raspberry Pi 4/5 with a
 * 64-bit OS) and 32-bit arm (armhf). npm has been known to record only the binding of the
 * platform the lock was made on; a board then dies at load time with "Cannot find native binding".
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

interface LockedPackage {
  version?: string;
  dev?: boolean;
  optional?: boolean;
  os?: string[];
  cpu?: string[];
  libc?: string[];
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const lock = JSON.parse(readFileSync(path.join(root, "package-lock.json"), "utf8")) as {
  packages: Record<string, LockedPackage>;
};
const locked = (name: string): LockedPackage | undefined => lock.packages[`node_modules/${name}`];

/** Runtime packages whose binding may be missing on a platform, and what stands in for it there. */
const PURE_JS_FALLBACK: Record<string, string> = { "@napi-rs/blake-hash": "@noble/hashes" };

/** Packages with native bindings per platform: each binding's name and its lock entry. */
function withPlatformBindings(): { name: string; dev: boolean; bindings: LockedPackage[] }[] {
  return Object.entries(lock.packages).flatMap(([key, entry]) => {
    const bindings = Object.keys(entry.optionalDependencies ?? {})
      .map((name) => locked(name))
      .filter((b): b is LockedPackage => b !== undefined && (b.os ?? []).includes("linux"));
    return bindings.length === 0
      ? []
      : [{ name: key.replace(/^.*node_modules\//, ""), dev: entry.dev === true, bindings }];
  });
}

const hasBinding = (bindings: LockedPackage[], cpu: string) =>
  bindings.some(
    (b) => (b.cpu ?? []).includes(cpu) && (b.libc === undefined || b.libc.includes("glibc")),
  );

describe("the lock file on the boards' platforms", () => {
  it("locks every optional dependency a locked package declares (no platform dropped)", () => {
    const dropped = Object.entries(lock.packages).flatMap(([key, entry]) =>
      Object.keys(entry.optionalDependencies ?? {})
        .filter(
          (name) =>
            locked(name) === undefined &&
            lock.packages[`${key}/node_modules/${name}`] === undefined,
        )
        .map((name) => `${key} -> ${name}`),
    );
    expect(dropped).toEqual([]);
  });

  it("finds native bindings of runtime and build packages for linux x64 and arm64", () => {
    const packages = withPlatformBindings();
    expect(packages.map((p) => p.name)).toContain("@napi-rs/blake-hash");
    const missing = packages.flatMap(({ name, bindings }) =>
      ["x64", "arm64"]
        .filter((cpu) => !hasBinding(bindings, cpu))
        .map((cpu) => `${name} on linux-${cpu}`),
    );
    expect(missing).toEqual([]);
  });

  it("on 32-bit arm, every runtime package has a binding or a pure-JS stand-in that is locked", () => {
    const uncovered = withPlatformBindings()
      .filter(({ dev, bindings }) => !dev && !hasBinding(bindings, "arm"))
      .filter(({ name }) => {
        const standIn = PURE_JS_FALLBACK[name];
        const entry = standIn === undefined ? undefined : locked(standIn);
        return entry === undefined || entry.dev === true;
      })
      .map(({ name }) => name);
    expect(uncovered).toEqual([]);
  });
});

describe("install scripts", () => {
  it("approves in package.json every locked package's install script (npm 12 skips the others)", () => {
    const manifest = JSON.parse(readFileSync(path.join(root, "package.json"), "utf8")) as {
      allowScripts?: Record<string, boolean>;
    };
    const withScripts = Object.entries(lock.packages)
      .filter(
        ([key, entry]) => key !== "" && (entry as { hasInstallScript?: boolean }).hasInstallScript,
      )
      .map(([key]) => key.replace(/^.*node_modules\//, ""));
    // serialport's binding (built where no prebuilt one fits) and onoff's epoll, at least.
    expect(withScripts).toEqual(expect.arrayContaining(["@serialport/bindings-cpp", "epoll"]));
    const unapproved = withScripts.filter((name) => manifest.allowScripts?.[name] !== true);
    expect(unapproved).toEqual([]);
  });
});
