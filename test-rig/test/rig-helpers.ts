import { type ChildProcessByStdio, spawn } from "node:child_process";
import { once } from "node:events";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { type Browser, launch } from "puppeteer-core";
import { smw } from "../../cli/test/run-smw.js";

export const SMW_BIN = path.resolve("bin/smw.js");

/**
 * A copy of the example rig in a folder of its own, which is also its folder of run folders:
 * the rig runs in `runDir` (`<dir>/rig-6`). `args` are the flags that say so to smw.
 */
export function copyRig6(): {
  dir: string;
  file: string;
  runDir: string;
  args: string[];
  remove(): void;
} {
  const dir = mkdtempSync(path.join(tmpdir(), "smw-rig-"));
  const file = path.join(dir, "rig-6.yaml");
  copyFileSync(path.resolve("wiring/examples/rig-6.yaml"), file);
  return {
    dir,
    file,
    runDir: path.join(dir, "rig-6"),
    args: ["--testbed", file, "--runs", dir],
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** A timing campaign observing a running rig's boards from outside, for one period. */
export function observeOnePeriod(rigArgs: readonly string[], out: string) {
  return smw("rig", "measure", "--observe", ...rigArgs, "--cycles", "1", "--out", out);
}

/** `smw ARGS` as its own process, its output collected as it comes. */
export function spawnSmw(
  args: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): {
  child: ChildProcessByStdio<null, import("node:stream").Readable, import("node:stream").Readable>;
  stdout(): string;
  stderr(): string;
  exited: Promise<number>;
} {
  const child = spawn(process.execPath, [SMW_BIN, ...args], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout.on("data", (chunk: Buffer) => {
    out += chunk.toString();
  });
  child.stderr.on("data", (chunk: Buffer) => {
    err += chunk.toString();
  });
  const exited = once(child, "exit").then(([code]) => code as number);
  return { child, stdout: () => out, stderr: () => err, exited };
}

/** Pids of running processes whose command line mentions `marker`. */
export function processesMentioning(marker: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${name}/cmdline`, "utf8");
      const state = readFileSync(`/proc/${name}/stat`, "utf8").split(") ")[1]?.[0];
      if (state !== "Z" && cmdline.includes(marker)) pids.push(Number(name));
    } catch {
      // Gone meanwhile.
    }
  }
  return pids;
}

export async function eventually(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return check();
}

/**
 * A live page's event stream, read in the background as a browser reads it: its frames so far,
 * the response's headers, and a wait (bounded) for at least `count` frames.
 */
export function followEvents(url: string): {
  frames(): Array<{ event: string; data: string }>;
  headers: Promise<Headers>;
  until(count: number, timeoutMs?: number): Promise<Array<{ event: string; data: string }>>;
  close(): void;
} {
  const frames: Array<{ event: string; data: string }> = [];
  const controller = new AbortController();
  const response = fetch(url, { signal: controller.signal });
  void (async () => {
    const reader = ((await response).body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let end = buffer.indexOf("\n\n");
      while (end >= 0) {
        const text = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = /^data: (.*)$/m.exec(text)?.[1];
        if (data !== undefined)
          frames.push({ event: /^event: (.*)$/m.exec(text)?.[1] ?? "message", data });
        end = buffer.indexOf("\n\n");
      }
    }
  })().catch(() => {
    // Closed, or the server went away: the frames read so far stay.
  });
  return {
    frames: () => frames,
    headers: response.then((r) => r.headers),
    until: async (count, timeoutMs = 5_000) => {
      await eventually(() => frames.length >= count, timeoutMs);
      return frames;
    },
    close: () => controller.abort(),
  };
}

/** Debian's Chromium, which `npm test` installs as it installs socat; undefined if absent. */
export const CHROMIUM = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) =>
  existsSync(p),
);

/** Where the browser checks leave their screenshots, to look at after `npm test`. */
export const SCREENSHOTS = path.resolve("runs", "live-page");

/** Headless Chromium, started (and so paid for) before a rig runs; undefined without one. */
export async function startBrowser(): Promise<Browser | undefined> {
  if (CHROMIUM === undefined) return undefined;
  mkdirSync(SCREENSHOTS, { recursive: true });
  return launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu"],
  });
}
