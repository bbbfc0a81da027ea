import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  formatProblem,
  lineLabel,
  loadTestbedFile,
  parseTestbed,
  renderWiringDiagram,
  type Testbed,
} from "@smw/wiring";
import { XMLParser, XMLValidator } from "fast-xml-parser";
import { describe, expect, it } from "vitest";

const here = path.dirname(fileURLToPath(import.meta.url));

function load(file: string): Testbed {
  const result = loadTestbedFile(file);
  if (!result.ok) throw new Error(result.problems.map(formatProblem).join("\n"));
  return result.testbed;
}

/** Every text element of the SVG, in order. */
function texts(svg: string): string[] {
  const parsed = new XMLParser({
    ignoreAttributes: false,
    preserveOrder: true,
    trimValues: false,
  }).parse(svg);
  const found: string[] = [];
  const walk = (nodes: unknown[]) => {
    for (const node of nodes as Array<Record<string, unknown>>) {
      for (const [key, value] of Object.entries(node)) {
        if (key === "text" && Array.isArray(value)) {
          found.push(value.map((v: Record<string, unknown>) => String(v["#text"] ?? "")).join(""));
        } else if (Array.isArray(value)) {
          walk(value);
        }
      }
    }
  };
  walk(parsed);
  return found;
}

describe("the wiring diagram", () => {
  for (const example of ["pi-lab.yaml", "rig-6.yaml"]) {
    it(`${example}: well-formed SVG labelling every line, board, host and link`, () => {
      const testbed = load(path.join(here, "..", "examples", example));
      const svg = renderWiringDiagram(testbed);
      expect(XMLValidator.validate(svg)).toBe(true);
      const labels = texts(svg);
      for (const board of testbed.boards) {
        expect(labels.some((t) => t.startsWith(`BOARD ${board.id} (guards ${board.guards}`))).toBe(
          true,
        );
        for (const line of board.lines) {
          // Role, chip/offset, active level, initial and safe levels, all on one label.
          const label = lineLabel(line);
          expect(label).toContain(`${line.chip}/${line.offset}`);
          expect(label).toContain(line.activeLow ? "active-low" : "active-high");
          expect(label).toContain(`init ${line.initial}, safe ${line.safe}`);
          expect(labels.filter((t) => t === label).length).toBeGreaterThanOrEqual(1);
        }
        expect(
          labels.some((t) => t.startsWith("host link ") && t.endsWith(`@${board.hostLink.baud}`)),
        ).toBe(true);
      }
      for (const host of testbed.hosts) {
        expect(labels.some((t) => t.startsWith(`HOST ${host.id} `))).toBe(true);
      }
      expect(labels.filter((t) => t === "RESET")).toHaveLength(testbed.boards.length);
    });
  }

  it("names the Pi header pin of each line on it, and the header's grounds", () => {
    const lab = load(path.join(here, "..", "examples", "pi-lab.yaml"));
    const pi1 = lab.boards[0];
    // pi-lab's pi1: reset on GPIO 17 (pin 11), write-protect on GPIO 22 (pin 15).
    const reset = pi1?.lines.find((l) => l.role === "reset");
    expect(reset && lineLabel(reset)).toMatch(/pinctrl-bcm2711\/17 {2}header pin 11 {2}active-low/);
    const wp = pi1?.lines.find((l) => l.role === "write-protect");
    expect(wp && lineLabel(wp)).toMatch(/pinctrl-bcm2711\/22 {2}header pin 15 /);
    const labels = texts(renderWiringDiagram(lab));
    expect(labels).toContain("ground: header pins 6, 9, 14, 20, 25, 30, 34, 39");
    // Simulated chips have no header.
    const rig = texts(renderWiringDiagram(load(path.join(here, "..", "examples", "rig-6.yaml"))));
    expect(rig.some((t) => t.includes("header pin"))).toBe(false);
  });

  it("draws one serial link per pair of boards in a mesh, and an endpoint per board on Ethernet", () => {
    const rig = renderWiringDiagram(load(path.join(here, "..", "examples", "rig-6.yaml")));
    expect(rig.match(/<polyline /g)).toHaveLength(15);
    expect(rig).toContain("serial link b1 - b2");
    const lab = renderWiringDiagram(load(path.join(here, "..", "examples", "pi-lab.yaml")));
    for (let i = 1; i <= 6; i++) expect(lab).toContain(`control udp 10.77.0.${10 + i}:7400`);
  });

  it("shows paths as written in the file, not resolved against this machine", () => {
    const svg = renderWiringDiagram(load(path.join(here, "..", "examples", "rig-6.yaml")));
    expect(svg).toContain("host link pty/h1-board @115200");
    expect(svg).not.toContain(here);
  });

  it("escapes labels that carry markup", () => {
    const text = `smw: 1
name: markup
description: "<script>alert('x')</script> & more"
keys: { operator: k.pub }
hosts:
  - { id: h1, address: "a:1", console: { device: /dev/ttyS0 }, stateDir: /s }
boards:
  - id: b1
    guards: h1
    lines: [{ role: reset, chip: "chip<&>", offset: 1, label: "a \\"quoted\\" <b>" }]
    control: { address: 10.0.0.1, port: 1 }
    hostLink: { device: /dev/ttyUSB0 }
    images:
      os: { live: /a, golden: /b, manifest: /c }
      sm: { live: /d, golden: /e, manifest: /f }
    keys: { signing: /k, linkDir: /l }
controlNetwork: { transport: udp }
rejuvenation: { k: 1, kPrime: 1, budgets: { tShutdown: 1s, tCheckcode: 1s, tRestorecode: 1s, tBoot: 1s, tTransfer: 1s } }
tExhaust: { parallel: 1d }
failsafe: { actions: [hold-reset] }
`;
    const result = parseTestbed(text, "/tmp/markup.yaml");
    if (!result.ok) throw new Error(result.problems.map(formatProblem).join("\n"));
    const svg = renderWiringDiagram(result.testbed);
    expect(XMLValidator.validate(svg)).toBe(true);
    expect(svg).not.toContain("<script>");
    // The text survives the round trip through XML unchanged.
    expect(texts(svg)).toContain("<script>alert('x')</script> & more");
  });
});
