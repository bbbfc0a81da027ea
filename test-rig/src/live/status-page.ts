/**
 * `smw status --serve`: the live page on a running testbed, real or simulated. Every board is
 * asked for its status ten times a second (signed with the operator's key over the network, or
 * over its local socket), each change becomes the events the page draws (`status-events.ts`),
 * and a board that stops answering, or answers again, is said on the page. Read-only: no faults.
 */
import type { KeyObject } from "node:crypto";
import type { Testbed } from "@smw/wiring";
import { askBoardStatus, type BoardStatus } from "@smw/wormhole-board/cli";
import { RigEventStream } from "../rig/rig-events.js";
import { LiveServer } from "./live-server.js";
import { statusEvents, statusWhenGone } from "./status-events.js";

export interface StatusPageOptions {
  testbed: Testbed;
  operatorKey?: KeyObject;
  port: number;
  host?: string;
  /** Between two rounds of questions (default 100 ms: events reach the page within ~0.1 s). */
  pollMs?: number;
  say: (line: string) => void;
  /** Resolves when the page should close (Ctrl-C). */
  stopped: Promise<void>;
}

export async function serveStatusPage(options: StatusPageOptions): Promise<void> {
  const t = options.testbed;
  const server = new LiveServer({
    port: options.port,
    ...(options.host === undefined ? {} : { host: options.host }),
  });
  const address = await server.start();
  const events = new RigEventStream();
  server.follow({ title: "smw status", events, testbed: t });
  options.say(`live view of ${t.name}'s boards: ${address} (Ctrl-C to close it)`);
  const last = new Map<string, BoardStatus>();
  const unreachable = new Map<string, string>();
  let stop = false;
  void options.stopped.then(() => {
    stop = true;
  });
  const pollMs = options.pollMs ?? 100;
  try {
    while (!stop) {
      const round = Date.now();
      await Promise.all(
        t.boards.map(async (board) => {
          let status: BoardStatus;
          try {
            status = await askBoardStatus(board, options.operatorKey);
          } catch (error) {
            const why = (error as Error).message;
            if (unreachable.get(board.id) !== why) {
              unreachable.set(board.id, why);
              events.emit({ kind: "rig", detail: `${board.id}: no status: ${why}` });
            }
            // A daemon that was stopping closes its sockets as the stop ends: it stopped.
            const before = last.get(board.id);
            const gone = statusWhenGone(before);
            if (gone !== undefined) {
              for (const event of statusEvents(before, gone)) events.emit(event);
              last.set(board.id, gone);
            }
            return;
          }
          if (unreachable.delete(board.id))
            events.emit({ kind: "rig", detail: `${board.id}: answers again` });
          for (const event of statusEvents(last.get(board.id), status)) events.emit(event);
          last.set(board.id, status);
        }),
      );
      const waitMs = Math.max(0, pollMs - (Date.now() - round));
      await Promise.race([new Promise((resolve) => setTimeout(resolve, waitMs)), options.stopped]);
    }
  } finally {
    await server.stop();
  }
}
