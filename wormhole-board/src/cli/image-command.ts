/** `smw image seal | verify | restore`: golden-image manifests and the check-and-restore of Algorithm 1. */
import { writeFileSync } from "node:fs";
import { type Board, formatDurationMs, formatProblem, loadTestbedFile } from "@smw/wiring";
import { type CliContext, UsageError } from "@smw/wiring/cli";
import { Command } from "commander";
import { BoardLines } from "../lines/board-lines.js";
import { LineError } from "../lines/line.js";
import { SimulatedLines } from "../lines/simulated-lines.js";
import { SysfsLines } from "../lines/sysfs-lines.js";
import { CHUNK_ALGORITHMS, type ChunkAlgorithm } from "../media/chunk-digest.js";
import { readPrivateKey, readPublicKey } from "../media/keys.js";
import { type Manifest, readVerifiedManifest } from "../media/manifest.js";
import { MediaError } from "../media/media-error.js";
import { type RestoreResult, restoreImage, type WriteProtect } from "../media/restore.js";
import { sealImage } from "../media/seal.js";
import { verifyImage } from "../media/verify.js";
import { progressBar } from "./progress.js";

export function imageCommand(context: CliContext): Command {
  const image = new Command("image").description("golden images: seal a manifest, verify, restore");

  image
    .command("seal")
    .description("write the signed manifest of a golden image (file or block device)")
    .argument("<golden>", "the golden image")
    .requiredOption("--key <file>", "Ed25519 private key (smw keys gen)")
    .requiredOption("-o, --output <manifest>", "where to write the manifest")
    .option("--pub <file>", "the matching public key (default: the key file with .pub for .key)")
    .option("--name <name>", "image name recorded in the manifest (default: the file name)")
    .option("--chunk-size <size>", "chunk size, a power of two: 4KiB to 64MiB", "1MiB")
    .option("--algorithm <name>", `chunk digest: ${CHUNK_ALGORITHMS.join(" or ")}`, "blake3")
    .action(
      guard(
        (
          golden: string,
          options: {
            key: string;
            output: string;
            pub?: string;
            name?: string;
            chunkSize: string;
            algorithm: string;
          },
        ) => {
          if (!CHUNK_ALGORITHMS.includes(options.algorithm as ChunkAlgorithm)) {
            throw new UsageError(
              `--algorithm "${options.algorithm}": expected ${CHUNK_ALGORITHMS.join(" or ")}`,
            );
          }
          const privateKey = readPrivateKey(options.key);
          const pubPath = options.pub ?? options.key.replace(/\.key$/, ".pub");
          const publicKey = readPublicKey(pubPath);
          const bar = progressBar("sealing", showProgress(context));
          const manifest = sealImage({
            goldenPath: golden,
            privateKey,
            publicKey,
            ...(options.name === undefined ? {} : { image: options.name }),
            chunkSizeBytes: parseSizeBytes(options.chunkSize, "--chunk-size"),
            algorithm: options.algorithm as ChunkAlgorithm,
            onProgress: (done, total) => bar.update(done, total),
          });
          bar.stop();
          try {
            writeFileSync(options.output, `${JSON.stringify(manifest, null, 1)}\n`);
          } catch (error) {
            throw new UsageError(`cannot write ${options.output}: ${(error as Error).message}`);
          }
          context.io.out(
            `${options.output}: "${manifest.image}", ${manifest.sizeBytes} bytes in ${manifest.chunks.length} chunks of ${manifest.chunkSizeBytes} (${manifest.chunkAlgorithm})\nsha256 ${manifest.sha256}\n`,
          );
          context.setExitCode(0);
        },
      ),
    );

  image
    .command("verify")
    .description(
      "check an image against its signed manifest (exit 0 clean, 1 corrupted, 2 bad input)",
    )
    .argument("<image>", "the live image (or, with --golden, the golden copy)")
    .requiredOption("--manifest <file>", "the image's manifest")
    .requiredOption("--pub <file>", "the public key that signed the manifest")
    .option("--golden", "the image is the golden copy itself")
    .option("--json", "print the result as JSON")
    .action(
      guard(
        async (
          file: string,
          options: { manifest: string; pub: string; golden?: boolean; json?: boolean },
        ) => {
          const manifest = readVerifiedManifest(options.manifest, readPublicKey(options.pub));
          const what = options.golden ? "golden image" : "live image";
          const bar = progressBar("verifying", showProgress(context, options.json));
          const result = await verifyImage(file, manifest, {
            what,
            onProgress: (d, t) => bar.update(d, t),
          });
          bar.stop();
          if (options.json) {
            context.io.out(
              `${JSON.stringify({ image: manifest.image, file, golden: options.golden === true, ...result })}\n`,
            );
          } else if (result.clean) {
            context.io.out(
              `${file}: clean, ${describe(manifest)}, checked in ${formatDurationMs(result.checkMs)}\n`,
            );
          } else {
            context.io.out(
              `${file}: CORRUPTED, ${result.badChunks.length} of ${manifest.chunks.length} chunks differ from ${options.golden ? "the manifest (the golden copy itself is bad: do not restore from it)" : "the manifest"}: ${listChunks(result.badChunks)}\n`,
            );
          }
          context.setExitCode(result.clean ? 0 : 1);
        },
      ),
    );

  image
    .command("restore")
    .description(
      "verify, then rewrite only the corrupted pages from the golden copy (exit 0 clean, 1 not repaired, 2 bad input)",
    )
    .argument("<live>", "the live image")
    .requiredOption("--from <golden>", "the golden copy")
    .requiredOption("--manifest <file>", "the golden copy's manifest")
    .requiredOption("--pub <file>", "the public key that signed the manifest")
    .option(
      "--testbed <file>",
      "drive this testbed's write-protect line around the writes (with --board)",
    )
    .option("--board <id>", "the board whose write-protect line guards the live image")
    .option("--json", "print the result as JSON")
    .action(
      guard(
        async (
          live: string,
          options: {
            from: string;
            manifest: string;
            pub: string;
            testbed?: string;
            board?: string;
            json?: boolean;
          },
        ) => {
          if ((options.testbed === undefined) !== (options.board === undefined)) {
            throw new UsageError("--testbed and --board go together");
          }
          const manifest = readVerifiedManifest(options.manifest, readPublicKey(options.pub));
          const lines =
            options.testbed === undefined
              ? undefined
              : claimWriteProtect(options.testbed, options.board as string);
          let result: RestoreResult;
          const checkBar = progressBar("checking", showProgress(context, options.json));
          try {
            result = await restoreImage({
              livePath: live,
              goldenPath: options.from,
              manifest,
              ...(lines === undefined ? {} : { writeProtect: lines.writeProtect }),
              onProgress: (d, t) => checkBar.update(d, t),
            });
          } finally {
            checkBar.stop();
            const errors = lines?.owner.releaseAll() ?? [];
            for (const error of errors) context.io.err(`smw: releasing lines: ${error.message}\n`);
          }
          if (options.json) {
            context.io.out(`${JSON.stringify({ image: manifest.image, file: live, ...result })}\n`);
          } else if (result.badChunks.length === 0) {
            context.io.out(
              `${live}: clean, nothing to restore (${describe(manifest)}, checked in ${formatDurationMs(result.checkMs)})\n`,
            );
          } else {
            context.io.out(
              `${live}: ${result.clean ? "restored" : "NOT RESTORED"}: ${result.chunksRestored} of ${result.badChunks.length} corrupted chunks repaired, ${result.bytesWritten} bytes written in ${result.pagesWritten} pages; check ${formatDurationMs(result.checkMs)}, restore ${formatDurationMs(result.restoreMs)}${result.clean ? "" : `; still corrupted: ${listChunks(result.stillBad)}`}\n`,
            );
          }
          context.setExitCode(result.clean ? 0 : 1);
        },
      ),
    );
  return image;
}

