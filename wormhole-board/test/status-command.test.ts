/**
 * `smw status` where it can learn nothing: every board named with its host, what answered in
 * place of a board daemon quoted, and exit 2 with where to look rather than a table of unknowns
 * and exit 0.
 */
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { smw } from "../../cli/test/run-smw.js";
import { MAX_REPLY_CHARS, stateText } from "../src/cli/board-command.js";
import { BoardStateFiles, type BoardStatus, makeTestbed6, socatUnavailable } from "../src/index.js";

describe("smw status with no board to ask", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "smw-status-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** `smw status` on pi-lab with every board's endpoint at `server` (closed after). */
  async function statusAgainst(
    server: Server,
    name: string,
  ): Promise<{ port: number; run: Awaited<ReturnType<typeof smw>> }> {
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const { port } = server.address() as { port: number };
    try {
      const testbed = path.join(dir, `${name}.yaml`);
      writeFileSync(
        testbed,
        readFileSync("wiring/examples/pi-lab.yaml", "utf8").replace(
          /"10\.77\.0\.1\d:7401"/g,
          `"127.0.0.1:${port}"`,
        ),
      );
      const keys = await smw("keys", "gen", "--out", dir, "--name", `${name}-operator`);
      expect(keys.code).toBe(0);
      const run = await smw(
        "status",
        "--testbed",
        testbed,
        "--key",
        path.join(dir, `${name}-operator.key`),
      );
      return { port, run };
    } finally {
      server.close();
    }
  }

  it("on a simulated testbed no rig runs from: exit 2, naming the copy a rig would run", async () => {
    const run = await smw("status", "--testbed", "wiring/examples/rig-6.yaml");
    expect(run.code).toBe(2);
    expect(run.stdout).toMatch(/^b1 +h1 +unknown +no daemon running here and no status written$/m);
    expect(run.stderr).toMatch(
      /no board of .*rig-6\.yaml could be reached, and none wrote a status on this machine; a rig runs a copy of its testbed: give that one \(--testbed runs\/rig-6\/testbed\.yaml/,
    );
  });

  it("where something else answers at a board's endpoint: quoted, with the board and the address", async () => {
    const { port, run } = await statusAgainst(
      createServer((c) => c.end("HTTP/1.1 400 Bad Request\r\n\r\n")),
      "pi-lab",
    );
    expect(run.code).toBe(2);
    expect(run.stdout).toContain(
      `pi1    srv1  unknown                                                         pi1 at 127.0.0.1:${port} answered with something that is not a board daemon's reply: "HTTP/1.1 400 Bad Request\\r\\n\\r\\n"`,
    );
  });

  it("where something at a board's endpoint never stops talking: cut off and named", async () => {
    // An endless answer, written as fast as the socket takes it.
    const server = createServer((c) => {
      const chunk = Buffer.alloc(64 * 1024, "x");
      const pump = () => {
        while (!c.destroyed && c.write(chunk));
      };
      c.on("drain", pump);
      c.on("error", () => {});
      pump();
    });
    const { port, run } = await statusAgainst(server, "flood");
    expect(run.code).toBe(2);
    expect(run.stdout).toMatch(
      new RegExp(
        `pi1 at 127\\.0\\.0\\.1:${port} answered with more than ${MAX_REPLY_CHARS} characters: not a board daemon's reply`,
      ),
    );
  }, 30_000);

  it.skipIf(socatUnavailable() !== undefined)(
    "a board not running: the last status it wrote, as stopped, a stop it wrote as under way over",
    async () => {
      const bed = await makeTestbed6("udp", "free");
      try {
        const b1 = bed.testbed.boards[0] as (typeof bed.testbed.boards)[number];
        const written: BoardStatus = {
          board: "b1",
          host: "h1",
          phase: "running",
          updatedAtMs: 10_000,
          period: 2,
          lastSteps: [],
          link: {} as BoardStatus["link"],
          maxTimerLatenessMs: 0,
          keyLease: { renewing: false, lapsesAtMs: 11_000 },
          stopping: { sinceMs: 9_900 },
        };
        // Stopping, as the table says it: when the running host is held; in fail-safe, the host
        // may be held already, and no time is given.
        expect(stateText(written)).toBe(
          `running, stopping: host held at ${new Date(11_000).toISOString()}`,
        );
        expect(stateText({ ...written, phase: "failsafe" })).toBe("failsafe, stopping");
        const files = new BoardStateFiles(b1.stateDir);
        files.writeStatus(written);
        await files.flush();
        const run = await smw("status", "--testbed", bed.file);
        expect(run.stdout).toMatch(/^b1 +h1 +stopped +2 +- /m);
        const json = await smw("status", "--testbed", bed.file, "--json");
        const rows = JSON.parse(json.stdout) as Array<{ board: string; status?: BoardStatus }>;
        expect(rows[0]?.status?.phase).toBe("stopped");
        expect(rows[0]?.status?.stopping).toBeUndefined();
      } finally {
        await bed.close();
      }
    },
  );
});
