// A write-throttled disk for the link benchmark: an ext4 file system on a loop device that takes
// writes at `writeBytesPerSecond` at most (the block I/O controller's limit for that device,
// cgroup v1 `blkio.throttle.write_bps_device` or v2 `io.max wbps`), as a slow SD card would. Needs root, a free loop device and one of those controllers; otherwise it
// says why not and the benchmark skips the measurement. `close()` undoes every step, in reverse.
import { execFileSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";

const V1 = "/sys/fs/cgroup/blkio";
const V2 = "/sys/fs/cgroup";

/** @returns {{ dir: string, device: string, close(): void } | { skipped: string }} */
export function throttledTarget(workDir, sizeBytes, writeBytesPerSecond) {
  if (process.platform !== "linux") return { skipped: "Linux only" };
  if (process.getuid?.() !== 0) return { skipped: "needs root (a loop device and a cgroup)" };
  const v1 = existsSync(path.join(V1, "blkio.throttle.write_bps_device"));
  const v2 =
    !v1 &&
    existsSync(path.join(V2, "cgroup.controllers")) &&
    readFileSync(path.join(V2, "cgroup.controllers"), "utf8").split(/\s+/).includes("io");
  if (!v1 && !v2) return { skipped: "no block I/O cgroup controller (blkio or io) here" };
  const undo = [];
  const close = () => {
    for (const step of undo.reverse()) {
      try {
        step();
      } catch {
        // Undo the rest regardless.
      }
    }
    undo.length = 0;
  };
  try {
    const backing = path.join(workDir, "throttled.ext4");
    writeFileSync(backing, "");
    undo.push(() => rmSync(backing, { force: true }));
    truncateSync(backing, sizeBytes + 256 * 1024 * 1024);
    const device = execFileSync("losetup", ["-f", "--show", backing], { encoding: "utf8" }).trim();
    undo.push(() => execFileSync("losetup", ["-d", device]));
    execFileSync("mkfs.ext4", ["-q", "-F", device]);
    const dir = path.join(workDir, "throttled");
    mkdirSync(dir, { recursive: true });
    execFileSync("mount", [device, dir]);
    undo.push(() => execFileSync("umount", [dir]));
    const majorMinor = readFileSync(`/sys/block/${path.basename(device)}/dev`, "utf8").trim();
    if (v1) {
      // cgroup v1 charges write-back to the flusher threads, not to the process that dirtied the
      // pages: the limit is set for the device in the root group, so it holds for every writer.
      const limit = path.join(V1, "blkio.throttle.write_bps_device");
      writeFileSync(limit, `${majorMinor} ${writeBytesPerSecond}`);
      undo.push(() => writeFileSync(limit, `${majorMinor} 0`));
    } else {
      // cgroup v2 charges write-back to the group that dirtied the pages: this process goes into
      // a group of its own, limited on that device.
      writeFileSync(path.join(V2, "cgroup.subtree_control"), "+io");
      const group = path.join(V2, `smw-bench-${process.pid}`);
      mkdirSync(group);
      undo.push(() => rmdirSync(group));
      writeFileSync(path.join(group, "io.max"), `${majorMinor} wbps=${writeBytesPerSecond}`);
      writeFileSync(path.join(group, "cgroup.procs"), String(process.pid));
      undo.push(() => writeFileSync(path.join(V2, "cgroup.procs"), String(process.pid)));
    }
    return { dir, device, close };
  } catch (error) {
    close();
    return { skipped: `could not set it up: ${error.message.split("\n")[0]}` };
  }
}
