/** Faults written to files: what an intruder or a failing disk does to a host's disk, its stored state, or the golden media. */
import { closeSync, openSync, readdirSync, readSync, statSync, writeSync } from "node:fs";
import path from "node:path";
import { SEGMENT_DIR } from "@smw/host-agent";
import { encodeSmImage } from "../rig/sm-image.js";

/** Flips `count` bytes of `file` starting at `offsetBytes` (every bit inverted). */
export function corruptBytes(file: string, offsetBytes: number, count: number): void {
  const fd = openSync(file, "r+");
  try {
    const buffer = Buffer.alloc(count);
    const read = readSync(fd, buffer, 0, count, offsetBytes);
    if (read === 0) throw new RangeError(`${file}: nothing at offset ${offsetBytes}`);
    for (let i = 0; i < read; i++) buffer[i] = (buffer[i] as number) ^ 0xff;
    writeSync(fd, buffer, 0, read, offsetBytes);
  } finally {
    closeSync(fd);
  }
}

/** Overwrites an SM code image with a Byzantine variant of the same size. */
export function plantByzantineCode(smImage: string, behaviours: readonly string[]): void {
  const fd = openSync(smImage, "r+");
  try {
    const size = readSync(fd, Buffer.alloc(1), 0, 1, 0) === 1 ? sizeOf(fd) : 0;
    const image = encodeSmImage({ kind: "byzantine", behaviours }, size);
    writeSync(fd, image, 0, image.length, 0);
  } finally {
    closeSync(fd);
  }
}

function sizeOf(fd: number): number {
  let size = 0;
  const probe = Buffer.alloc(64 * 1024);
  for (;;) {
    const n = readSync(fd, probe, 0, probe.length, size);
    if (n === 0) return size;
    size += n;
  }
}

/**
 * Corrupts every checkpoint file in a host's state folder, and every segment their partitions
 * are kept in (`partitions/`); returns the files hit.
 */
export function corruptStoredState(stateDir: string): string[] {
  const hit: string[] = [];
  const corruptEach = (folder: string, wanted: (name: string) => boolean) => {
    let names: string[];
    try {
      names = readdirSync(folder);
    } catch {
      return;
    }
    for (const name of names) {
      if (!wanted(name) || name.endsWith(".tmp")) continue;
      const file = path.join(folder, name);
      corruptBytes(file, Math.floor(statSync(file).size / 2), 32);
      hit.push(file);
    }
  };
  corruptEach(stateDir, (name) => /checkpoint/i.test(name));
  corruptEach(path.join(stateDir, SEGMENT_DIR), (name) => name.endsWith(".seg"));
  return hit;
}
