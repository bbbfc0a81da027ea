// Loads the one-file bundle of `smw host ...` and `smw kv ...` (cli/dist/smw-host.bundle.cjs) with
// V8's code cache, made by the build: a payload host starts its agent and its replica at every
// boot, and a start that finds the bundle's bytecode ready skips compiling it (about a fifth of the
// start on an idle machine, more where the host's CPU is slow or shared).
//
// The cache file starts with a line naming the SHA-256 of the bundle it was made from: V8 checks
// only a cache's length of source, flags and version, so a cache from another bundle of the same
// length would be taken. One that names another bundle, or that V8 refuses (another node, other
// flags), is left unused and the bundle compiles as without it.
import { createHash } from "node:crypto";
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import vm from "node:vm";

export const HOST_BUNDLE = fileURLToPath(
  new URL("../cli/dist/smw-host.bundle.cjs", import.meta.url),
);

const HEADER = "smw-code-cache-1";

/** The code cache's file for a bundle. */
export function codeCacheFile(bundle) {
  return `${bundle}.code-cache`;
}

/**
 * Runs the bundle as a CommonJS module and returns its exports, with `cache`: "used" (V8 took
 * it), "absent", "stale" (made from another bundle, or not a cache file) or "rejected" (V8
 * refused it); and `writeCache()`, which saves to `cacheFile` V8's cache of all the bundle
 * compiled so far.
 */
export function loadHostBundle(bundle = HOST_BUNDLE, cacheFile = codeCacheFile(bundle)) {
  const bytes = readFileSync(bundle);
  const header = `${HEADER} ${createHash("sha256").update(bytes).digest("hex")}\n`;
  let cache = "absent";
  let cachedData;
  try {
    const stored = readFileSync(cacheFile);
    if (stored.length > header.length && stored.toString("latin1", 0, header.length) === header)
      cachedData = stored.subarray(header.length);
    else cache = "stale";
  } catch {
    // No cache: compiled as without one.
  }
  // The wrapper on the first line, as node's own: line numbers in stack traces stay the bundle's.
  const script = new vm.Script(
    `(function (exports, require, module, __filename, __dirname) { ${bytes.toString("utf8")}\n})`,
    { filename: bundle, ...(cachedData !== undefined ? { cachedData } : {}) },
  );
  if (cachedData !== undefined) cache = script.cachedDataRejected ? "rejected" : "used";
  const module = { exports: {} };
  script.runInThisContext()(
    module.exports,
    createRequire(bundle),
    module,
    bundle,
    path.dirname(bundle),
  );
  return {
    exports: module.exports,
    cache,
    writeCache() {
      // Written whole, then renamed: a host that boots meanwhile reads the old one or the new.
      const temporary = `${cacheFile}.${process.pid}.tmp`;
      writeFileSync(
        temporary,
        Buffer.concat([Buffer.from(header, "latin1"), script.createCachedData()]),
      );
      renameSync(temporary, cacheFile);
    },
  };
}
