/**
 * One board of the rig, in a process of its own (so a drill can kill it): the
 * real board daemon over the real control and host links, with simulated GPIO
 * lines whose every change goes to the rig, which wires them to the host. Its
 * log (JSON lines on stdout) is what the rig narrates from.
 */
import { formatProblem, loadTestbedFile } from "@smw/wiring";
import { BoardLines, filteredTransport, SimulatedLines } from "@smw/wormhole-board";
import { openBoardDaemon } from "@smw/wormhole-board/cli";
import { destination, pino } from "pino";
import { type BoardToRig, isRigToBoard } from "./board-ipc.js";

export async function runBoardChild(
  testbedFile: string,
  boardId: string,
  webhookUrl: string | undefined,
  joinLeadMs: number | undefined,
): Promise<void> {
  // The rig gone: the channel's end makes this process exit; a failed send is dropped.
  const tell = (m: BoardToRig) => process.send?.(m, undefined, undefined, () => {});
  // The rig gone: a board of the rig does not outlive it.
  process.once("disconnect", () => process.exit(0));
  const loaded = loadTestbedFile(testbedFile, { files: { kind: "board", board: boardId } });
  if (!loaded.ok) {
    tell({ type: "error", message: loaded.problems.map(formatProblem).join("\n") });
    process.exit(2);
  }
  const testbed = loaded.testbed;
  if (webhookUrl !== undefined) testbed.failsafe.actions.push({ kind: "webhook", url: webhookUrl });
  const board = testbed.boards.find((b) => b.id === boardId);
  if (board === undefined) {
    tell({ type: "error", message: `${testbedFile}: no board ${boardId}` });
    process.exit(2);
  }
  let offsetMs = 0;
  // Asynchronous: a board must never wait on its log (a full pipe would hold its timers).
  const log = pino(
    { level: "info", base: { board: boardId } },
    destination({ fd: 1, sync: false }),
  );
  const simulated = new SimulatedLines();
  simulated.onChange((event) => tell({ type: "line", role: event.role, level: event.level }));
  let lossFraction = 0;
  let daemon: Awaited<ReturnType<typeof openBoardDaemon>>;
  try {
    daemon = await openBoardDaemon(testbed, board, {
      log,
      // The rig's lossy link: frames sent are dropped at the rate it sets (none at first).
      wrapTransport: (inner) =>
        filteredTransport(inner, () => lossFraction === 0 || Math.random() >= lossFraction),
      now: () => Date.now() + offsetMs,
      ...(joinLeadMs === undefined ? {} : { joinLeadMs }),
    });
  } catch (error) {
    tell({ type: "error", message: (error as Error).message });
    process.exit(2);
  }
  const lines = BoardLines.claim(board, simulated, {
    // Safe levels always: the host stays held until its images verify (the start-up check).
    levels: "safe",
  });
  process.on("message", (m: unknown) => {
    if (!isRigToBoard(m)) return;
    if (m.type === "skew") {
      offsetMs = m.offsetMs;
      log.warn({ offsetMs }, "rig: clock skewed");
    } else if (m.type === "lose-frames") {
      lossFraction = m.fraction;
      log.warn({ fraction: m.fraction }, "rig: control frames lost");
    } else {
      const spec = board.lines.find((l) => l.role === m.role);
      if (spec === undefined) return;
      const high = m.level === undefined ? undefined : (m.level === "active") !== spec.activeLow;
      simulated.stick(spec.chip, spec.offset, high);
      log.warn({ role: m.role, stuck: m.level ?? "no" }, "rig: line stuck");
    }
  });
  daemon.run(lines);
  tell({ type: "ready" });
  await new Promise<void>((resolve) => {
    process.once("SIGTERM", resolve);
    process.once("SIGINT", resolve);
  });
  await daemon.stop();
  process.exit(0);
}
