/**
 * The files a machine of the testbed must hold before its board can run:
 * keys (private ones readable by their owner only), images and devices.
 * A testbed names files on several machines, so the caller says whose to check.
 */
import { type Stats, statSync } from "node:fs";
import path from "node:path";
import type { Finding } from "./cross-checks.js";
import type { Testbed } from "./testbed.js";

export type FileCheckScope = { kind: "none" } | { kind: "board"; board: string } | { kind: "all" };

/** The file name, in a board's link-key folder, of the key it shares with `peer`. */
export function linkKeyFileName(peer: string): string {
  return `${peer}.key`;
}

export function checkFiles(testbed: Testbed, scope: FileCheckScope): Finding[] {
  if (scope.kind === "none") return [];
  const findings: Finding[] = [];
  const add = (where: Array<string | number>, message: string) =>
    findings.push({ path: where, message });

  if (scope.kind === "board" && !testbed.boards.some((board) => board.id === scope.board)) {
    add(
      ["boards"],
      `there is no board "${scope.board}" (boards: ${testbed.boards.map((b) => b.id).join(", ")})`,
    );
    return findings;
  }

  expectFile(testbed.operatorKeyPath, ["keys", "operator"], "operator public key", false, add);
  testbed.boards.forEach((board, b) => {
    if (scope.kind === "board" && board.id !== scope.board) return;
    expectFile(
      board.keys.signingPath,
      ["boards", b, "keys", "signing"],
      "board signing key",
      true,
      add,
    );
    const linkDirStat = statOrUndefined(board.keys.linkDir);
    if (linkDirStat === undefined || !linkDirStat.isDirectory()) {
      add(["boards", b, "keys", "linkDir"], `link key folder ${board.keys.linkDir} does not exist`);
    } else {
      for (const peer of testbed.boards) {
        if (peer.id === board.id) continue;
        const keyPath = path.join(board.keys.linkDir, linkKeyFileName(peer.id));
        expectFile(
          keyPath,
          ["boards", b, "keys", "linkDir"],
          `link key shared with board "${peer.id}"`,
          true,
          add,
        );
      }
    }
    for (const name of ["os", "sm"] as const) {
      const image = board.images[name];
      expectPresent(image.live, ["boards", b, "images", name, "live"], `live ${name} image`, add);
      expectPresent(
        image.golden,
        ["boards", b, "images", name, "golden"],
        `golden ${name} image`,
        add,
      );
      expectPresent(
        image.manifest,
        ["boards", b, "images", name, "manifest"],
        `${name} manifest`,
        add,
      );
    }
    expectPresent(
      board.hostLink.device,
      ["boards", b, "hostLink", "device"],
      "host link device",
      add,
    );
    if (board.control.kind === "bus") {
      expectPresent(
        board.control.device,
        ["boards", b, "control", "device"],
        "control bus device",
        add,
      );
    } else if (board.control.kind === "links") {
      for (const link of board.control.links) {
        expectPresent(
          link.device,
          ["boards", b, "control", "links", link.peer],
          `control link device to "${link.peer}"`,
          add,
        );
      }
    }
  });
  return findings;
}

function expectFile(
  file: string,
  where: Array<string | number>,
  what: string,
  secret: boolean,
  add: (where: Array<string | number>, message: string) => void,
): void {
  const stat = statOrUndefined(file);
  if (stat === undefined) {
    add(where, `${what} ${file} does not exist`);
    return;
  }
  if (!stat.isFile()) {
    add(where, `${what} ${file} is not a regular file`);
    return;
  }
  if (secret && (stat.mode & 0o077) !== 0) {
    add(
      where,
      `${what} ${file} is readable by group or others (mode ${(stat.mode & 0o777).toString(8).padStart(4, "0")}); run chmod 600 ${file}`,
    );
  }
}

function expectPresent(
  file: string,
  where: Array<string | number>,
  what: string,
  add: (where: Array<string | number>, message: string) => void,
): void {
  if (statOrUndefined(file) === undefined) add(where, `${what} ${file} does not exist`);
}

function statOrUndefined(file: string): Stats | undefined {
  try {
    return statSync(file);
  } catch {
    return undefined;
  }
}
