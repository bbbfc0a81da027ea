/** `smw board run` and `smw board clear-failsafe`, and `smw status`. */
import { sign } from "node:crypto";
import { connect } from "node:net";
import { type Board, formatDurationMs, type Testbed } from "@smw/wiring";
import {
  type CliContext,
  systemdNotifyFromEnvironment,
  UsageError,
  untilInterrupted,
  WatchdogError,
  type WatchdogSink,
} from "@smw/wiring/cli";
import { Command } from "commander";
import { destination, pino, transport } from "pino";
import {
  BoardDaemon,
  type BoardDaemonDeps,
  type BoardStatus,
  controlSocketPath,
  InfeasibleScheduleError,
  operatorRequestBytes,
} from "../board/board-daemon.js";
import { BoardStateFiles } from "../board/board-state-files.js";
import { raiseEventLoopPriority } from "../board/event-loop-priority.js";
import { withSyslogPriority, writesToJournal } from "../board/journald-priority.js";
import { HardwareWatchdog } from "../board/watchdog.js";
import { BoardLines } from "../lines/board-lines.js";
import { LineError } from "../lines/line.js";
import { lineBackendFor } from "../lines/line-backend-for.js";
import { lineLockPath } from "../lines/line-lock.js";
import { ConsoleLog, consoleLogPath } from "../link/console-log.js";
import { ControlLink } from "../link/control-link.js";
import { HostLinkPort } from "../link/host-link-port.js";
import { readLinkKeys } from "../link/link-keys.js";
import { type ControlTransport, TransportError, transportFor } from "../link/transports.js";
import { readPrivateKey, readPublicKey } from "../media/keys.js";
import { MediaError } from "../media/media-error.js";
import { MediaWorkers } from "../media/media-workers.js";
import { loadFor } from "./load-board.js";

/**
 * A board daemon for `board` with its keys, state folder, control link and host link, the
 * links opened (what fails on bad input fails here, before any line is claimed).
 */
export async function openBoardDaemon(
  testbed: Testbed,
  board: Board,
  options: Pick<BoardDaemonDeps, "log" | "alerts" | "now" | "joinLeadMs" | "watchdogs"> & {
    /** Wraps the control transport (benchmarks: a lossy link). */
    wrapTransport?: (transport: ControlTransport) => ControlTransport;
  },
): Promise<BoardDaemon> {
  const { wrapTransport, ...deps } = options;
  const state = new BoardStateFiles(board.stateDir);
  const daemon = new BoardDaemon({
    testbed,
    boardId: board.id,
    link: new ControlLink(
      board.id,
      readLinkKeys(testbed, board.id),
      state.nextEpoch(),
      (wrapTransport ?? ((t) => t))(transportFor(testbed, board.id)),
      { known: state.readPeerEpochs(), record: (peer, epoch) => state.writePeerEpoch(peer, epoch) },
    ),
    // What the host writes that is not protocol (firmware, kernel, a panic) is kept for the
    // operator: `smw console HOST` follows it.
    hostLink: new HostLinkPort(board.hostLink.device, board.hostLink.baud, undefined, {
      consoleLog: new ConsoleLog(consoleLogPath(board.stateDir)),
    }),
    operatorKey: readPublicKey(testbed.operatorKeyPath),
    signingKey: readPrivateKey(board.keys.signingPath),
    state,
    ...deps,
  });
  await daemon.openLinks();
  // The media threads start now, not during the first rejuvenation (a thread's start costs the
  // event loop milliseconds).
  MediaWorkers.shared();
  return daemon;
}

/** On a path that gives up: every watchdog closed (disarmed, its helper process ended). */
function closeAll(watchdogs: readonly WatchdogSink[]): void {
  for (const watchdog of watchdogs) {
    try {
      watchdog.close();
    } catch {
      // Closing is best effort on a path that is already failing.
    }
  }
}

