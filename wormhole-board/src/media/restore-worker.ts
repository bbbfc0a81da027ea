/**
 * The I/O of a restore, in a worker thread so that the board's event loop (its timers, its
 * heartbeats) never waits for a disk: a whole image rewritten on an SD card takes minutes.
 * The main thread keeps the write-protect line; the worker asks for it to be lowered once every
 * golden chunk it needs has verified, and raised once its writes are synced.
 *
 * Main → worker: "write" (the medium is writable), "read-back" (protected again), "stop".
 * Worker → main: ready (golden chunks verified), progress, written (synced), done, or error.
 */
import { closeSync, fdatasyncSync, writeSync } from "node:fs";
import { parentPort, workerData } from "node:worker_threads";
import { type ChunkAlgorithm, digestChunk } from "./chunk-digest.js";
import { openImage, PAGE_SIZE_BYTES, readFully, yieldToTheBoard } from "./image-file.js";

export interface RestoreWorkerData {
  livePath: string;
  goldenPath: string;
  sizeBytes: number;
  chunkSizeBytes: number;
  algorithm: ChunkAlgorithm;
  /** The manifest's digest of each chunk to restore, by index. */
  chunks: Array<{ index: number; digest: string }>;
}

export type RestoreCommand = "write" | "read-back" | "stop";

export type RestoreReply =
  | { kind: "ready"; bytesRead: number }
  | { kind: "progress"; done: number; total: number }
  | { kind: "written"; bytesRead: number; bytesWritten: number; pagesWritten: number }
  | { kind: "done"; bytesRead: number; chunksRestored: number; stillBad: number[] }
  /** `media`: bad input (the golden copy, a file), else the restore itself failed. */
  | { kind: "error"; message: string; media: boolean };

yieldToTheBoard();
const data = workerData as RestoreWorkerData;
const port = parentPort;
if (port === null) throw new Error("restore-worker runs as a worker thread");

const golden = openImageOrReport(data.goldenPath, "r", "golden image");
let live: number | undefined;
const goldenChunk = Buffer.allocUnsafe(data.chunkSizeBytes);
const liveChunk = Buffer.allocUnsafe(data.chunkSizeBytes);
const counts = { bytesRead: 0, bytesWritten: 0, pagesWritten: 0 };

class RestoreFailure extends Error {}

function openImageOrReport(file: string, flags: "r" | "r+", what: string): number | undefined {
  try {
    return openImage(file, flags, what).fd;
  } catch (error) {
    report({ kind: "error", message: (error as Error).message, media: true });
    return undefined;
  }
}

function report(reply: RestoreReply): void {
  port?.postMessage(reply);
}

function chunkAt(index: number): { position: number; length: number } {
  const position = index * data.chunkSizeBytes;
  return { position, length: Math.min(data.chunkSizeBytes, data.sizeBytes - position) };
}

function readVerifiedGolden(index: number, digest: string): void {
  const { position, length } = chunkAt(index);
  readFully(golden as number, goldenChunk, length, position, data.goldenPath);
  counts.bytesRead += length;
  if (digestChunk(data.algorithm, goldenChunk.subarray(0, length)).toString("hex") !== digest) {
    throw new Error(
      `${data.goldenPath}: chunk ${index} of the golden image does not match its manifest; the golden copy is corrupted, nothing was written`,
    );
  }
}

/** Writes the runs of 4 KiB pages where the live chunk differs from the golden one. */
function writeDifferingPages(fd: number, length: number, position: number): void {
  let runStart = -1;
  const flush = (end: number) => {
    if (runStart < 0) return;
    let written = 0;
    while (written < end - runStart) {
      try {
        written += writeSync(
          fd,
          goldenChunk,
          runStart + written,
          end - runStart - written,
          position + runStart + written,
        );
      } catch (error) {
        throw new RestoreFailure(
          `${data.livePath}: cannot write at byte ${position + runStart + written} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
        );
      }
    }
    counts.bytesWritten += end - runStart;
    counts.pagesWritten += Math.ceil((end - runStart) / PAGE_SIZE_BYTES);
    runStart = -1;
  };
  for (let page = 0; page < length; page += PAGE_SIZE_BYTES) {
    const end = Math.min(length, page + PAGE_SIZE_BYTES);
    const differs = goldenChunk.compare(liveChunk, page, end, page, end) !== 0;
    if (differs && runStart < 0) runStart = page;
    if (!differs) flush(page);
  }
  flush(length);
}

function write(): void {
  live = openImage(data.livePath, "r+", "live image").fd;
  let done = 0;
  for (const { index, digest } of data.chunks) {
    readVerifiedGolden(index, digest);
    const { position, length } = chunkAt(index);
    readFully(live, liveChunk, length, position, data.livePath);
    counts.bytesRead += length;
    writeDifferingPages(live, length, position);
    report({ kind: "progress", done: ++done, total: data.chunks.length });
  }
  try {
    fdatasyncSync(live);
  } catch (error) {
    throw new RestoreFailure(
      `${data.livePath}: fsync failed (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
    );
  }
  report({ kind: "written", ...counts });
}

/** Reads back what was rewritten; the rest was verified moments before. */
function readBack(): void {
  let chunksRestored = 0;
  const stillBad: number[] = [];
  for (const { index, digest } of data.chunks) {
    const { position, length } = chunkAt(index);
    readFully(live as number, liveChunk, length, position, data.livePath);
    counts.bytesRead += length;
    if (digestChunk(data.algorithm, liveChunk.subarray(0, length)).toString("hex") === digest)
      chunksRestored++;
    else stillBad.push(index);
  }
  report({ kind: "done", bytesRead: counts.bytesRead, chunksRestored, stillBad });
}

function closeAll(): void {
  if (golden !== undefined) closeSync(golden);
  if (live !== undefined) closeSync(live);
  live = undefined;
}

if (golden !== undefined) {
  try {
    // Every golden chunk needed is checked before anything is written.
    for (const { index, digest } of data.chunks) readVerifiedGolden(index, digest);
    report({ kind: "ready", bytesRead: counts.bytesRead });
  } catch (error) {
    report({ kind: "error", message: (error as Error).message, media: true });
  }
}

port.on("message", (command: RestoreCommand) => {
  try {
    if (command === "write") write();
    else if (command === "read-back") readBack();
    else {
      closeAll();
      port.close();
    }
  } catch (error) {
    report({
      kind: "error",
      message: (error as Error).message,
      media: !(error instanceof RestoreFailure),
    });
  }
});
