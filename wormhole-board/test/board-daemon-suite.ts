/**
 * Six board daemons in this process, with simulated lines and hosts, over a real transport.
 * The suite is split into two test files of about the same length, which run side by side:
 * board-daemons.test.ts (over UDP) and board-daemons-pty.test.ts (over socat PTY pairs, plus bad
 * input and clock and timer faults, which use UDP daemons of their own).
 */
import { execFile, spawnSync } from "node:child_process";
import { createSocket } from "node:dgram";
import { appendFileSync, chmodSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { encodeControlFrame } from "@smw/wiring";
import {
  BoardDaemon,
  BoardLines,
  BoardStateFiles,
  ControlLink,
  type ControlTransport,
  controlSocketPath,
  filteredTransport,
  HostLinkPort,
  makeTestbed6,
  readLinkKeys,
  readPrivateKey,
  readPublicKey,
  SimulatedHost,
  SimulatedLines,
  socatUnavailable,
  type Testbed6,
  transportFor,
} from "@smw/wormhole-board";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { operatorSend, signedClear } from "./operator-send.js";

const bin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "bin", "smw.js");
const smw = (...args: string[]) => {
  const run = spawnSync(process.execPath, [bin, ...args], { encoding: "utf8", timeout: 30_000 });
  return { code: run.status, stdout: run.stdout, stderr: run.stderr };
};
/** Asynchronous, so the daemons in this process keep running while the CLI talks to them. */
const smwAsync = (...args: string[]) =>
  new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    execFile(
      process.execPath,
      [bin, ...args],
      { encoding: "utf8", timeout: 30_000 },
      (error, stdout, stderr) => {
        resolve({
          code: error === null ? 0 : typeof error.code === "number" ? error.code : null,
          stdout,
          stderr,
        });
      },
    );
  });

const noSocat = socatUnavailable();
if (noSocat !== undefined) process.stdout.write(`board daemon tests skipped: ${noSocat}\n`);

interface Rig {
  bed: Testbed6;
  sim: SimulatedLines;
  daemons: BoardDaemon[];
  hosts: SimulatedHost[];
  resetsActive: number[];
  /** Per board: whether its host's OS image matched the golden one when its reset was first released. */
  cleanAtRelease: Map<string, boolean>;
  close(): Promise<void>;
}