export function boardCommand(context: CliContext): Command {
  const board = new Command("board").description(
    "the board daemon (the local SMW) and its operator commands",
  );

  board
    .command("run")
    .description("run the board daemon for one board of a testbed, until SIGINT/SIGTERM")
    .requiredOption("--testbed <file>", "testbed file")
    .requiredOption("--board <id>", "which board this is")
    .option("--log-level <level>", "debug, info, warn or error", "info")
    .option(
      "--watchdog <device>",
      "feed this hardware watchdog (e.g. /dev/watchdog) while the board runs: a hung daemon reboots the board",
    )
    .option(
      "--no-realtime",
      "keep the event loop off SCHED_FIFO (nice -10 only): timers then run up to ~2 ms late under unrelated CPU load",
    )
    .action(
      async (options: {
        testbed: string;
        board: string;
        logLevel: string;
        realtime: boolean;
        watchdog?: string;
      }) => {
        const { testbed, board: spec } = loadFor(options.testbed, options.board, true);
        const boardSpec = spec as Board;
        if (testbed.rejuvenation.tPMs === undefined || testbed.rejuvenation.tDMs === undefined) {
          throw new UsageError(
            `${options.testbed}: rejuvenation sets no tP or tD; a board needs both (smw plan ${options.testbed} suggests values)`,
          );
        }

        let daemon: BoardDaemon;
        const watchdogs: WatchdogSink[] = [];
        try {
          const log = pino(
            {
              level: options.logLevel,
              base: { board: boardSpec.id },
              // Under systemd each line carries its syslog priority for journald.
              ...(writesToJournal() ? { hooks: { streamWrite: withSyslogPriority } } : {}),
            },
            context.io.isTty
              ? transport({ target: "pino-pretty", options: { colorize: true } })
              : destination(1),
          );
          // Raised before the daemon opens, so that the media threads it starts see the policy
          // (they lower their own priority only when the event loop is not real-time).
          const priority = raiseEventLoopPriority({ realtime: options.realtime });
          if (!("nice" in priority))
            log.warn(
              { reason: priority.notPermitted },
              "event loop at normal priority (raising it needs root or CAP_SYS_NICE)",
            );
          else if (priority.realtime === undefined)
            log.info({ nice: priority.nice }, "event loop priority raised");
          else if ("fifoPriority" in priority.realtime)
            log.info(
              { nice: priority.nice, fifoPriority: priority.realtime.fifoPriority },
              "event loop priority raised: SCHED_FIFO (reset on fork)",
            );
          else
            log.warn(
              { nice: priority.nice, reason: priority.realtime.notPermitted },
              "event loop priority raised (nice only; real-time scheduling not permitted)",
            );
          // Everything that can fail on bad input fails here, before any line is touched. The
          // hardware watchdog comes first: it is the one whose start can fail, and systemd must
          // not hear READY before it has.
          if (options.watchdog !== undefined)
            watchdogs.push(new HardwareWatchdog(options.watchdog));
          const systemd = systemdNotifyFromEnvironment();
          if (systemd !== undefined) watchdogs.push(systemd);
          daemon = await openBoardDaemon(testbed, boardSpec, { log, watchdogs });
        } catch (error) {
          closeAll(watchdogs);
          if (
            error instanceof MediaError ||
            error instanceof WatchdogError ||
            error instanceof TransportError ||
            error instanceof InfeasibleScheduleError
          )
            throw new UsageError(error.message);
          throw error;
        }
        let lines: BoardLines;
        try {
          lines = BoardLines.claim(boardSpec, lineBackendFor(testbed, boardSpec), {
            // Safe levels always: the host stays held until its images verify (the start-up check).
            levels: "safe",
            ...(testbed.simulated ? {} : { lockPath: lineLockPath(testbed.name, boardSpec.id) }),
          });
        } catch (error) {
          await daemon.stop();
          closeAll(watchdogs);
          if (error instanceof LineError) throw new UsageError(error.message);
          throw error;
        }
        // On SIGINT or SIGTERM the daemon stops before the lines' safe exit (which ends the
        // process): its synchronous part disarms the hardware watchdog, so stopping the service
        // does not reboot the board, and the host is held in reset only once the last lease on
        // its key has lapsed (`BoardDaemon.stop`).
        lines.installSafeExit(undefined, {
          beforeSignalExit: () => daemon.stop(),
          graceMs: daemon.stopGraceMs,
        });
        try {
          daemon.run(lines);
        } catch (error) {
          // A watchdog that cannot be opened now (another opener): nothing may run half-started.
          await daemon.stop();
          lines.releaseAll();
          closeAll(watchdogs);
          if (error instanceof WatchdogError) throw new UsageError(error.message);
          throw error;
        }
        // Runs until a signal: the lines' safe exit ends the process (128 + the signal's number).
        await new Promise<never>(() => {});
      },
    );

  board
    .command("clear-failsafe")
    .description("clear a board's latched fail-safe state (signed with the operator's private key)")
    .requiredOption("--testbed <file>", "testbed file")
    .requiredOption("--board <id>", "the board to clear")
    .requiredOption("--key <file>", "the operator's Ed25519 private key")
    .action(async (options: { testbed: string; board: string; key: string }) => {
      const { board: spec } = loadFor(options.testbed, options.board, false);
      let privateKey: ReturnType<typeof readPrivateKey>;
      try {
        privateKey = readPrivateKey(options.key);
      } catch (error) {
        throw new UsageError((error as Error).message);
      }
      const reply = await ask(
        spec as Board,
        signedRequest("clear-failsafe", options.board, privateKey),
        true,
      );
      context.io.out(`${options.board}: ${reply.message}\n`);
      context.setExitCode(reply.ok ? 0 : 1);
    });
  return board;
}

