/**
 * A replica's last checkpoints on stable storage: the newest, written to a temporary
 * file, fsynced, renamed over the old one and the folder fsynced, so a reset
 * at any instant leaves either the old checkpoint or the new one; and the two
 * before it, if older (kept by hard links), which a cold start may need: the
 * replicas then agree on a checkpoint several of them hold, and they took
 * their last ones at different times. Read back
 * defensively: a corrupted file is reported and ignored (the replica then
 * recovers everything from its peers), never trusted and never a crash.
 *
 *   SMWCP1\n <u32 header length> <header JSON: seq, digest, clients> <snapshot bytes>
 */
import {
  closeSync,
  copyFileSync,
  existsSync,
  fsyncSync,
  linkSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  writeSync,
} from "node:fs";
import { open } from "node:fs/promises";
import path from "node:path";
import { parseKvResult } from "../kv/kv-operation.js";
import { decodeSnapshot, encodeSnapshot, type KvSnapshot } from "../kv/kv-snapshot.js";
import { checkpointDigest, clientTableDigest } from "../replica/client-table.js";
import type { ClientTableEntry } from "../replica/messages.js";

const MAGIC = Buffer.from("SMWCP1\n", "latin1");
export const CHECKPOINT_FILE = "checkpoint.smw";
export const PREVIOUS_CHECKPOINT_FILE = "checkpoint.previous.smw";
/**
 * The older checkpoints kept beside the newest, newest first: a cold start agrees on one that
 * k' + k + 1 disks hold, and a replica that lagged, or took its newest by state transfer (and so
 * never held the one before it), shares none of two with the others (the simulation, seed 7834).
 * A replica that found none writes its starting state as checkpoint 0 (`storeStartingState`).
 */
export const OLDER_CHECKPOINT_FILES = [PREVIOUS_CHECKPOINT_FILE, "checkpoint.previous-2.smw"];

export interface StoredCheckpoint {
  seq: number;
  digest: string;
  snapshot: KvSnapshot;
  clients: ClientTableEntry[];
}

/** The file's bytes, in the order they are written. */
function checkpointParts(cp: StoredCheckpoint): Buffer[] {
  const header = Buffer.from(
    JSON.stringify({ seq: cp.seq, digest: cp.digest, clients: cp.clients }),
    "utf8",
  );
  const length = Buffer.alloc(4);
  length.writeUInt32BE(header.length);
  return [MAGIC, length, header, encodeSnapshot(cp.snapshot)];
}

/**
 * The renames that put a written and synced `checkpoint.smw.tmp` in place, one function per
 * system call, in order (both writers run them; a test stops after each). The one it replaces
 * moves down the older ones (`OLDER_CHECKPOINT_FILES`) if it is older; if not (after a cold start
 * rolled the state back, the newer ones on disk are of a state no longer agreed on) the older ones
 * go. Each is moved by a hard link and a rename over the one below, so `checkpoint.smw` exists at
 * every instant: moving it aside first left a moment with none, and a reset then made the
 * replica start with no stored state at all.
 */
export function installSteps(dir: string, seq: number): Array<() => void> {
  const file = path.join(dir, CHECKPOINT_FILE);
  const older = OLDER_CHECKPOINT_FILES.map((name) => path.join(dir, name));
  const replaced = storedSeq(file);
  const steps: Array<() => void> = [];
  const move = (from: string, to: string) => {
    const temporary = `${to}.tmp`;
    steps.push(
      () => rmSync(temporary, { force: true }),
      () => {
        if (existsSync(from)) linkOrCopy(from, temporary);
      },
      () => {
        if (existsSync(temporary)) renameSync(temporary, to);
      },
    );
  };
  if (replaced !== undefined && replaced < seq) {
    for (let i = older.length - 1; i > 0; i--) move(older[i - 1] as string, older[i] as string);
    move(file, older[0] as string);
  } else if (replaced !== undefined)
    for (const name of older) steps.push(() => rmSync(name, { force: true }));
  steps.push(() => renameSync(`${file}.tmp`, file));
  return steps;
}

