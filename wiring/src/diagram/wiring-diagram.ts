/**
 * A printable wiring diagram of a testbed: each board beside the host it
 * guards, every GPIO line as a labelled wire (role, chip/offset, active level,
 * initial and safe levels), the host link, and the control network on the left.
 * Plain SVG with no scripts or external fonts, so it prints anywhere.
 */

import { describeControlNetwork } from "../testbed/summary.js";
import {
  type Board,
  displayPath,
  groupOf,
  type Host,
  type Line,
  type LineRole,
  type Testbed,
} from "../testbed/testbed.js";
import { HEADER_GROUND_PINS, headerPin } from "./pi-header.js";
import { escapeXml } from "./svg.js";

const FONT = 'font-family="DejaVu Sans Mono, Menlo, Consolas, monospace"';
const CHAR_WIDTH = 6.7;
const ROW = 18;
const HEADER = 26;
const PAD = 8;
const ROW_GAP = 28;

const ROLE_COLOUR: Record<LineRole, string> = {
  reset: "#c62828",
  power: "#ef6c00",
  "write-protect": "#1565c0",
  "storage-mux": "#6a1b9a",
  alarm: "#616161",
  status: "#616161",
};

/** Where each role's wire ends on the host side. */
const HOST_TERMINAL: Partial<Record<LineRole, string>> = {
  reset: "RESET",
  power: "POWER (PSU relay)",
  "write-protect": "code disk write-protect",
  "storage-mux": "code disk storage mux",
};

const LINK_COLOUR = "#2e7d32";
const CONTROL_COLOUR = "#00838f";

interface BoardRow {
  text: string;
  kind: "line" | "hostLink" | "control";
  line?: Line;
  peer?: string;
}