/** Claims the board's write-protect line (protected), and drives it with read-back. */
function claimWriteProtect(
  testbedFile: string,
  boardId: string,
): { owner: BoardLines; writeProtect: WriteProtect } {
  const loaded = loadTestbedFile(testbedFile);
  if (!loaded.ok) throw new UsageError(loaded.problems.map(formatProblem).join("\n"));
  const board: Board | undefined = loaded.testbed.boards.find((b) => b.id === boardId);
  if (board === undefined) {
    throw new UsageError(
      `${testbedFile}: there is no board "${boardId}" (boards: ${loaded.testbed.boards.map((b) => b.id).join(", ")})`,
    );
  }
  if (!board.lines.some((line) => line.role === "write-protect")) {
    throw new UsageError(`${testbedFile}: board "${boardId}" has no write-protect line`);
  }
  const backend = loaded.testbed.simulated ? new SimulatedLines() : new SysfsLines();
  const owner = BoardLines.claim(board, backend, {
    roles: ["write-protect"],
    ...(loaded.testbed.simulated
      ? {}
      : { lockPath: `/run/smw/${loaded.testbed.name}-${board.id}.lines.lock` }),
  });
  owner.installSafeExit();
  return {
    owner,
    writeProtect: {
      lower: () => owner.set("write-protect", "inactive"),
      raise: () => owner.set("write-protect", "active"),
    },
  };
}

/** Library errors about files and lines are bad input: one clear message, exit 2. */
function guard<A extends unknown[]>(action: (...args: A) => void | Promise<void>) {
  return async (...args: A) => {
    try {
      await action(...args);
    } catch (error) {
      if (error instanceof MediaError || error instanceof LineError)
        throw new UsageError(error.message);
      throw error;
    }
  };
}

function showProgress(context: CliContext, json?: boolean): boolean {
  return json !== true && process.stderr.isTTY === true && context.io.isTty;
}

function describe(manifest: Manifest): string {
  return `"${manifest.image}", ${manifest.chunks.length} chunks`;
}

function listChunks(chunks: readonly number[]): string {
  const shown = chunks.slice(0, 20).join(", ");
  return chunks.length > 20 ? `${shown}, ... (${chunks.length} in all)` : shown;
}

export function parseSizeBytes(text: string, flag: string): number {
  const match = /^(\d+)\s*(B|KiB|MiB|K|M)?$/i.exec(text.trim());
  if (match === null)
    throw new UsageError(`${flag} "${text}": expected a size such as 4096, 64KiB or 1MiB`);
  const unit = (match[2] ?? "B").toLowerCase();
  const factor = unit.startsWith("k") ? 1024 : unit.startsWith("m") ? 1024 * 1024 : 1;
  return Number(match[1]) * factor;
}
