import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { defaultAlerts } from "@smw/wormhole-board";
import { afterAll, describe, expect, it } from "vitest";

const dir = mkdtempSync(path.join(tmpdir(), "smw-alerts-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("fail-safe alerts", () => {
  it("POSTs the JSON alert to a webhook", async () => {
    const received: Array<{ method: string; type: string | undefined; body: unknown }> = [];
    const server = createServer((request, response) => {
      let text = "";
      request.on("data", (chunk) => {
        text += chunk;
      });
      request.on("end", () => {
        received.push({
          method: request.method ?? "",
          type: request.headers["content-type"],
          body: JSON.parse(text),
        });
        response.end("ok");
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as { port: number }).port;
    try {
      await defaultAlerts.webhook(`http://127.0.0.1:${port}/alert`, {
        board: "b1",
        failsafe: { reason: "drill" },
      });
      expect(received).toEqual([
        {
          method: "POST",
          type: "application/json",
          body: { board: "b1", failsafe: { reason: "drill" } },
        },
      ]);
      await expect(
        defaultAlerts.webhook(`http://127.0.0.1:${port + 1}/nothing-here`, {}),
      ).rejects.toThrow();
    } finally {
      server.close();
    }
  });

  it("runs the configured command with the reason in its environment", async () => {
    const out = path.join(dir, "alert.txt");
    defaultAlerts.exec(
      ["sh", "-c", `printf '%s|%s|%s' "$SMW_BOARD" "$SMW_ORIGIN" "$SMW_REASON" > ${out}`],
      {
        SMW_BOARD: "b2",
        SMW_ORIGIN: "b5",
        SMW_REASON: "board b5 silent",
      },
    );
    const deadline = Date.now() + 5_000;
    let text = "";
    while (Date.now() < deadline) {
      try {
        text = readFileSync(out, "utf8");
        if (text.length > 0) break;
      } catch {
        // Not written yet.
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(text).toBe("b2|b5|board b5 silent");
    // A command that cannot run does not throw into the board.
    expect(() => defaultAlerts.exec(["/no/such/program"], {})).not.toThrow();
  });
});