export function renderWiringDiagram(testbed: Testbed): string {
  const hostsById = new Map(testbed.hosts.map((host) => [host.id, host]));
  const rowsByBoard = testbed.boards.map((board) => boardRows(board, testbed));

  const boardWidth = Math.max(
    260,
    ...rowsByBoard.flat().map((row) => row.text.length * CHAR_WIDTH + 2 * PAD),
    ...testbed.boards.map((b) => boardTitle(b, testbed).length * CHAR_WIDTH * 1.1 + 2 * PAD),
  );
  const hostWidth = Math.max(
    240,
    ...testbed.boards.map((board) => {
      const host = hostsById.get(board.guards);
      return host === undefined ? 0 : hostTitle(host).length * CHAR_WIDTH * 1.1 + 2 * PAD;
    }),
    ...testbed.hosts.map(
      (host) =>
        `console ${displayPath(testbed, host.console.device)} @${host.console.baud}`.length *
          CHAR_WIDTH +
        2 * PAD,
    ),
  );

  const pairs = controlPairs(testbed);
  const trackGap = 12;
  const controlWidth =
    testbed.controlNetwork.transport === "serial" && testbed.controlNetwork.topology !== "bus"
      ? 40 + pairs.length * trackGap
      : 90;
  const boardX = 20 + controlWidth;
  // Wide enough for the longest label written along a wire.
  const wireLength = Math.max(
    230,
    ...testbed.boards.flatMap((board) =>
      board.lines.map((line) => wireLabel(line).length * 5.6 + 40),
    ),
  );
  const hostX = boardX + boardWidth + wireLength;
  const width = Math.ceil(hostX + hostWidth + 20);

  const body: string[] = [];
  let y = 96;
  const controlPins = new Map<string, Map<string, number>>();
  const busPins: Array<{ y: number; label: string }> = [];

  testbed.boards.forEach((board, index) => {
    const rows = rowsByBoard[index] as BoardRow[];
    const host = hostsById.get(board.guards);
    const boxHeight = HEADER + rows.length * ROW + PAD;
    body.push(`<g id="board-${escapeXml(board.id)}">`);
    body.push(box(boardX, y, boardWidth, boxHeight, "#fafafa", "#212121"));
    body.push(text(boardX + PAD, y + 17, boardTitle(board, testbed), { weight: "bold", size: 12 }));
    if (host !== undefined) {
      body.push(box(hostX, y, hostWidth, boxHeight, "#fffde7", "#212121"));
      body.push(text(hostX + PAD, y + 17, hostTitle(host), { weight: "bold", size: 12 }));
      body.push(
        text(hostX + PAD, y + boxHeight - PAD, `state ${displayPath(testbed, host.stateDir)}`, {
          size: 9,
          colour: "#616161",
        }),
      );
    }
    const pins = new Map<string, number>();
    rows.forEach((row, r) => {
      const rowY = y + HEADER + r * ROW + ROW / 2;
      const colour =
        row.kind === "line" && row.line !== undefined
          ? ROLE_COLOUR[row.line.role]
          : row.kind === "hostLink"
            ? LINK_COLOUR
            : CONTROL_COLOUR;
      body.push(text(boardX + PAD, rowY + 4, row.text, { colour }));
      if (row.kind === "line" && row.line !== undefined) {
        body.push(...lineWire(row.line, boardX + boardWidth, hostX, rowY, host !== undefined));
      } else if (row.kind === "hostLink" && host !== undefined) {
        const x1 = boardX + boardWidth;
        body.push(pin(x1, rowY, LINK_COLOUR));
        body.push(
          `<line x1="${x1}" y1="${rowY}" x2="${hostX}" y2="${rowY}" stroke="${LINK_COLOUR}" stroke-width="2" stroke-dasharray="6 3"/>`,
        );
        body.push(pin(hostX, rowY, LINK_COLOUR));
        body.push(
          text((x1 + hostX) / 2, rowY + 13, `host link, serial ${board.hostLink.baud} baud`, {
            anchor: "middle",
            size: 9,
            colour: LINK_COLOUR,
          }),
        );
        body.push(
          text(
            hostX + PAD,
            rowY + 4,
            `console ${displayPath(testbed, host.console.device)} @${host.console.baud}`,
            {
              colour: LINK_COLOUR,
            },
          ),
        );
      } else if (row.kind === "control") {
        body.push(pin(boardX, rowY, CONTROL_COLOUR));
        if (row.peer !== undefined) pins.set(row.peer, rowY);
        else busPins.push({ y: rowY, label: row.text });
      }
    });
    controlPins.set(board.id, pins);
    body.push("</g>");
    y += boxHeight + ROW_GAP;
  });

  body.push(...controlNetwork(testbed, pairs, controlPins, busPins, boardX, trackGap));

  const height = Math.ceil(y + 40);
  const header = [
    text(20, 28, `smw wiring: ${testbed.name}${testbed.simulated ? " (simulated)" : ""}`, {
      size: 16,
      weight: "bold",
    }),
    text(20, 46, testbed.description ?? "", { size: 11, colour: "#424242" }),
    text(20, 62, `control network: ${describeControlNetwork(testbed)}`, {
      size: 10,
      colour: CONTROL_COLOUR,
    }),
    ...legend(20, 80),
  ];
  const footer = text(
    20,
    height - 14,
    "Levels: active = asserted (reset held, power on, disk protected, disk on board, alarm on). init = level when the board claims the line; safe = level on exit, signal or crash.",
    { size: 9, colour: "#616161" },
  );
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">`,
    `<title>${escapeXml(`Wiring of testbed ${testbed.name}`)}</title>`,
    `<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`,
    ...header,
    ...body,
    footer,
    "</svg>",
    "",
  ].join("\n");
}

function boardTitle(board: Board, testbed: Testbed): string {
  const group = groupOf(testbed, board.guards);
  return `BOARD ${board.id} (guards ${board.guards}${group === undefined ? "" : `, group ${group}`})`;
}

function hostTitle(host: Host): string {
  return `HOST ${host.id}  payload ${host.address.host}:${host.address.port}`;
}

