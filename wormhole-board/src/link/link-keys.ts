/**
 * Pairwise keys of the control link: every two boards share one 256-bit
 * HMAC key, kept by each in its link-key folder as <peer>.key (64 hex digits,
 * mode 0600).
 */
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, mkdirSync, openSync, writeFileSync } from "node:fs";
import path from "node:path";
import { linkKeyFileName, type Testbed } from "@smw/wiring";
import { readSecretFile } from "../media/keys.js";
import { MediaError } from "../media/media-error.js";

/**
 * Writes every pair's key into each board's link-key folder, or, with
 * `outDir`, into `outDir/<board>/` for the operator to copy to each board
 * (physical boards have folders of the same name on different machines).
 */
export function generateLinkKeys(
  testbed: Testbed,
  options: { force?: boolean; outDir?: string } = {},
): string[] {
  const written: string[] = [];
  const boards = testbed.boards;
  const dirOf = (board: (typeof boards)[number]) =>
    options.outDir === undefined ? board.keys.linkDir : path.join(options.outDir, board.id);
  if (options.outDir === undefined) {
    const seen = new Map<string, string>();
    for (const board of boards) {
      const other = seen.get(board.keys.linkDir);
      if (other !== undefined) {
        throw new MediaError(
          `boards ${other} and ${board.id} both keep their link keys in ${board.keys.linkDir}: they are on different machines; write them with --out DIR and copy DIR/<board>/ to each board`,
        );
      }
      seen.set(board.keys.linkDir, board.id);
    }
  }
  const files = (a: (typeof boards)[number], b: (typeof boards)[number]) => [
    path.join(dirOf(a), linkKeyFileName(b.id)),
    path.join(dirOf(b), linkKeyFileName(a.id)),
  ];
  if (!options.force) {
    for (const [i, a] of boards.entries()) {
      for (const b of boards.slice(i + 1)) {
        for (const file of files(a, b))
          if (existsSync(file))
            throw new MediaError(
              `${file} already exists; refusing to overwrite a key (use --force)`,
            );
      }
    }
  }
  for (const [i, a] of boards.entries()) {
    for (const b of boards.slice(i + 1)) {
      const key = `${randomBytes(32).toString("hex")}\n`;
      for (const file of files(a, b)) {
        mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
        const fd = openSync(file, options.force ? "w" : "wx", 0o600);
        try {
          writeFileSync(fd, key);
        } finally {
          closeSync(fd);
        }
        written.push(file);
      }
    }
  }
  return written;
}

/** The keys this board shares with each peer; refuses missing, malformed or readable-by-others files. */
export function readLinkKeys(testbed: Testbed, boardId: string): Map<string, Buffer> {
  const board = testbed.boards.find((b) => b.id === boardId);
  if (board === undefined) throw new MediaError(`there is no board "${boardId}"`);
  const keys = new Map<string, Buffer>();
  for (const peer of testbed.boards) {
    if (peer.id === boardId) continue;
    const file = path.join(board.keys.linkDir, linkKeyFileName(peer.id));
    const text = readSecretFile(
      file,
      `link key shared with board "${peer.id}"`,
      "; make them with smw keys link",
    ).trim();
    if (!/^[0-9a-f]{64}$/.test(text)) throw new MediaError(`${file}: a link key is 64 hex digits`);
    keys.set(peer.id, Buffer.from(text, "hex"));
  }
  return keys;
}