/** Serves a live page of the testbed's boards from their statuses until `stopped` resolves. */
export type StatusPageServer = (options: {
  testbed: Testbed;
  operatorKey?: ReturnType<typeof readPrivateKey>;
  port: number;
  say: (line: string) => void;
  stopped: Promise<void>;
}) => Promise<void>;

/**
 * `smw status`; with a page server given (the program puts the rig's live page here),
 * `smw status --serve` too.
 */
/**
 * A board's STATE in `smw status`: its phase, and a stop under way with when its running host is
 * held (once the last lease on its key lapsed, on the board's clock).
 */
export function stateText(s: BoardStatus): string {
  if (s.stopping === undefined) return s.phase;
  const lapsesAtMs = s.keyLease?.lapsesAtMs;
  // In fail-safe the host may be held already (its actions), whatever the lease.
  return s.phase !== "failsafe" && lapsesAtMs !== undefined && lapsesAtMs > s.updatedAtMs
    ? `${s.phase}, stopping: host held at ${new Date(lapsesAtMs).toISOString()}`
    : `${s.phase}, stopping`;
}

export function statusCommand(
  context: CliContext,
  parts: { servePage?: StatusPageServer } = {},
): Command {
  const command = new Command("status")
    .description(
      "one table of all boards: state, period and group, last step timings, next slot, fail-safe",
    )
    .requiredOption("--testbed <file>", "testbed file")
    .option(
      "--key <file>",
      "the operator's private key, to ask boards over the network (their operatorEndpoint)",
    )
    .option("--json", "print the statuses as JSON");
  if (parts.servePage !== undefined)
    command.option(
      "--serve [port]",
      "serve a live page of the boards on 127.0.0.1 (default port: any free one) until Ctrl-C, from their statuses asked ten times a second",
    );
  return command.action(
    async (options: {
      testbed: string;
      key?: string;
      json?: boolean;
      serve?: boolean | string;
    }) => {
      const { testbed } = loadFor(options.testbed, undefined, false);
      let privateKey: ReturnType<typeof readPrivateKey> | undefined;
      if (options.key !== undefined) {
        try {
          privateKey = readPrivateKey(options.key);
        } catch (error) {
          throw new UsageError((error as Error).message);
        }
      }
      if (options.serve !== undefined && parts.servePage !== undefined) {
        const port = options.serve === true ? 0 : Number(options.serve);
        if (!Number.isInteger(port) || port < 0 || port > 65535)
          throw new UsageError(`--serve ${String(options.serve)}: expected a port from 0 to 65535`);
        if (options.json) throw new UsageError("--serve and --json: one or the other");
        const stopped = untilInterrupted();
        try {
          await parts.servePage({
            testbed,
            ...(privateKey === undefined ? {} : { operatorKey: privateKey }),
            port,
            say: (line) => context.io.out(`${line}\n`),
            stopped,
          });
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === "EADDRINUSE")
            throw new UsageError(`--serve ${port}: the port is in use`);
          throw error;
        }
        return;
      }
      /** `refused`: the daemon answered, and gave no status (a key it does not take, say). */
      const rows: Array<{ board: string; status?: BoardStatus; error?: string; refused?: true }> =
        [];
      for (const board of testbed.boards) {
        if (board.operatorEndpoint !== undefined && privateKey !== undefined) {
          try {
            const reply = await ask(board, signedRequest("status", board.id, privateKey), true);
            rows.push({
              board: board.id,
              ...(reply.status === undefined
                ? { error: reply.message, refused: true }
                : { status: reply.status }),
            });
          } catch (error) {
            rows.push({ board: board.id, error: (error as Error).message });
          }
          continue;
        }
        try {
          const reply = await ask(board, { type: "status" }, false);
          rows.push({
            board: board.id,
            ...(reply.status === undefined
              ? { error: reply.message, refused: true }
              : { status: reply.status }),
          });
        } catch {
          // Not running: the last status it wrote, if any (a stop it wrote as under way is over).
          try {
            const { stopping: _over, ...last } = new BoardStateFiles(
              board.stateDir,
            ).readStatus() as BoardStatus;
            rows.push({ board: board.id, status: { ...last, phase: "stopped" } });
          } catch {
            rows.push({
              board: board.id,
              error:
                board.operatorEndpoint === undefined
                  ? "no daemon running here and no status written"
                  : "not on this machine: give --key to ask it over the network",
            });
          }
        }
      }
      if (options.json) {
        context.io.out(`${JSON.stringify(rows, null, 2)}\n`);
      } else {
        const table = [
          [
            "BOARD",
            "HOST",
            "STATE",
            "PERIOD",
            "GROUP",
            "LAST STEPS (took/budget)",
            "NEXT TRIGGER",
            "FAIL-SAFE",
          ],
        ];
        for (const row of rows) {
          const s = row.status;
          if (s === undefined) {
            const guards = testbed.boards.find((b) => b.id === row.board)?.guards ?? "";
            table.push([row.board, guards, "unknown", "", "", "", "", row.error ?? ""]);
            continue;
          }
          table.push([
            s.board,
            s.host,
            stateText(s),
            s.period === undefined ? "-" : String(s.period),
            s.group === undefined ? "-" : String(s.group + 1),
            s.lastSteps
              .map(
                (step) =>
                  `${step.step} ${step.tookMs === undefined ? step.verdict : formatDurationMs(Math.round(step.tookMs))}/${formatDurationMs(step.budgetMs)}`,
              )
              .join(", ") || "-",
            s.nextTriggerMs === undefined ? "-" : new Date(s.nextTriggerMs).toISOString(),
            s.failsafe === undefined ? "-" : `${s.failsafe.reason} (from ${s.failsafe.origin})`,
          ]);
        }
        const widths = (table[0] as string[]).map((_, c) =>
          Math.max(...table.map((r) => (r[c] ?? "").length)),
        );
        for (const row of table)
          context.io.out(
            `${row
              .map((cell, c) => cell.padEnd(widths[c] as number))
              .join("  ")
              .trimEnd()}\n`,
          );
      }
      if (rows.every((r) => r.status === undefined)) {
        // Nothing known of any board: the question was asked in the wrong place, or with the
        // wrong key; each row says why.
        const refused = rows.filter((r) => r.refused).length;
        context.io.err(
          refused > 0
            ? `smw status: no board of ${testbed.file} gave its status: ${refused} answered with a refusal (each row says why)\n`
            : `smw status: no board of ${testbed.file} could be reached, and none wrote a status on this machine${
                testbed.simulated
                  ? `; a rig runs a copy of its testbed: give that one (--testbed runs/${testbed.name}/testbed.yaml, or under $SMW_RUNS)`
                  : ""
              }\n`,
        );
        context.setExitCode(2);
        return;
      }
      context.setExitCode(rows.some((r) => r.status?.failsafe !== undefined) ? 1 : 0);
    },
  );
}