/** A hard link; a copy, synced, where the file system has none (FAT). */
function linkOrCopy(from: string, to: string): void {
  try {
    linkSync(from, to);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP") throw error;
    copyFileSync(from, to);
    const fd = openSync(to, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
}

export function writeCheckpointFile(dir: string, cp: StoredCheckpoint): void {
  const file = path.join(dir, CHECKPOINT_FILE);
  const temporary = `${file}.tmp`;
  const fd = openSync(temporary, "w", 0o600);
  try {
    for (const part of checkpointParts(cp)) {
      let written = 0;
      while (written < part.length) written += writeSync(fd, part, written);
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  for (const step of installSteps(dir, cp.seq)) step();
  const dirFd = openSync(dir, "r");
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
}

/**
 * The same, with the writes and syncs on node's thread pool: the replica's event loop goes on
 * ordering requests meanwhile. The snapshot is encoded first, on the caller's thread, so later
 * changes to the state cannot reach the file.
 */
export async function writeCheckpointFileInBackground(
  dir: string,
  cp: StoredCheckpoint,
): Promise<void> {
  const parts = checkpointParts(cp);
  const file = path.join(dir, CHECKPOINT_FILE);
  const temporary = `${file}.tmp`;
  const handle = await open(temporary, "w", 0o600);
  try {
    for (const part of parts) {
      let written = 0;
      while (written < part.length)
        written += (await handle.write(part, written, part.length - written)).bytesWritten;
    }
    await handle.sync();
  } finally {
    await handle.close();
  }
  for (const step of installSteps(dir, cp.seq)) step();
  const dirHandle = await open(dir, "r");
  try {
    await dirHandle.sync();
  } finally {
    await dirHandle.close();
  }
}

/** The sequence number in a checkpoint file's header, if it has a readable one. */
function storedSeq(file: string): number | undefined {
  let fd: number;
  try {
    fd = openSync(file, "r");
  } catch {
    return undefined;
  }
  try {
    const head = Buffer.alloc(MAGIC.length + 4 + 64);
    const got = readSync(fd, head, 0, head.length, 0);
    const match = /"seq":(\d+)/.exec(head.subarray(MAGIC.length + 4, got).toString("utf8"));
    return match ? Number(match[1]) : undefined;
  } finally {
    closeSync(fd);
  }
}

export type StoredCheckpointRead =
  | { checkpoint: StoredCheckpoint }
  | { none: true }
  | { error: string };

/** The stored checkpoint, none, or why the file cannot be used. */
export function readCheckpointFile(dir: string, name = CHECKPOINT_FILE): StoredCheckpointRead {
  const file = path.join(dir, name);
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { none: true };
    return { error: `${file}: ${(error as Error).message}` };
  }
  const bad = (why: string) => ({ error: `${file}: ${why}` });
  if (bytes.length < MAGIC.length + 4 || !bytes.subarray(0, MAGIC.length).equals(MAGIC))
    return bad("not a checkpoint file (bad magic)");
  const headerLength = bytes.readUInt32BE(MAGIC.length);
  const start = MAGIC.length + 4;
  if (headerLength > bytes.length - start) return bad("header runs past the end of the file");
  let header: { seq?: unknown; digest?: unknown; clients?: unknown };
  try {
    header = JSON.parse(bytes.subarray(start, start + headerLength).toString("utf8"));
  } catch {
    return bad("header is not JSON");
  }
  if (!Number.isSafeInteger(header.seq) || (header.seq as number) < 0)
    return bad("header: seq is not a sequence number");
  if (typeof header.digest !== "string" || !/^[0-9a-f]{64}$/.test(header.digest))
    return bad("header: digest is not a SHA-256 digest");
  if (!Array.isArray(header.clients)) return bad("header: clients is not a list");
  const clients: ClientTableEntry[] = [];
  for (const c of header.clients as Array<Record<string, unknown>>) {
    const result = parseKvResult(c?.result);
    if (
      typeof c?.client !== "string" ||
      !Number.isSafeInteger(c.ts) ||
      !Number.isSafeInteger(c.seq) ||
      (c.seq as number) < 0 ||
      "error" in result
    )
      return bad("header: a client entry is malformed");
    clients.push({ client: c.client, ts: c.ts as number, result, seq: c.seq as number });
  }
  const snapshot = decodeSnapshot(bytes.subarray(start + headerLength));
  if ("error" in snapshot) return bad(`state: ${snapshot.error}`);
  const digest = checkpointDigest(snapshot.root().toString("hex"), clientTableDigest(clients));
  if (digest !== header.digest) return bad("the state does not match the digest in the header");
  return { checkpoint: { seq: header.seq as number, digest, snapshot, clients } };
}
