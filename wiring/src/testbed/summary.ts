/** A valid testbed in a few lines, as `smw wiring check` prints it. */
import { formatDurationMs as fmt } from "../duration.js";
import { describeExhaustionModel } from "../plan/exhaustion-model.js";
import type { FileCheckScope } from "./file-checks.js";
import type { Board, Line, Testbed } from "./testbed.js";

export function describeLine(line: Line): string {
  return `${line.role} ${line.chip}/${line.offset}${line.activeLow ? " active-low" : ""}`;
}

export function describeControl(board: Board): string {
  switch (board.control.kind) {
    case "ethernet":
      return `${board.control.address}:${board.control.port}`;
    case "bus":
      return `bus ${board.control.device}`;
    case "links":
      return `${board.control.links.length} link${board.control.links.length === 1 ? "" : "s"} (${board.control.links.map((l) => l.peer).join(", ")})`;
  }
}

export function describeControlNetwork(testbed: Testbed): string {
  const c = testbed.controlNetwork;
  const medium =
    c.transport === "serial"
      ? `serial ${c.topology}${c.hub === undefined ? "" : ` (hub ${c.hub})`} at ${c.baud} baud`
      : `Ethernet (${c.transport.toUpperCase()})`;
  return `${medium}; heartbeat ${fmt(c.heartbeatMs)}, peer silent after ${fmt(c.silenceBoundMs)}, delivery within ${fmt(c.deliveryBoundMs)}`;
}

export function summarizeTestbed(
  testbed: Testbed,
  displayName: string,
  files: FileCheckScope,
): string {
  const r = testbed.rejuvenation;
  const lines: string[] = [];
  lines.push(
    `${displayName}: valid testbed "${testbed.name}" (${testbed.simulated ? "simulated" : "physical"})`,
  );
  if (testbed.description !== undefined) lines.push(`  ${testbed.description}`);
  lines.push(
    `  ${testbed.hosts.length} hosts, ${testbed.boards.length} boards; k = ${r.k}, k' = ${r.kPrime}, f = ${r.f}`,
  );
  lines.push(`  groups (${r.groups.length}): ${r.groups.map((g) => g.join(" ")).join(" | ")}`);
  lines.push(
    `  T_p ${r.tPMs === undefined ? "not set" : fmt(r.tPMs)}, T_d ${r.tDMs === undefined ? "not set" : fmt(r.tDMs)}; budgets: shutdown ${fmt(r.budgets.tShutdownMs)}, checkcode ${fmt(r.budgets.tCheckcodeMs)}, restorecode ${fmt(r.budgets.tRestorecodeMs)}, boot ${fmt(r.budgets.tBootMs)}, transfer ${fmt(r.budgets.tTransferMs)}`,
  );
  lines.push(`  T_exhaust: ${describeExhaustionModel(testbed.tExhaust)}`);
  lines.push(`  control network: ${describeControlNetwork(testbed)}`);
  for (const board of testbed.boards) {
    lines.push(
      `  ${board.id} guards ${board.guards}: ${board.lines.map(describeLine).join(", ")}; control ${describeControl(board)}`,
    );
  }
  lines.push(
    `  fail-safe: ${testbed.failsafe.actions
      .map((a) =>
        a.kind === "webhook"
          ? `webhook ${a.url}`
          : a.kind === "exec"
            ? `exec ${a.argv.join(" ")}`
            : a.kind,
      )
      .join(
        ", ",
      )}; ${testbed.failsafe.authFailureLimit} frames failing authentication from one peer within ${fmt(testbed.failsafe.authFailureWindowMs)} are an attack (${testbed.failsafe.onAuthFailures === "alarm" ? "an alarm" : "fail-safe"})`,
  );
  lines.push(
    files.kind === "none"
      ? "  files: not checked (a desk check); on a board, add --board ID to check its keys, images and devices"
      : files.kind === "all"
        ? "  files: every board's keys, images and devices are present"
        : `  files: board ${files.board}'s keys, images and devices are present`,
  );
  return `${lines.join("\n")}\n`;
}