function signedRequest(
  type: "status" | "clear-failsafe",
  board: string,
  privateKey: ReturnType<typeof readPrivateKey>,
) {
  const issuedAtMs = Date.now();
  return {
    type,
    board,
    issuedAtMs,
    signature: sign(null, operatorRequestBytes(type, board, issuedAtMs), privateKey).toString(
      "base64",
    ),
  };
}

/**
 * One request to a running board daemon: over the network at its operator
 * endpoint when it has one and `network` allows, else over its local socket.
 */
/**
 * One board's status from its running daemon: over the network, signed with the operator's
 * key, when the board has an operator endpoint and a key is given; otherwise over its local socket.
 */
export async function askBoardStatus(
  board: Board,
  operatorKey: ReturnType<typeof readPrivateKey> | undefined,
): Promise<BoardStatus> {
  const network = board.operatorEndpoint !== undefined && operatorKey !== undefined;
  const reply = await ask(
    board,
    network ? signedRequest("status", board.id, operatorKey) : { type: "status" },
    network,
  );
  if (reply.status === undefined)
    throw new UsageError(`board ${board.id} did not give its status: ${reply.message}`);
  return reply.status;
}

/** Far above any board's status or answer (a few KiB). */
export const MAX_REPLY_CHARS = 1 << 20;