function wireLabel(line: Line): string {
  return `${line.label ?? line.role}${line.activeLow ? " (active-low)" : ""}`;
}

export function lineLabel(line: Line): string {
  const level = line.activeLow ? "active-low" : "active-high";
  const pinNumber = headerPin(line.chip, line.offset);
  const onHeader = pinNumber === undefined ? "" : `  header pin ${pinNumber}`;
  return `${line.role.padEnd(13)} ${line.chip}/${line.offset}${onHeader}  ${level}  init ${line.initial}, safe ${line.safe}`;
}

function boardRows(board: Board, testbed: Testbed): BoardRow[] {
  const rows: BoardRow[] = board.lines.map((line) => ({
    text: lineLabel(line),
    kind: "line",
    line,
  }));
  // Lines on the Pi's header share its grounds with what they drive.
  if (board.lines.some((line) => headerPin(line.chip, line.offset) !== undefined))
    rows.push({ text: `ground: header pins ${HEADER_GROUND_PINS.join(", ")}`, kind: "control" });
  rows.push({
    text: `host link ${displayPath(testbed, board.hostLink.device)} @${board.hostLink.baud}`,
    kind: "hostLink",
  });
  const control = board.control;
  if (control.kind === "ethernet") {
    rows.push({
      text: `control ${testbed.controlNetwork.transport} ${control.address}:${control.port}`,
      kind: "control",
    });
  } else if (control.kind === "bus") {
    rows.push({ text: `control bus ${displayPath(testbed, control.device)}`, kind: "control" });
  } else {
    for (const link of control.links) {
      rows.push({
        text: `control to ${link.peer}: ${displayPath(testbed, link.device)}`,
        kind: "control",
        peer: link.peer,
      });
    }
  }
  return rows;
}

function lineWire(line: Line, x1: number, hostX: number, y: number, hasHost: boolean): string[] {
  const colour = ROLE_COLOUR[line.role];
  const terminal = HOST_TERMINAL[line.role];
  const parts = [pin(x1, y, colour)];
  const mid = (x1 + hostX) / 2;
  if (terminal !== undefined && hasHost) {
    parts.push(
      `<line x1="${x1}" y1="${y}" x2="${hostX}" y2="${y}" stroke="${colour}" stroke-width="2"/>`,
    );
    parts.push(pin(hostX, y, colour));
    parts.push(text(hostX + PAD, y + 4, terminal, { colour }));
    parts.push(
      text(mid, y - 4, wireLabel(line), {
        anchor: "middle",
        size: 9,
        colour,
      }),
    );
  } else {
    // Alarm and status lines drive an indicator next to the board, not the host.
    const end = x1 + 70;
    parts.push(
      `<line x1="${x1}" y1="${y}" x2="${end}" y2="${y}" stroke="${colour}" stroke-width="2"/>`,
    );
    parts.push(
      `<circle cx="${end + 6}" cy="${y}" r="6" fill="#ffffff" stroke="${colour}" stroke-width="2"/>`,
    );
    parts.push(
      text(
        end + 16,
        y + 4,
        line.label ?? (line.role === "alarm" ? "alarm indicator" : "status LED"),
        { size: 9, colour },
      ),
    );
  }
  return parts;
}

function controlPairs(testbed: Testbed): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  const seen = new Set<string>();
  for (const board of testbed.boards) {
    if (board.control.kind !== "links") continue;
    for (const link of board.control.links) {
      const key = [board.id, link.peer].sort().join("\u0000");
      if (seen.has(key)) continue;
      seen.add(key);
      pairs.push([board.id, link.peer]);
    }
  }
  return pairs;
}

