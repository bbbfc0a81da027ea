/** The board's end of the host link over a real PTY pair: what a hostile host can do to it. */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { encodeHostLine } from "@smw/wiring";
import {
  ConsoleLog,
  HostLinkPort,
  ptyPair,
  ReopeningSerialPort,
  socatUnavailable,
} from "@smw/wormhole-board";
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
      // The compromised host writes half a line, then is held in reset. (Waited for as read: a
      // fixed 50 ms was too short under load, and the flush came before the half line.)
      const half = '{"type":"BOOTED","publicKey":"evil';
      await write(half);
      await until(() => port.unfinishedLineBytes === half.length, "the half line read");
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

  /** The host's end of a link, its lines collected. */
  const hostEnd = async (device: string) => {
    const host = new SerialPort({ path: device, baudRate: 115200 });
    await new Promise<void>((resolve) => host.once("open", () => resolve()));
    let received = "";
    host.on("data", (chunk: Buffer) => {
      received += chunk.toString("utf8");
    });
    return {
      received: () => received,
      write: (text: string) =>
        new Promise<void>((resolve) => host.write(text, () => host.drain(() => resolve()))),
      close: () => new Promise<void>((resolve) => host.close(() => resolve())),
    };
  };

  it("reopens a device that went away and came back, counting what it could not send meanwhile", async () => {
    const boardEnd = path.join(dir, "reopen-board");
    const hostPath = path.join(dir, "reopen-host");
    let pair = await ptyPair(boardEnd, hostPath);
    const port = new HostLinkPort(boardEnd, 115200);
    await port.open();
    let host = await hostEnd(hostPath);
    try {
      const booted: string[] = [];
      port.on((m) => {
        if (m.type === "BOOTED") booted.push(m.publicKey);
      });
      // The host gets half a line out before its adapter goes away...
      const evil = encodeHostLine({ type: "BOOTED", publicKey: "E".repeat(43) });
      const half = Math.floor(evil.length / 2);
      await host.write(evil.slice(0, half));
      await new Promise((resolve) => setTimeout(resolve, 200));
      await host.close();
      await pair.close();
      await until(() => port.down, "the board end to see its device go");
      // ...and the board sends while it is gone.
      expect(() => port.send({ type: "PREPARE_SHUTDOWN", period: 1 })).not.toThrow();
      expect(port.counters.dropped).toBe(1);
      expect(port.counters.sent).toBe(0);
      // The device comes back at the same path.
      pair = await ptyPair(boardEnd, hostPath);
      await until(() => port.reopened === 1 && !port.down, "the board end to reopen");
      host = await hostEnd(hostPath);
      // The rest of the old line, were it joined to the first half, would make a valid BOOTED.
      await host.write(evil.slice(half));
      await host.write(encodeHostLine({ type: "BOOTED", publicKey: "C".repeat(43) }));
      await until(() => booted.length === 1, "the BOOTED line after the reopen");
      expect(booted).toEqual(["C".repeat(43)]);
      expect(port.counters.flushed).toBe(1);
      expect(port.counters.malformed).toBe(1);
      // And the board's lines reach the host again.
      port.send({ type: "PREPARE_SHUTDOWN", period: 2 });
      const line = encodeHostLine({ type: "PREPARE_SHUTDOWN", period: 2 });
      await until(() => host.received() === line, "the PREPARE_SHUTDOWN line at the host");
      expect(port.counters.sent).toBe(1);
    } finally {
      await host.close();
      await port.close();
      await pair.close();
    }
  });

  it("notices a device that hangs up right after the open, before a read waits on it", async () => {
    const boardEnd = path.join(dir, "hangup-board");
    const hostPath = path.join(dir, "hangup-host");
    let pair = await ptyPair(boardEnd, hostPath);
    const port = new HostLinkPort(boardEnd, 115200);
    await port.open();
    try {
      // Reads of a hung-up PTY return nothing, and the port stays open: only the check sees it.
      await pair.close();
      await until(() => port.down, "the board end to see its device go");
      pair = await ptyPair(boardEnd, hostPath);
      await until(() => port.reopened === 1 && !port.down, "the board end to reopen");
    } finally {
      await port.close();
      await pair.close();
    }
  });

  it("backs off between reopen tries, doubling the wait up to its maximum, and starts from the shortest once back for good", async () => {
    const boardEnd = path.join(dir, "backoff-board");
    const hostPath = path.join(dir, "backoff-host");
    let pair = await ptyPair(boardEnd, hostPath);
    const port = new ReopeningSerialPort(
      boardEnd,
      115200,
      { data: () => {}, reopened: () => {} },
      { reopenMinMs: 20, reopenMaxMs: 160, checkMs: 20 },
    );
    await port.open();
    try {
      // It had been open longer than the longest wait: the first try comes after the shortest.
      await new Promise((resolve) => setTimeout(resolve, 200));
      await pair.close();
      await until(() => port.counters.lost === 1, "the device to go");
      // Each failed try doubles the wait: 20 ms, then 40, 80, 160, 160, ...
      const seen = new Map<number, number>();
      await until(() => {
        seen.set(port.counters.failedReopens, port.reopenDelayMs);
        return port.counters.failedReopens >= 6;
      }, "six failed reopen tries");
      for (const [failed, delayMs] of seen)
        expect(delayMs, `after ${failed} failed tries`).toBe(Math.min(20 * 2 ** failed, 160));
      expect(seen.get(6)).toBe(160);
      // Open longer than the longest wait, then lost again: back to the shortest wait. Under
      // load the loss may be seen only after a few more failed tries; with three or more the
      // wait is 160 ms either way, so that round tells nothing and another is run.
      const rounds: { failedSinceLoss: number; delayMs: number }[] = [];
      for (let round = 1; round <= 3; round++) {
        pair = await ptyPair(boardEnd, hostPath);
        await until(() => port.counters.reopened === round && !port.down, "the reopen");
        const failedBefore = port.counters.failedReopens;
        await new Promise((resolve) => setTimeout(resolve, 250));
        await pair.close();
        await until(() => port.counters.lost === round + 1, "the device to go again");
        const failedSinceLoss = port.counters.failedReopens - failedBefore;
        rounds.push({ failedSinceLoss, delayMs: port.reopenDelayMs });
        if (failedSinceLoss < 3) break;
      }
      const last = rounds.at(-1);
      expect(last?.failedSinceLoss, JSON.stringify(rounds)).toBeLessThan(3);
      expect(last?.delayMs, JSON.stringify({ ...port.counters, seen: [...seen], rounds })).toBe(
        20 * 2 ** (last?.failedSinceLoss ?? 0),
      );
    } finally {
      await port.close();
      await pair.close();
    }
  });

  it("stops reopening once its owner closes it", async () => {
    const boardEnd = path.join(dir, "closed-board");
    const hostPath = path.join(dir, "closed-host");
    let pair = await ptyPair(boardEnd, hostPath);
    const port = new HostLinkPort(boardEnd, 115200, undefined, {
      reopenMinMs: 10,
      reopenMaxMs: 20,
    });
    await port.open();
    try {
      await pair.close();
      await until(() => port.down, "the board end to see its device go");
      await port.close();
      expect(port.down).toBe(false);
      pair = await ptyPair(boardEnd, hostPath);
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(port.reopened).toBe(0);
      // Nothing holds the device (a serial port is opened exclusively): a fresh owner opens it.
      const again = new HostLinkPort(boardEnd, 115200);
      await again.open();
      await again.close();
    } finally {
      await port.close();
      await pair.close();
    }
  });

  it("reports a device that is not there at start", async () => {
    const port = new HostLinkPort(path.join(dir, "absent"), 115200);
    await expect(port.open()).rejects.toThrow(/cannot open the host link on .*absent: /);
    expect(port.down).toBe(false);
  });

  it("keeps the host's console text in its console log", async () => {
    const consoleLog = new ConsoleLog(path.join(dir, "console.log"));
    const boardEnd = path.join(dir, "console-board");
    const hostPath = path.join(dir, "console-host");
    const pair = await ptyPair(boardEnd, hostPath);
    const withLog = new HostLinkPort(boardEnd, 115200, undefined, {
      consoleLog,
    });
    await withLog.open();
    const host = await hostEnd(hostPath);
    try {
      await host.write("[    0.000000] Linux version 6.1\r\n");
      await host.write(encodeHostLine({ type: "HB" }));
      await host.write("\u001b[2Jlogin: \n");
      await until(() => withLog.counters.received === 3, "three lines");
      expect(withLog.counters.accepted).toBe(1);
      await consoleLog.flush();
      const kept = readFileSync(consoleLog.path, "utf8");
      expect(kept).toMatch(/^\S+Z \[ {4}0\.000000\] Linux version 6\.1\n\S+Z \\x1b\[2Jlogin: \n$/);
      expect(kept).not.toContain("smwh1");
    } finally {
      await host.close();
      await withLog.close();
      await pair.close();
    }
  });
});