function ask(
  board: Board,
  request: unknown,
  network: boolean,
): Promise<{ ok: boolean; message: string; status?: BoardStatus }> {
  const endpoint = network ? board.operatorEndpoint : undefined;
  const where =
    endpoint === undefined
      ? controlSocketPath(board.stateDir)
      : `${endpoint.host}:${endpoint.port}`;
  return new Promise((resolve, reject) => {
    const socket =
      endpoint === undefined
        ? connect(controlSocketPath(board.stateDir))
        : connect({ host: endpoint.host, port: endpoint.port });
    let text = "";
    socket.setEncoding("utf8");
    socket.setTimeout(5_000, () => socket.destroy(new Error("timed out")));
    socket.on("connect", () => socket.write(`${JSON.stringify(request)}\n`));
    socket.on("data", (chunk: string) => {
      text += chunk;
      // Whatever answers there may not be a board: one that never stops talking is cut off (the
      // timeout only counts silence).
      if (text.length > MAX_REPLY_CHARS) {
        reject(
          new UsageError(
            `${board.id} at ${where} answered with more than ${MAX_REPLY_CHARS} characters: not a board daemon's reply`,
          ),
        );
        socket.destroy();
      }
    });
    socket.on("end", () => {
      try {
        resolve(JSON.parse(text));
      } catch {
        // Something else listens there (a web server, another program): named, with what it said.
        reject(
          new UsageError(
            `${board.id} at ${where} answered with something that is not a board daemon's reply: ${JSON.stringify(text.slice(0, 40))}`,
          ),
        );
      }
    });
    socket.on("error", (error: NodeJS.ErrnoException) =>
      reject(
        new UsageError(
          `cannot reach the board daemon of ${board.id} at ${where}: ${error.code === "ENOENT" || error.code === "ECONNREFUSED" ? "it is not running" : error.message}`,
        ),
      ),
    );
  });
}
