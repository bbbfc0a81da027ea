/** Fault requests read from the rig's fault socket: checked before anything is done, and nothing sent can stop the rig. */
import { mkdtempSync, rmSync } from "node:fs";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { type FaultRequest, FaultSocket, parseFaultRequest, sendFault } from "@smw/test-rig";
import { loadTestbedFile, type Testbed } from "@smw/wiring";
import { afterAll, describe, expect, it } from "vitest";

const loaded = loadTestbedFile(path.resolve("wiring/examples/rig-6.yaml"));
if (!loaded.ok) throw new Error("rig-6.yaml does not load");
const testbed: Testbed = loaded.testbed;

describe("fault requests", () => {
  const parse = (v: unknown) => parseFaultRequest(v, testbed);

  it("fills in the defaults from the testbed", () => {
    expect(parse({ fault: "byzantine", host: "h2" })).toEqual({
      request: { fault: "byzantine", host: "h2", behaviours: ["wrong-replies", "equivocate"] },
    });
    // T_transfer (7 s) + 5 s; 3 × clockOffsetBound (50 ms).
    expect(parse({ fault: "slow-transfer", host: "h1" })).toEqual({
      request: { fault: "slow-transfer", host: "h1", stallMs: 12_000 },
    });
    expect(parse({ fault: "skew-clock", board: "b3", offsetMs: -400 })).toEqual({
      request: { fault: "skew-clock", board: "b3", offsetMs: -400 },
    });
    expect(parse({ fault: "skew-clock", board: "b3" })).toMatchObject({
      request: { offsetMs: 150 },
    });
    expect(parse({ fault: "corrupt-state", host: "h4" })).toEqual({
      request: { fault: "corrupt-state", host: "h4", now: false },
    });
    expect(parse({ fault: "tamper-manifest" })).toEqual({
      request: { fault: "tamper-manifest", image: "os" },
    });
    expect(parse({ fault: "restart-board", board: "b6" })).toEqual({
      request: { fault: "restart-board", board: "b6" },
    });
  });

  it("names what is wrong", () => {
    const error = (v: unknown) => {
      const r = parse(v);
      return "error" in r ? r.error : `accepted ${JSON.stringify(r.request)}`;
    };
    expect(error([1])).toBe("a fault request is a JSON object");
    expect(error({ fault: "meteor" })).toMatch(
      /^fault "meteor": no such fault \(faults: byzantine, /,
    );
    expect(error({ fault: "boot-hang" })).toBe(
      "fault boot-hang: --host: which host (hosts: h1, h2, h3, h4, h5, h6)",
    );
    expect(error({ fault: "boot-hang", host: "h9" })).toMatch(/--host h9: no such host/);
    expect(error({ fault: "kill-board", board: "b1", stallMs: 5 })).toMatch(
      /^fault kill-board: --ms does not apply to it/,
    );
    expect(error({ fault: "cut-link", board: "b1", peer: "b1" })).toMatch(/no link to itself/);
    expect(error({ fault: "cut-link", board: "b1" })).toMatch(/--peer: which board/);
    expect(error({ fault: "byzantine", host: "h1", behaviours: ["lie"] })).toMatch(
      /behaviour "lie" is not one \(behaviours: /,
    );
    expect(error({ fault: "slow-transfer", host: "h1", stallMs: -1 })).toMatch(
      /--ms -1: expected a whole number of milliseconds/,
    );
    expect(error({ fault: "tamper-golden", image: "bios" })).toMatch(
      /--image bios: expected os or sm/,
    );
  });
});

describe("the fault socket", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "smw-faults-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("answers every line, does what is valid, and survives garbage", async () => {
    const done: FaultRequest[] = [];
    const file = path.join(dir, "rig.sock");
    const socket = new FaultSocket(file, testbed, async (request) => {
      if (request.fault === "kill-board") throw new RangeError("that board is gone already");
      // A fault that takes time (restarting a board) is answered once it is done.
      if (request.fault === "restart-board")
        await new Promise((resolve) => setTimeout(resolve, 50));
      done.push(request);
      return `${request.fault} done`;
    });
    await socket.start();
    try {
      expect(await sendFault(file, { fault: "boot-hang", host: "h2" })).toEqual({
        ok: true,
        detail: "boot-hang done",
      });
      expect(await sendFault(file, { fault: "restart-board", board: "b2" })).toEqual({
        ok: true,
        detail: "restart-board done",
      });
      expect(await sendFault(file, { fault: "kill-board", board: "b2" })).toEqual({
        ok: false,
        error: "fault kill-board: that board is gone already",
      });
      expect(await sendFault(file, { fault: "boot-hang", host: "h0" })).toMatchObject({
        ok: false,
      });
      // Not JSON, then a line that never ends: answered, then the connection closed.
      const raw = await rawExchange(file, `not json\n${"x".repeat(20_000)}`);
      expect(raw).toEqual([
        { ok: false, error: "a fault request is one line of JSON" },
        { ok: false, error: "request line longer than 16384 bytes" },
      ]);
      // Still serving.
      expect(await sendFault(file, { fault: "corrupt-os", host: "h6" })).toMatchObject({
        ok: true,
      });
      expect(done.map((r) => r.fault)).toEqual(["boot-hang", "restart-board", "corrupt-os"]);
    } finally {
      await socket.stop();
    }
    await expect(sendFault(file, { fault: "boot-hang", host: "h2" })).rejects.toMatchObject({
      code: "ENOENT",
    });
  });
});

function rawExchange(file: string, text: string): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const c = createConnection(file, () => c.write(text));
    let received = "";
    c.setEncoding("utf8");
    c.on("data", (chunk: string) => {
      received += chunk;
    });
    c.on("error", reject);
    c.on("close", () =>
      resolve(
        received
          .trim()
          .split("\n")
          .map((l) => JSON.parse(l) as unknown),
      ),
    );
  });
}
