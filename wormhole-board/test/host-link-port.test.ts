/** The board's end of the host link over a real PTY pair: what a hostile host can do to it. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { encodeHostLine } from "@smw/wiring";
import { HostLinkPort, ptyPair, socatUnavailable } from "@smw/wormhole-board";
import { SerialPort } from "serialport";
import { afterAll, describe, expect, it } from "vitest";

const noSocat = socatUnavailable();
if (noSocat !== undefined) process.stdout.write(`host link tests skipped: ${noSocat}\n`);

const until = async (condition: () => boolean, what: string) => {
  const deadline = Date.now() + 5_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
};

describe.skipIf(noSocat !== undefined)("the host link", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "smw-host-link-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const open = async (name: string, maxLinesPerSecond?: number) => {
    const boardEnd = path.join(dir, `${name}-board`);
    const hostEnd = path.join(dir, `${name}-host`);
    const pair = await ptyPair(boardEnd, hostEnd);
    const port = new HostLinkPort(boardEnd, 115200, maxLinesPerSecond);
    await port.open();
    const host = new SerialPort({ path: hostEnd, baudRate: 115200 });
    await new Promise<void>((resolve) => host.once("open", () => resolve()));
    const write = (text: string) =>
      new Promise<void>((resolve) => host.write(text, () => host.drain(() => resolve())));
    const close = async () => {
      await new Promise<void>((resolve) => host.close(() => resolve()));
      await port.close();
      await pair.close();
    };
    return { port, write, close };
  };

  it("drops what a host left mid-line at its reset: the clean agent's first BOOTED lands", async () => {
    const { port, write, close } = await open("flush");
    try {
      const booted: string[] = [];
      port.on((m) => {
        if (m.type === "BOOTED") booted.push(m.publicKey);
      });
      // The compromised host writes half a line, then is held in reset.
      await write('{"type":"BOOTED","publicKey":"evil');
      await new Promise((resolve) => setTimeout(resolve, 50));
      port.flush();
      expect(port.counters.flushed).toBe(1);
      // The restored agent's first line.
      await write(encodeHostLine({ type: "BOOTED", publicKey: "A".repeat(43) }));
      await until(() => booted.length === 1, "the BOOTED line");
      expect(booted).toEqual(["A".repeat(43)]);
      expect(port.counters.malformed).toBe(0);
    } finally {
      await close();
    }
  });

  it("reads at most its rate of lines from a flooding host, counts the rest, and still works", async () => {
    const { port, write, close } = await open("flood", 50);
    try {
      await write("garbage\n".repeat(5_000));
      await until(
        () => port.counters.received + port.counters.flooded === 5_000,
        "every line read or dropped",
      );
      expect(port.counters.received).toBeLessThanOrEqual(50 * 2);
      expect(port.counters.flooded).toBeGreaterThanOrEqual(5_000 - 50 * 2);
      await new Promise((resolve) => setTimeout(resolve, 1_050));
      const booted = port.waitFor((m) => m.type === "BOOTED", 2_000);
      await write(encodeHostLine({ type: "BOOTED", publicKey: "B".repeat(43) }));
      expect(await booted).toEqual({ type: "BOOTED", publicKey: "B".repeat(43) });
    } finally {
      await close();
    }
  });
});