async function startRig(
  transport: "udp" | "serial",
  basePort: number,
  clockOffsetsMs: Record<string, number> = {},
  wrap: (board: string, transport: ControlTransport) => ControlTransport = (_, t) => t,
  options: {
    latched?: readonly string[];
    joinDeadlineMs?: number;
    /** Boards whose host's OS image is left half restored before they start. */
    halfRestored?: readonly string[];
    /** Boards that certified a key out of schedule before they were restarted. */
    certifiedBefore?: readonly string[];
  } = {},
): Promise<Rig> {
  const bed = await makeTestbed6(transport, basePort);
  for (const board of options.halfRestored ?? []) {
    const live = bed.testbed.boards.find((b) => b.id === board)?.images.os.live as string;
    const bytes = readFileSync(live);
    bytes.fill(0xee, bytes.length >> 1);
    writeFileSync(live, bytes);
  }
  for (const board of options.certifiedBefore ?? []) {
    const dir = bed.testbed.boards.find((b) => b.id === board)?.stateDir as string;
    new BoardStateFiles(dir).writeUnscheduledCertificate(0);
  }
  // Boards that come up with a fail-safe state latched on disk, as after a restart.
  for (const board of options.latched ?? []) {
    const dir = bed.testbed.boards.find((b) => b.id === board)?.stateDir as string;
    new BoardStateFiles(dir).writeFailsafe({ sinceMs: 0, reason: "drill", origin: board });
  }
  const started: BoardDaemon[] = [];
  const hostsStarted: SimulatedHost[] = [];
  try {
    const sim = new SimulatedLines();
    const t = bed.testbed;
    const daemons: BoardDaemon[] = [];
    const hosts: SimulatedHost[] = [];
    const resetsActive: number[] = [];
    const cleanAtRelease = new Map<string, boolean>();
    // How many hosts are held in reset, after every change of any reset line.
    const resetLevel = new Map<string, string>();
    sim.onChange((event) => {
      if (event.role !== "reset") return;
      const board = event.chip.replace(/^sim-/, "");
      if (event.level === "inactive" && !cleanAtRelease.has(board)) {
        const images = t.boards.find((b) => b.id === board)?.images.os;
        if (images !== undefined)
          cleanAtRelease.set(board, readFileSync(images.live).equals(readFileSync(images.golden)));
      }
      resetLevel.set(event.chip, event.level);
      resetsActive.push([...resetLevel.values()].filter((level) => level === "active").length);
    });
    const operatorKey = readPublicKey(t.operatorKeyPath);
    const claimed: BoardLines[] = [];
    for (const board of t.boards) {
      const host = t.hosts.find((h) => h.id === board.guards);
      if (host === undefined) throw new Error("no host");
      const simulatedHost = new SimulatedHost({
        device: host.console.device,
        lines: sim,
        resetChip: `sim-${board.id}`,
        resetOffset: 0,
        resetActiveLow: true,
        bootMs: 40,
        transferMs: 40,
      });
      await simulatedHost.start();
      hosts.push(simulatedHost);
      hostsStarted.push(simulatedHost);
      const state = new BoardStateFiles(board.stateDir);
      const lines = BoardLines.claim(board, sim, { levels: "safe" });
      const link = new ControlLink(
        board.id,
        readLinkKeys(t, board.id),
        state.nextEpoch(),
        wrap(board.id, transportFor(t, board.id)),
      );
      const logFile = path.join(bed.dir, `${board.id}.log`);
      const daemon = new BoardDaemon({
        testbed: t,
        boardId: board.id,
        link,
        hostLink: new HostLinkPort(board.hostLink.device, board.hostLink.baud),
        operatorKey,
        signingKey: readPrivateKey(board.keys.signingPath),
        state,
        log: pino(
          { level: "info", base: { board: board.id } },
          { write: (line: string) => appendFileSync(logFile, line) },
        ),
        alerts: { webhook: async () => {}, exec: () => {} },
        now: () => Date.now() + (clockOffsetsMs[board.id] ?? 0),
        ...(options.joinDeadlineMs === undefined ? {} : { joinDeadlineMs: options.joinDeadlineMs }),
      });
      daemons.push(daemon);
      claimed.push(lines);
    }
    started.push(...daemons);
    await Promise.all(daemons.map((d, i) => d.start(claimed[i] as BoardLines)));
    return {
      bed,
      sim,
      daemons,
      hosts,
      resetsActive,
      cleanAtRelease,
      async close() {
        await Promise.all(daemons.map((d) => d.stop()));
        await Promise.all(hosts.map((h) => h.stop()));
        await bed.close();
      },
    };
  } catch (error) {
    // Nothing is left running when the rig cannot start.
    await Promise.all(started.map((d) => d.stop()));
    await Promise.all(hostsStarted.map((h) => h.stop()));
    await bed.close();
    throw error;
  }
}

