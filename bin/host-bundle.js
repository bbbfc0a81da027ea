// Loads the one-file bundle of `smw host ...` and `smw kv ...` (cli/dist/smw-host.bundle.cjs) with
// V8's code cache, made by the build: a payload host starts its agent and its replica at every
// boot, and a start that finds the bundle's bytecode ready skips compiling it (about a fifth of the
// start beyond node's own on an idle machine, more where the host's CPU is slow or shared).
//
// The cache file starts with a line naming the SHA-256 of the bundle it was made from and that of
// the cache's own bytes. V8 checks only a cache's length of source, flags and version, not its
// contents: a cache from another bundle of the same length would be taken, and a corrupted one
// (a bad SD card sector) crashes node or runs wrong code. One that names another bundle, whose
// bytes do not match, or that V8 refuses (another node, other flags) is left unused, and the
// bundle compiles as without it.
import { createHash } from "node:crypto";
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from "node:fs";
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

const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");

/**
 * Runs the bundle as a CommonJS module and returns its exports, with `cache`: "used" (V8 took
 * it), "absent", "unreadable", "stale" (made from another bundle, or not a cache file), "corrupt" (its bytes
 * are not those it was written with) or "rejected" (V8 refused it: another node or other flags);
 * and `writeCache()`, which saves to `cacheFile` V8's cache of all the bundle compiled so far.
 */
export function loadHostBundle(bundle = HOST_BUNDLE, cacheFile = codeCacheFile(bundle)) {
  const bytes = readFileSync(bundle);
  const prefix = `${HEADER} ${sha256(bytes)} `;
  let cache = "absent";
  let cachedData;
  try {
    const stored = readFileSync(cacheFile);
    const newline = stored.indexOf(10);
    const header = stored.toString("latin1", 0, Math.max(newline, 0));
    if (newline < 0 || !header.startsWith(prefix)) cache = "stale";
    else if (header.slice(prefix.length) !== sha256(stored.subarray(newline + 1)))
      cache = "corrupt";
    else cachedData = stored.subarray(newline + 1);
  } catch (error) {
    // No cache, or one that cannot be read: compiled as without one.
    if (error.code !== "ENOENT") cache = "unreadable";
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
      const data = script.createCachedData();
      // Written whole and flushed, then renamed: a host that boots meanwhile, or after a power
      // cut, reads the old file or the new one, never a part.
      const temporary = `${cacheFile}.${process.pid}.tmp`;
      const fd = openSync(temporary, "w");
      try {
        writeSync(fd, Buffer.from(`${prefix}${sha256(data)}\n`, "latin1"));
        writeSync(fd, data);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(temporary, cacheFile);
    },
  };
}

/** How a log line says what became of the cache, with what to do where it was not used. */
export function describeCache(cache) {
  const remedy = "`npm run build` on this machine makes a new one";
  switch (cache) {
    case "used":
      return "code cache used";
    case "absent":
      return `no code cache (${remedy})`;
    case "stale":
      return `code cache not this bundle's, not used (${remedy})`;
    case "unreadable":
      return "code cache unreadable, not used (its file's mode or owner?)";
    case "corrupt":
      return `code cache corrupt, not used (${remedy})`;
    default:
      return `code cache refused by V8: made by another node or under other flags (${remedy})`;
  }
}