function controlNetwork(
  testbed: Testbed,
  pairs: Array<[string, string]>,
  pins: Map<string, Map<string, number>>,
  busPins: Array<{ y: number; label: string }>,
  boardX: number,
  trackGap: number,
): string[] {
  const parts: string[] = ['<g id="control-network">'];
  if (busPins.length > 0) {
    const busX = boardX - 50;
    const top = Math.min(...busPins.map((p) => p.y));
    const bottom = Math.max(...busPins.map((p) => p.y));
    parts.push(
      `<line x1="${busX}" y1="${top - 20}" x2="${busX}" y2="${bottom + 20}" stroke="${CONTROL_COLOUR}" stroke-width="4"/>`,
    );
    const label =
      testbed.controlNetwork.transport === "serial"
        ? "serial bus"
        : `${testbed.controlNetwork.transport.toUpperCase()} switch`;
    parts.push(text(busX - 6, top - 26, label, { size: 9, colour: CONTROL_COLOUR }));
    for (const p of busPins) {
      parts.push(
        `<line x1="${busX}" y1="${p.y}" x2="${boardX}" y2="${p.y}" stroke="${CONTROL_COLOUR}" stroke-width="2"/>`,
      );
      parts.push(`<circle cx="${busX}" cy="${p.y}" r="3" fill="${CONTROL_COLOUR}"/>`);
    }
  }
  pairs.forEach(([a, b], i) => {
    const ya = pins.get(a)?.get(b);
    const yb = pins.get(b)?.get(a);
    if (ya === undefined || yb === undefined) return;
    const trackX = boardX - 20 - i * trackGap;
    parts.push(
      `<polyline points="${boardX},${ya} ${trackX},${ya} ${trackX},${yb} ${boardX},${yb}" fill="none" stroke="${CONTROL_COLOUR}" stroke-width="1.5"><title>${escapeXml(`serial link ${a} - ${b}`)}</title></polyline>`,
    );
  });
  if (pairs.length > 0) {
    parts.push(text(20, 90, `serial links: ${pairs.length}`, { size: 9, colour: CONTROL_COLOUR }));
  }
  parts.push("</g>");
  return parts;
}

function legend(x: number, y: number): string[] {
  const entries: Array<[string, string]> = [
    ["reset", ROLE_COLOUR.reset],
    ["power", ROLE_COLOUR.power],
    ["write-protect", ROLE_COLOUR["write-protect"]],
    ["storage-mux", ROLE_COLOUR["storage-mux"]],
    ["alarm / status", ROLE_COLOUR.alarm],
    ["host link (serial)", LINK_COLOUR],
    ["control link", CONTROL_COLOUR],
  ];
  const parts: string[] = [];
  let cursor = x + 260;
  for (const [name, colour] of entries) {
    parts.push(
      `<line x1="${cursor}" y1="${y - 4}" x2="${cursor + 18}" y2="${y - 4}" stroke="${colour}" stroke-width="3"/>`,
    );
    parts.push(text(cursor + 22, y, name, { size: 9, colour }));
    cursor += 30 + name.length * 6;
  }
  return parts;
}

function box(x: number, y: number, w: number, h: number, fill: string, stroke: string): string {
  return `<rect x="${x}" y="${y}" width="${w}" height="${h}" rx="6" fill="${fill}" stroke="${stroke}" stroke-width="1.5"/>`;
}

function pin(x: number, y: number, colour: string): string {
  return `<circle cx="${x}" cy="${y}" r="3.5" fill="${colour}"/>`;
}

function text(
  x: number,
  y: number,
  content: string,
  style: {
    size?: number;
    weight?: string;
    colour?: string;
    anchor?: "start" | "middle" | "end";
  } = {},
): string {
  return `<text x="${round(x)}" y="${round(y)}" ${FONT} font-size="${style.size ?? 11}"${style.weight ? ` font-weight="${style.weight}"` : ""} fill="${style.colour ?? "#212121"}"${style.anchor && style.anchor !== "start" ? ` text-anchor="${style.anchor}"` : ""} xml:space="preserve">${escapeXml(content)}</text>`;
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}