async function until(condition: () => boolean, timeoutMs: number, what: string): Promise<number> {
  const started = performance.now();
  while (!condition()) {
    if (performance.now() - started > timeoutMs)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return performance.now() - started;
}

export function boardDaemonSuite(part: "udp" | "serial"): void {
  if (part === "serial") {
    describe.skipIf(noSocat !== undefined)(
      "smw board run refuses bad input before touching a line",
      () => {
        let bed: Testbed6;
        beforeAll(async () => {
          bed = await makeTestbed6("udp", 17600);
        }, 30_000);
        afterAll(async () => {
          await bed?.close();
        });

        it("names a board that is not in the testbed", () => {
          const result = smw("board", "run", "--testbed", bed.file, "--board", "b9");
          expect(result.code).toBe(2);
          expect(result.stderr).toContain('there is no board "b9"');
        });

        it("refuses a schedule the planner finds infeasible, with the planner's report", () => {
          // T_d = 11.4 s is below T_p = 11.5 s, but not below T_p − 2·procMax = 11.1 s: the
          // planner once called this feasible, and every board's timely core then threw.
          const file = path.join(bed.dir, "tight.yaml");
          const text = readFileSync(bed.file, "utf8");
          expect(text).toContain("tD: 11s");
          writeFileSync(file, text.replace("tD: 11s", "tD: 11400ms"));
          const result = smw("board", "run", "--testbed", file, "--board", "b1");
          expect(result.code).toBe(2);
          expect(result.stderr).toContain("the boards cannot keep this testbed's schedule");
          expect(result.stderr).toMatch(
            /FAILS\s+T_d < T_p − 2·procMax\s+T_d = 11\.4s < T_p − 2·procMax = 11\.5s − 2·200ms = 11\.1s/,
          );
          const planned = smw("plan", file);
          expect(planned.stdout).toContain("INFEASIBLE");
        });

        it("names a missing or group-readable key file", () => {
          const key = path.join(bed.dir, "keys", "b2", "board.key");
          chmodSync(key, 0o644);
          const loose = smw("board", "run", "--testbed", bed.file, "--board", "b2");
          expect(loose.code).toBe(2);
          expect(loose.stderr).toContain("readable by group or others (mode 0644)");
          chmodSync(key, 0o600);
          renameSync(
            path.join(bed.dir, "keys", "b2", "link", "b5.key"),
            path.join(bed.dir, "b5.key.away"),
          );
          const missing = smw("board", "run", "--testbed", bed.file, "--board", "b2");
          expect(missing.code).toBe(2);
          expect(missing.stderr).toContain('link key shared with board "b5"');
          renameSync(
            path.join(bed.dir, "b5.key.away"),
            path.join(bed.dir, "keys", "b2", "link", "b5.key"),
          );
        });

        it("says when its control port is in use", async () => {
          const holder = createSocket("udp4");
          await new Promise<void>((resolve) => holder.bind(17603, "127.0.0.1", resolve));
          const result = smw("board", "run", "--testbed", bed.file, "--board", "b3");
          holder.close();
          expect(result.code).toBe(2);
          expect(result.stderr).toContain(
            "cannot listen on udp 127.0.0.1:17603: the port is in use",
          );
        });
      },
    );

    describe.skipIf(noSocat !== undefined)("clock, timer and schedule faults over UDP", () => {
      it("a DONE that never arrives makes the group miss its deadline, and every board fail safe", async () => {
        // b3's DONE frames are lost on the way out; everything else gets through.
        const dropDone = (board: string, inner: ControlTransport): ControlTransport =>
          board !== "b3" ? inner : filteredTransport(inner, (_, line) => !line.includes(" DONE "));
        const rig = await startRig("udp", 18100, {}, dropDone);
        try {
          await until(
            () => rig.daemons.every((d) => d.failsafeState !== undefined),
            20_000,
            "fail-safe everywhere",
          );
          const reasons = rig.daemons.map((d) => d.failsafeState?.reason ?? "");
          expect(
            reasons.every((r) =>
              /group [34] of period 0 was not done by its deadline \((b3|b4) missing\)/.test(r),
            ),
            reasons.join(" | "),
          ).toBe(true);
          for (const board of rig.bed.testbed.boards)
            expect(rig.sim.isHigh(`sim-${board.id}`, 0)).toBe(false);
        } finally {
          await rig.close();
        }
      }, 40_000);

      it("a board restarted with its fail-safe latched proposes nothing: the others fail safe at their join deadline, every host held", async () => {
        const rig = await startRig("udp", 18200, {}, (_, t) => t, {
          latched: ["b1"],
          joinDeadlineMs: 3_000,
        });
        try {
          await until(
            () => rig.daemons.every((d) => d.failsafeState !== undefined),
            10_000,
            "fail-safe everywhere",
          );
          expect(rig.daemons[0]?.failsafeState?.reason).toBe("drill");
          for (const daemon of rig.daemons.slice(1)) {
            expect(daemon.failsafeState?.reason).toBe(
              "joining did not complete within 3000 ms: b1 in fail-safe",
            );
            expect(daemon.status().schedule).toBeUndefined();
          }
          for (const board of rig.bed.testbed.boards)
            expect(rig.sim.isHigh(`sim-${board.id}`, 0)).toBe(false);
          // Not one host ran meanwhile: a board that hears a peer in fail-safe keeps its own held.
          expect(rig.cleanAtRelease.size).toBe(0);
          const status = await smwAsync("status", "--testbed", rig.bed.file, "--json");
          expect(status.code).toBe(1);
        } finally {
          await rig.close();
        }
      }, 40_000);

      it("a board whose clock is off by more than the bound takes every board to fail-safe once they have joined", async () => {
        const rig = await startRig("udp", 17800, { b4: 80 });
        try {
          await until(
            () => rig.daemons.every((d) => d.failsafeState !== undefined),
            15_000,
            "fail-safe everywhere",
          );
          const reasons = rig.daemons.map((d) => d.failsafeState?.reason ?? "");
          expect(
            reasons.every((r) =>
              /the clock of board b\d is [\d.]+ ms (ahead of|behind) ours, over the bound of 10 ms/.test(
                r,
              ),
            ),
            reasons.join(" | "),
          ).toBe(true);
          for (const board of rig.bed.testbed.boards)
            expect(rig.sim.isHigh(`sim-${board.id}`, 0)).toBe(false);
        } finally {
          await rig.close();
        }
      }, 40_000);

      it("timers firing later than the promised bound take every board to fail-safe", async () => {
        const rig = await startRig("udp", 17900);
        try {
          await until(
            () => rig.daemons.every((d) => d.currentPhase === "running"),
            15_000,
            "every board running",
          );
          // Hold the event loop for 400 ms: every board has a timer due in its first
          // 100 ms (a heartbeat period), which then fires over 200 ms late. Held from the loop's
          // check phase (setImmediate), so that the timers phase comes next, before the poll
          // phase delivers the heartbeats that waited meanwhile: those arrive late too, and
          // from another phase a board could blame its peers' clocks first.
          await new Promise<void>((resolve) =>
            setImmediate(() => {
              const blockedUntil = performance.now() + 400;
              while (performance.now() < blockedUntil) {
                // busy
              }
              resolve();
            }),
          );
          await until(
            () => rig.daemons.every((d) => d.failsafeState !== undefined),
            5_000,
            "fail-safe everywhere",
          );
          const reasons = rig.daemons.map((d) => d.failsafeState?.reason ?? "");
          expect(
            reasons.some((r) => /a timer fired [\d.]+ ms late, over the promised 200 ms/.test(r)),
            reasons.join(" | "),
          ).toBe(true);
        } finally {
          await rig.close();
        }
      }, 40_000);
    });
  }

  for (const [transport, basePort] of (
    [
      ["udp", 17400],
      ["serial", 17500],
    ] as const
  ).filter(([t]) => t === part)) {
    describe.skipIf(noSocat !== undefined)(
      `six board daemons over ${transport === "udp" ? "UDP on loopback" : "socat PTY pairs"}`,
      () => {
        let rig: Rig;
        beforeAll(async () => {
          // b2 was restarted in the middle of a restore: half its OS image is rewritten; b3 after
          // it had certified its host's key outside a rejuvenation.
          rig = await startRig(transport, basePort, {}, (_, t) => t, {
            halfRestored: ["b2"],
            certifiedBefore: ["b3"],
          });
        }, 30_000);
        afterAll(async () => {
          await rig?.close();
        });

        it("agree on a schedule and complete two periods in order, never more than k hosts in reset", async () => {
          await until(
            () =>
              rig.daemons.every(
                (d) =>
                  (d.status().period ?? -1) >= 1 &&
                  d.status().group === undefined &&
                  d.status().lastSteps.length > 0 &&
                  d.currentPhase === "running",
              ),
            40_000,
            "two periods",
          );
          await until(
            () => rig.hosts.every((h) => h.boots >= 2),
            10_000,
            "every host rejuvenated twice",
          );
          for (const daemon of rig.daemons) {
            expect(daemon.failsafeState, daemon.status().board).toBeUndefined();
            expect(daemon.status().lastSteps.map((s) => s.step)).toEqual([
              "shutdown",
              "checkOS",
              "restoreOS",
              "checkSM",
              "restoreSM",
              "boot",
              "transfer",
            ]);
          }
          // No host ran before its images verified: b2's was restored first.
          expect([...rig.cleanAtRelease.values()]).toEqual(Array(6).fill(true));
          expect(rig.cleanAtRelease.size).toBe(6);
          // Every host held in reset from the start until its images verified (the start-up
          // check), then never more than k = 1 at a time.
          const released = rig.resetsActive.indexOf(0);
          expect(Math.max(...rig.resetsActive.slice(0, released))).toBe(6);
          expect(Math.max(...rig.resetsActive.slice(released))).toBe(1);
          expect(rig.hosts.every((h) => h.certificates >= 2)).toBe(true);
          // Released while no board ran a schedule, every host's first key said "cold start",
          // b3's too: a release after the start-up check is a clean boot, certified at once.
          expect(rig.hosts.map((h) => h.coldStarts)).toEqual(Array(6).fill(1));
          // Each with every peer host's keys of the time before revoked (none had any: the floor
          // is the board's clock when it began joining), never the peer's first key.
          for (const [i, host] of rig.hosts.entries()) {
            const revoked = host.coldRevocations[0] ?? new Map<string, number>();
            expect([...revoked.keys()].sort()).toEqual(
              ["h1", "h2", "h3", "h4", "h5", "h6"].filter((_, j) => j !== i),
            );
            for (const [j, peer] of rig.hosts.entries())
              if (j !== i)
                expect(revoked.get(`h${j + 1}`)).toBeLessThanOrEqual(peer.epochs[0] as number);
            // And every later certificate (the rejuvenations) with them too: a replica restarted
            // later in the era takes no key of the era before either.
            for (const later of host.revocationsAtCert.slice(1))
              for (const [peer, before] of revoked)
                expect(later.get(peer)).toBeGreaterThanOrEqual(before);
          }
          // Hosts were reset in group order: h1 first, h6 last, in each period.
          const resets = rig.sim.history.filter((e) => e.role === "reset");
          let held = 6;
          const firstUp = resets.findIndex((e) => {
            held += e.level === "active" ? 0 : -1;
            return held === 0;
          });
          const order = resets
            .slice(firstUp + 1)
            .filter((e) => e.level === "active")
            .map((e) => e.chip);
          expect(order.slice(0, 12)).toEqual(
            [...["b1", "b2", "b3", "b4", "b5", "b6"], ...["b1", "b2", "b3", "b4", "b5", "b6"]].map(
              (b) => `sim-${b}`,
            ),
          );
        }, 60_000);

        it("a host that will not boot takes every board to fail-safe, every host held in reset", async () => {
          const victim = rig.hosts[2] as SimulatedHost;
          victim.willBoot = false;
          const waitedMs = await until(
            () => rig.daemons.every((d) => d.failsafeState !== undefined),
            30_000,
            "fail-safe everywhere",
          );
          expect(waitedMs).toBeGreaterThan(0);
          for (const daemon of rig.daemons) {
            expect(daemon.failsafeState?.reason).toMatch(
              /step boot of period \d+ (is over its budget|took \d+ ms, over its budget|failed: the host did not report booted)/,
            );
            expect(daemon.failsafeState?.origin).toBe("b3");
          }
          for (const board of rig.bed.testbed.boards) {
            expect(
              rig.sim.isHigh(`sim-${board.id}`, 0),
              `${board.id} holds its host in reset`,
            ).toBe(false);
            expect(rig.sim.isHigh(`sim-${board.id}`, 2), `${board.id} raises its alarm`).toBe(true);
          }
          // Latched on disk: a restarted daemon comes back in fail-safe.
          const state = new BoardStateFiles(
            (rig.bed.testbed.boards[0] as { stateDir: string }).stateDir,
          );
          expect(state.readFailsafe()?.origin).toBe("b3");
          // The fail-safe reached every board within the link bound of its origin.
          const since = rig.daemons.map((d) => d.failsafeState?.sinceMs as number);
          const { deliveryBoundMs } = rig.bed.testbed.controlNetwork;
          expect(Math.max(...since) - Math.min(...since)).toBeLessThanOrEqual(
            deliveryBoundMs + 200 + 50,
          );
        }, 60_000);

        it("smw status shows every board in fail-safe; smw board clear-failsafe, signed by the operator, brings them back", async () => {
          const status = await smwAsync("status", "--testbed", rig.bed.file, "--json");
          expect(status.code).toBe(1);
          const rows = JSON.parse(status.stdout) as Array<{
            board: string;
            status: { phase: string; failsafe?: { origin: string } };
          }>;
          expect(rows.map((r) => [r.board, r.status.phase, r.status.failsafe?.origin])).toEqual(
            ["b1", "b2", "b3", "b4", "b5", "b6"].map((b) => [b, "failsafe", "b3"]),
          );
          // The same over the network, each request signed with the operator key.
          const operatorKey = path.join(rig.bed.dir, "keys", "operator.key");
          const remote = await smwAsync(
            "status",
            "--testbed",
            rig.bed.file,
            "--key",
            operatorKey,
            "--json",
          );
          expect(remote.code).toBe(1);
          expect(
            (JSON.parse(remote.stdout) as Array<{ status: { phase: string } }>).map(
              (r) => r.status.phase,
            ),
          ).toEqual(Array(6).fill("failsafe"));
          const wrongKey = await smwAsync(
            "status",
            "--testbed",
            rig.bed.file,
            "--key",
            path.join(rig.bed.dir, "keys", "b2", "board.key"),
            "--json",
          );
          expect(
            (JSON.parse(wrongKey.stdout) as Array<{ error?: string }>).every(
              (r) => r.error === "the request is not signed by the operator key",
            ),
          ).toBe(true);
          // Every board answered, none with its status: said as such, exit 2.
          expect(wrongKey.code).toBe(2);
          expect(wrongKey.stderr).toMatch(/gave its status: 6 answered with a refusal/);
          const table = await smwAsync("status", "--testbed", rig.bed.file);
          expect(table.stdout).toMatch(/^BOARD\s+HOST\s+STATE/);
          expect(table.stdout).toContain("failsafe");

          // A key that is not the operator's is refused.
          const intruder = path.join(rig.bed.dir, "keys", "b1", "board.key");
          const refused = await smwAsync(
            "board",
            "clear-failsafe",
            "--testbed",
            rig.bed.file,
            "--board",
            "b1",
            "--key",
            intruder,
          );
          expect(refused.stdout).toContain("not signed by the operator key");
          expect(refused.code).toBe(1);
          expect(rig.daemons[0]?.failsafeState).toBeDefined();

          (rig.hosts[2] as SimulatedHost).willBoot = true;
          // What each board certified last, as it keeps it (a certificate that reached a host
          // already held in reset never showed there).
          const lastEpochs = rig.bed.testbed.boards.map((b) =>
            new BoardStateFiles(b.stateDir).readCertificateEpoch(),
          );
          const coldBefore = rig.hosts.map((h) => h.coldStarts);
          const operator = path.join(rig.bed.dir, "keys", "operator.key");
          for (const board of ["b1", "b2", "b3", "b4", "b5", "b6"]) {
            const cleared = await smwAsync(
              "board",
              "clear-failsafe",
              "--testbed",
              rig.bed.file,
              "--board",
              board,
              "--key",
              operator,
            );
            expect(cleared.stdout).toContain("fail-safe cleared");
            expect(cleared.code).toBe(0);
          }
          await until(
            () => rig.daemons.every((d) => d.currentPhase === "running"),
            20_000,
            "every board running again",
          );
          const boots = rig.hosts.map((h) => h.boots);
          await until(
            () => {
              // A board that fails safe again holds its host for good: say why at once.
              const failed = rig.daemons.find((d) => d.failsafeState !== undefined);
              if (failed !== undefined)
                throw new Error(
                  `failed safe again after the clear: ${failed.failsafeState?.reason} (from ${failed.failsafeState?.origin})`,
                );
              return rig.hosts.every((h, i) => h.boots > (boots[i] as number));
            },
            30_000,
            "another period",
          );
          for (const daemon of rig.daemons) expect(daemon.failsafeState).toBeUndefined();
          // Cleared, every board released its host cold, revoking each peer host's keys of the
          // era before (every epoch up to the last its board had certified), and not the key
          // that board certified for the new era.
          for (const [i, host] of rig.hosts.entries()) {
            expect(host.coldStarts, `h${i + 1}`).toBe((coldBefore[i] as number) + 1);
            const revoked = host.coldRevocations.at(-1) ?? new Map();
            for (const [j, peer] of rig.hosts.entries()) {
              if (j === i) continue;
              const before = revoked.get(`h${j + 1}`);
              // (A revocation still standing from the rejuvenation the fail-safe cut short may
              // reach higher: the two are merged.)
              expect(before, `h${i + 1} revokes h${j + 1}`).toBeGreaterThan(
                lastEpochs[j] as number,
              );
              const newEra = peer.epochs.find((e) => e > (lastEpochs[j] as number));
              expect(newEra, `h${j + 1}'s key of the new era`).toBeGreaterThanOrEqual(
                before as number,
              );
            }
          }

          // A recorded clear-failsafe request, replayed, is refused: a clear acts once.
          const b1 = rig.bed.testbed.boards[0] as (typeof rig.bed.testbed.boards)[number];
          const issuedAtMs = Date.now();
          const request = signedClear("b1", issuedAtMs, operator);
          const socket = controlSocketPath(b1.stateDir);
          expect(await operatorSend(socket, request)).toMatchObject({ ok: true });
          expect(await operatorSend(socket, request)).toEqual({
            ok: false,
            message: `the request is not newer than the last one acted on (issued at ${issuedAtMs}, last ${issuedAtMs}): a replay, or sign a new one`,
          });
          // What was acted on last survives a restart of the daemon.
          expect(new BoardStateFiles(b1.stateDir).readLastOperatorRequest()).toBe(issuedAtMs);
        }, 90_000);

        it.skipIf(transport !== "udp")(
          "a tampered manifest, forged frames and a dead board each take every board to fail-safe within the bound",
          async () => {
            const operator = path.join(rig.bed.dir, "keys", "operator.key");
            const clearAll = async () => {
              for (const board of ["b1", "b2", "b3", "b4", "b5", "b6"]) {
                const cleared = await smwAsync(
                  "board",
                  "clear-failsafe",
                  "--testbed",
                  rig.bed.file,
                  "--board",
                  board,
                  "--key",
                  operator,
                );
                expect(cleared.code, cleared.stdout + cleared.stderr).toBe(0);
              }
              await until(
                () => rig.daemons.every((d) => d.currentPhase === "running"),
                20_000,
                "every board running again",
              );
            };
            const allInFailsafe = () => rig.daemons.every((d) => d.failsafeState !== undefined);

            // 1. The manifest of the golden OS image is altered: the next check refuses it.
            const manifestPath = path.join(rig.bed.dir, "golden", "os.json");
            const original = readFileSync(manifestPath, "utf8");
            writeFileSync(manifestPath, original.replace('"image": "os"', '"image": "0s"'));
            await until(allInFailsafe, 20_000, "fail-safe after the tampered manifest");
            expect(rig.daemons[0]?.failsafeState?.reason).toMatch(
              /step checkOS of period \d+ failed: .*signature does not match/,
            );
            writeFileSync(manifestPath, original);
            await clearAll();

            // 2. Forged frames claiming to be from b6 reach b1.
            const raw = createSocket("udp4");
            const forgedAt = performance.now();
            for (let i = 0; i < 5; i++) {
              raw.send(
                encodeControlFrame(
                  {
                    from: "b6",
                    to: "b1",
                    epoch: 999,
                    seq: i + 1,
                    type: "HB",
                    body: { period: 0, schedule: 0, joined: true },
                  },
                  Buffer.alloc(32, 7),
                ),
                basePort + 1,
                "127.0.0.1",
              );
            }
            const forgedMs = await until(allInFailsafe, 5_000, "fail-safe after forged frames");
            raw.close();
            expect(rig.daemons[0]?.failsafeState?.reason).toBe(
              "5 frames claiming to be from b6 failed authentication within 60000 ms",
            );
            expect(forgedMs + (performance.now() - forgedAt - forgedMs)).toBeLessThan(1_000);
            expect(rig.daemons[0]?.status().link.forged).toBeGreaterThanOrEqual(5);
            await clearAll();

            // 3. Board b6's daemon dies: its peers notice the silence.
            const victim = rig.daemons[5] as BoardDaemon;
            await victim.stop();
            const diedAt = performance.now();
            const others = rig.daemons.slice(0, 5);
            await until(
              () => others.every((d) => d.failsafeState !== undefined),
              5_000,
              "fail-safe after a board died",
            );
            const tookMs = performance.now() - diedAt;
            for (const daemon of others)
              expect(daemon.failsafeState?.reason).toMatch(
                /^board b6 silent for \d+ ms \(bound 600 ms\)$/,
              );
            // Heartbeat period + silence bound + delivery, with room for one busy event loop.
            expect(tookMs).toBeLessThanOrEqual(
              100 + 600 + rig.bed.testbed.controlNetwork.deliveryBoundMs + 300,
            );
          },
          120_000,
        );
      },
    );
  }
}
