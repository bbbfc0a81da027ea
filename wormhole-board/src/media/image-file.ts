/**
 * The images a board checks: regular files or block devices. A block device
 * reports size 0 through stat, so its size comes from sysfs.
 */
import { closeSync, fstatSync, openSync, readFileSync, readlinkSync, readSync } from "node:fs";
import { getPriority, setPriority } from "node:os";
import { MediaError } from "./media-error.js";

export interface OpenImage {
  fd: number;
  sizeBytes: number;
  kind: "file" | "block-device";
}

/** The page a restore writes in: flash and SD cards wear by the page. */
export const PAGE_SIZE_BYTES = 4096;
export function openImage(file: string, flags: "r" | "r+", what: string): OpenImage {
  let fd: number;
  try {
    fd = openSync(file, flags);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason =
      code === "ENOENT"
        ? "no such file"
        : code === "EACCES" || code === "EPERM"
          ? "permission denied"
          : code === "EROFS"
            ? "read-only file system"
            : (error as Error).message;
    throw new MediaError(`${file}: cannot open the ${what} (${reason})`);
  }
  try {
    const stat = fstatSync(fd, { bigint: true });
    if (stat.isFile()) return { fd, sizeBytes: Number(stat.size), kind: "file" };
    if (stat.isBlockDevice())
      return { fd, sizeBytes: blockDeviceSize(file, stat.rdev), kind: "block-device" };
    throw new MediaError(`${file}: the ${what} is neither a regular file nor a block device`);
  } catch (error) {
    closeSync(fd);
    throw error;
  }
}

function blockDeviceSize(file: string, rdev: bigint): number {
  // Linux's dev_t encoding (see <sys/sysmacros.h>).
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  try {
    const sectors = Number(readFileSync(`/sys/dev/block/${major}:${minor}/size`, "utf8").trim());
    return sectors * 512;
  } catch (error) {
    throw new MediaError(
      `${file}: cannot read the size of block device ${major}:${minor} (${(error as Error).message})`,
    );
  }
}

/** Reads exactly `length` bytes at `position` (short reads retried); throws on a short file. */
export function readFully(
  fd: number,
  buffer: Buffer,
  length: number,
  position: number,
  file: string,
): void {
  let done = 0;
  while (done < length) {
    let n: number;
    try {
      n = readSync(fd, buffer, done, length - done, position + done);
    } catch (error) {
      throw new MediaError(
        `${file}: read error at byte ${position + done} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
      );
    }
    if (n === 0)
      throw new MediaError(
        `${file}: ends at byte ${position + done}, expected ${position + length}`,
      );
    done += n;
  }
}

/** How far below the thread that starts them the media workers run (nice steps). */
export const MEDIA_WORKER_NICE_STEPS = 10;

/**
 * Lowers the priority of the calling thread (Linux: a thread has a nice value of its own, and a
 * new thread starts with its creator's), so that media workers using every core leave the
 * board's event loop, and its timers, first in line. Relative to the event loop, not to an
 * absolute level: a board whose loop runs at nice -10 gets its workers at nice 0, the level of
 * any other work on the machine. Set absolutely to nice 10, they would wait behind every
 * ordinary process: where the board shares its CPU (the simulated rig, under a test or a
 * browser), a 30 ms check of an 8 MiB image then took over 250 ms. Returns the nice value set,
 * or undefined when nothing changed: not Linux, or not allowed.
 *
 * Not when the event loop runs real-time (`smw board run`'s default where permitted): a thread it
 * starts is already below it (reset-on-fork gives it the normal policy, nice 0), and lowering it
 * further lets other work on the machine starve it while it holds a lock the event loop then
 * waits for (measured during a 1 GiB restore: one 5-18 ms timer stall per restore at nice 10,
 * none over 4 ms at nice 0).
 */
export function yieldToTheBoard(): number | undefined {
  try {
    if (eventLoopIsRealtime()) return undefined;
    const tid = Number(readlinkSync("/proc/thread-self").split("/").pop());
    if (!Number.isSafeInteger(tid) || tid <= 0) return undefined;
    const nice = Math.min(19, getPriority(tid) + MEDIA_WORKER_NICE_STEPS);
    setPriority(tid, nice);
    return getPriority(tid);
  } catch {
    // Not Linux, or not allowed: the workers keep their priority.
    return undefined;
  }
}

/** Whether the process's main thread (the event loop's) runs under SCHED_FIFO or SCHED_RR. */
function eventLoopIsRealtime(): boolean {
  // /proc/self/stat is the main thread's; field 41 is the policy (1 FIFO, 2 RR). The command
  // name (field 2) may hold spaces and parentheses: count from its closing one.
  const stat = readFileSync("/proc/self/stat", "utf8");
  const policy = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[38]);
  return policy === 1 || policy === 2;
}
