/** A testbed file and one of its boards, as every board command reads them: bad input is a UsageError naming the file. */
import { type Board, formatProblem, loadTestbedFile, type Testbed } from "@smw/wiring";
import { UsageError } from "@smw/wiring/cli";

/**
 * The testbed, and the board `boardId` if given. `files`: also check the board's files (keys,
 * images, devices, GPIO chips), as on the board itself.
 */
export function loadFor(
  file: string,
  boardId: string | undefined,
  files: boolean,
): { testbed: Testbed; board: Board | undefined } {
  const loaded = loadTestbedFile(
    file,
    files && boardId !== undefined ? { files: { kind: "board", board: boardId } } : {},
  );
  if (!loaded.ok) throw new UsageError(loaded.problems.map(formatProblem).join("\n"));
  const board =
    boardId === undefined ? undefined : loaded.testbed.boards.find((b) => b.id === boardId);
  if (boardId !== undefined && board === undefined) {
    throw new UsageError(
      `${file}: there is no board "${boardId}" (boards: ${loaded.testbed.boards.map((b) => b.id).join(", ")})`,
    );
  }
  return { testbed: loaded.testbed, board };
}

/** The testbed and the named board, its files unchecked (a desk or bench command). */
export function loadBoard(file: string, boardId: string): { testbed: Testbed; board: Board } {
  const { testbed, board } = loadFor(file, boardId, false);
  return { testbed, board: board as Board };
}
