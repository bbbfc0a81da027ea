/**
 * The rig: a whole simulated testbed on this machine, brought up from its
 * testbed file. Boards are processes running the real board daemon; hosts are
 * process trees booted from their own disks; every serial link is a socat PTY
 * pair; the payload network is TCP on loopback. `down()` (also on Ctrl-C, on an
 * uncaught error, or at the next start after the rig was killed) leaves no
 * process and no PTY behind.
 */

import { execFile } from "node:child_process";
import {
  createWriteStream,
  mkdirSync,
  readFileSync,
  type WriteStream,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { clientIdsWithKeys, connectClient } from "@smw/host-agent";
import {
  defaultJoinLeadMs,
  formatProblem,
  loadTestbedFile,
  type RejuvenationOverrides,
  type Testbed,
} from "@smw/wiring";
import { corruptBytes, corruptStoredState, plantByzantineCode } from "../faults/disk-faults.js";
import { AlertReceiver } from "./alert-receiver.js";
import { BoardProcess } from "./board-process.js";
import type { FaultRequest } from "./fault-requests.js";
import { FaultSocket } from "./fault-socket.js";
import {
  type HostNetwork,
  loopbackNetwork,
  NamespaceNetwork,
  namespaceProblems,
} from "./host-network.js";
import { ProcessHost } from "./process-host.js";
import { ProcessRegistry } from "./process-registry.js";
import { PtyLinks } from "./pty-links.js";
import { RigEventStream } from "./rig-events.js";
import { prepareRun, ptyPairsOf, RigSetupError, rigProblems } from "./rig-setup.js";
import { rigRunDir, writeRunTestbed } from "./run-folder.js";

const run = promisify(execFile);

/** The fault socket's name in the run folder. */
export const FAULT_SOCKET = "rig.sock";

export const SMW_BIN = fileURLToPath(new URL("../../../bin/smw.js", import.meta.url));

export interface RigOptions {
  /** The testbed to bring up; the rig runs a copy of it in its run folder. */
  testbedFile: string;
  /** The folder of run folders (default: SMW_RUNS, else runs/ here). */
  runsDir?: string;
  /** Rejuvenation figures that replace the testbed's in the copy that runs. */
  overrides?: RejuvenationOverrides;
  /** Comment lines put at the top of that copy (why its figures differ). */
  note?: readonly string[];
  events?: RigEventStream;
  /** Size of the OS image on every disk. */
  osImageSizeBytes?: number;
  /**
   * How far ahead of the boards' start the first period lies (default `rigJoinLeadMs`): the
   * hosts' first boot is not a rejuvenation.
   */
  joinLeadMs?: number;
  /** One network namespace per host (root only) instead of the shared loopback. */
  netns?: boolean;
  /**
   * Called on the first Ctrl-C (or SIGTERM) instead of taking the rig down and
   * exiting: the caller ends its run and reports. A second signal takes it down.
   */
  onSignal?: () => void;
}

/**
 * Below this, period 0 of a rig on a two-core machine may begin before every host's first boot:
 * six hosts cold-starting at once while the boards start, and a host its board releases only
 * after the boards agreed on a schedule is released as recovering, not cold (a cold view needs
 * every replica it counts cold). 12 s left about 9 s to spare on the machine it was measured on.
 */
export const RIG_JOIN_LEAD_FLOOR_MS = 12_000;

/**
 * The rig's join lead, so that the first period starts once the service is up: the floor above,
 * or, for longer budgets, the boards' own lead (`defaultJoinLeadMs`: the first boot of every host
 * at once, from the testbed's budgets).
 */
export function rigJoinLeadMs(t: Testbed): number {
  return Math.max(
    RIG_JOIN_LEAD_FLOOR_MS,
    defaultJoinLeadMs({
      silenceBoundMs: t.controlNetwork.silenceBoundMs,
      keyLeaseMs: t.rejuvenation.keyLeaseMs,
      budgets: t.rejuvenation.budgets,
    }),
  );
}

export class Rig {
  readonly events: RigEventStream;
  readonly hosts = new Map<string, ProcessHost>();
  readonly boards = new Map<string, BoardProcess>();
  readonly alerts: AlertReceiver;
  private readonly links: PtyLinks;
  private consoleLog: WriteStream | undefined;
  private network: HostNetwork = loopbackNetwork;
  private faults: FaultSocket | undefined;
  private closed = false;
  private onSignal: (() => void) | undefined;
  private readonly signalHandler = () => {
    const first = this.onSignal;
    this.onSignal = undefined;
    if (first !== undefined) first();
    else void this.down().then(() => process.exit(130));
  };

  private constructor(
    readonly testbed: Testbed,
    readonly root: string,
    private readonly registry: ProcessRegistry,
    events: RigEventStream,
  ) {
    this.events = events;
    this.links = new PtyLinks(registry);
    this.alerts = new AlertReceiver(events);
  }

  /** Checks, prepares and starts everything; on any failure stops what it started and throws. */
  static async up(options: RigOptions): Promise<Rig> {
    const template = loadTestbedFile(options.testbedFile);
    if (!template.ok) throw new RigSetupError(template.problems.map(formatProblem).join("\n"));
    const root = rigRunDir(template.testbed.name, options.runsDir);
    const pidFile = path.join(root, "rig.pids");
    mkdirSync(root, { recursive: true });
    const netnsFile = path.join(root, "rig.netns");
    // What a killed rig of this run folder left behind goes first: it may run from the copy.
    const reaped = ProcessRegistry.reap(pidFile, [root]) + NamespaceNetwork.reap(netnsFile);
    const file = writeRunTestbed(options.testbedFile, root, options.overrides, options.note);
    const loaded = loadTestbedFile(file);
    if (!loaded.ok) throw new RigSetupError(loaded.problems.map(formatProblem).join("\n"));
    const testbed = loaded.testbed;
    const problems = options.netns
      ? [...(await rigProblems(testbed, { hostPorts: false })), ...namespaceProblems(testbed)]
      : await rigProblems(testbed);
    if (problems.length > 0) throw new RigSetupError(problems.join("\n"));
    const events = options.events ?? new RigEventStream();
    if (reaped > 0)
      events.emit({
        kind: "rig",
        detail: `stopped ${reaped} processes an earlier rig left running`,
      });
    const rig = new Rig(testbed, root, new ProcessRegistry(pidFile), events);
    try {
      await rig.start(options);
    } catch (error) {
      await rig.down();
      throw error;
    }
    return rig;
  }

  private async start(options: RigOptions): Promise<void> {
    this.onSignal = options.onSignal;
    process.on("SIGINT", this.signalHandler);
    process.on("SIGTERM", this.signalHandler);
    const t = this.testbed;
    this.events.emit({ kind: "rig", detail: `preparing ${t.name} in ${this.root}` });
    prepareRun(
      t,
      options.osImageSizeBytes === undefined ? {} : { osImageSizeBytes: options.osImageSizeBytes },
    );
    this.consoleLog = createWriteStream(path.join(this.root, "console.log"));
    this.faults = new FaultSocket(path.join(this.root, FAULT_SOCKET), t, (request) =>
      this.inject(request),
    );
    await this.faults.start();
    if (options.netns) this.network = NamespaceNetwork.up(t, path.join(this.root, "rig.netns"));
    const console = (line: string) => this.consoleLog?.write(`${line}\n`);
    for (const pair of ptyPairsOf(t)) await this.links.add(pair.a, pair.b, pair.what);
    await this.alerts.start();
    for (const board of t.boards) {
      const host = t.hosts.find((h) => h.id === board.guards);
      if (host === undefined) continue;
      const machine = new ProcessHost({
        testbed: t,
        host,
        board,
        smw: [process.execPath, SMW_BIN],
        network: this.network,
        registry: this.registry,
        events: this.events,
        console,
      });
      this.hosts.set(host.id, machine);
      this.boards.set(
        board.id,
        new BoardProcess({
          boardId: board.id,
          testbedFile: t.file,
          smwBin: SMW_BIN,
          webhookUrl: this.alerts.url,
          joinLeadMs: options.joinLeadMs ?? rigJoinLeadMs(t),
          registry: this.registry,
          events: this.events,
          onLine: (role, level) => machine.onLine(role, level),
          console,
        }),
      );
    }
    this.events.emit({
      kind: "rig",
      detail: `starting ${t.boards.length} boards and ${t.hosts.length} hosts (${this.links.names().length} PTY pairs, control links over ${t.controlNetwork.transport}, ${this.network.describe()})`,
    });
    await Promise.all([...this.boards.values()].map((b) => b.start()));
  }

  /** Waits until every board has joined the schedule and a client's write is answered. */
  async waitHealthy(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const failsafe = () =>
      this.events.all.find((e) => e.kind === "board" && e.msg === "FAIL-SAFE") !== undefined;
    // Which board, and why: "before the service was up" alone left a start-up that failed under
    // load undiagnosable.
    const failedSafe = () => {
      const first = this.events.all.find((e) => e.kind === "board" && e.msg === "FAIL-SAFE");
      const why =
        first?.kind === "board"
          ? ` (${first.board}: ${String(first.fields.reason ?? "no reason given")}${first.fields.origin === undefined ? "" : `, from ${String(first.fields.origin)}`})`
          : "";
      return new Error(`a board entered the fail-safe state before the service was up${why}`);
    };
    const joined = new Set(
      this.events.all
        .filter((e) => e.kind === "board" && e.msg.startsWith("joined"))
        .map((e) => (e.kind === "board" ? e.board : "")),
    );
    while (joined.size < this.boards.size) {
      if (failsafe()) throw failedSafe();
      const event = await this.events.waitFor(
        (e) => e.kind === "board" && (e.msg.startsWith("joined") || e.msg === "FAIL-SAFE"),
        Math.max(0, deadline - Date.now()),
      );
      if (event === undefined)
        throw new Error(`boards did not agree on a schedule within ${timeoutMs} ms`);
      if (event.kind === "board") joined.add(event.board);
    }
    const clientId = clientIdsWithKeys(this.testbed)[0];
    if (clientId === undefined) throw new Error(`${this.testbed.file}: no client keys`);
    const client = connectClient(this.testbed, { clientId });
    try {
      while (Date.now() < deadline) {
        if (failsafe()) throw failedSafe();
        try {
          await client.call({ op: "put", key: "rig/health", value: "ok" }, 2_000);
          this.events.emit({ kind: "rig", detail: "the service answers: healthy" });
          return;
        } catch {
          // Not yet.
        }
      }
      throw new Error(`the service did not answer within ${timeoutMs} ms`);
    } finally {
      await client.close();
    }
  }

  // --- faults -------------------------------------------------------------------

  private hostOf(id: string): ProcessHost {
    const host = this.hosts.get(id);
    if (host === undefined)
      throw new RangeError(`no host "${id}" (hosts: ${[...this.hosts.keys()].join(", ")})`);
    return host;
  }

  private boardOf(id: string): BoardProcess {
    const board = this.boards.get(id);
    if (board === undefined)
      throw new RangeError(`no board "${id}" (boards: ${[...this.boards.keys()].join(", ")})`);
    return board;
  }

  private boardGuarding(hostId: string) {
    const board = this.testbed.boards.find((b) => b.guards === hostId);
    if (board === undefined) throw new RangeError(`no board guards host "${hostId}"`);
    return board;
  }

  /** An intruder plants Byzantine SM code on the host's disk and reboots it into that code. */
  compromise(hostId: string, behaviours: readonly string[]): void {
    const host = this.hostOf(hostId);
    plantByzantineCode(this.boardGuarding(hostId).images.sm.live, behaviours);
    this.events.emit({
      kind: "fault",
      host: hostId,
      detail: `SM code tampered into a Byzantine replica (${behaviours.join(", ")})`,
    });
    host.rebootFromDisk();
  }

  corruptOsImage(hostId: string): void {
    const live = this.boardGuarding(hostId).images.os.live;
    corruptBytes(live, 4096 * 3 + 17, 64);
    this.events.emit({ kind: "fault", host: hostId, detail: "64 bytes of the OS image corrupted" });
  }

  /**
   * Corrupts the host's stored checkpoint now; false when it has none yet. A
   * running replica overwrites it at its next checkpoint: to see what a replica
   * makes of a corrupted state, corrupt it while the host is down
   * (`corruptStateAtNextBoot`).
   */
  corruptState(hostId: string, when = ""): boolean {
    this.hostOf(hostId);
    const stateDir = this.testbed.hosts.find((h) => h.id === hostId)?.stateDir as string;
    const files = corruptStoredState(stateDir);
    if (files.length > 0)
      this.events.emit({
        kind: "fault",
        host: hostId,
        detail: `stored state corrupted${when} (${describeFiles(files)})`,
      });
    return files.length > 0;
  }

  /** Corrupts the host's stored checkpoint while it is down, just before it next boots: its replica starts from it. */
  corruptStateAtNextBoot(hostId: string): void {
    this.hostOf(hostId).beforeNextBoot = () => {
      if (!this.corruptState(hostId, " while the host was down"))
        this.events.emit({
          kind: "rig",
          detail: `${hostId} had no stored checkpoint when it booted: its state was not corrupted`,
        });
    };
    this.events.emit({
      kind: "rig",
      detail: `${hostId}'s stored state will be corrupted while it is down, before its next boot`,
    });
  }

  bootHang(hostId: string): void {
    this.hostOf(hostId).bootHang = true;
    this.events.emit({ kind: "fault", host: hostId, detail: "its next boots will hang" });
  }

  slowTransfer(hostId: string, stallMs: number): void {
    this.hostOf(hostId).stallAfterCertificateMs = stallMs;
    this.events.emit({
      kind: "fault",
      host: hostId,
      detail: `its next state transfer stalls ${stallMs} ms`,
    });
  }

  killBoard(boardId: string): void {
    this.boardOf(boardId).crash();
  }

  /** Starts a killed board's daemon again (it comes back in its latched state, if any). */
  async restartBoard(boardId: string): Promise<void> {
    const board = this.boardOf(boardId);
    if (board.alive) throw new RangeError(`board ${boardId} is running: kill it first`);
    this.events.emit({ kind: "fault", board: boardId, detail: "board process restarted" });
    await board.start();
  }

  /**
   * What the operator does after a fail-safe: `smw board clear-failsafe` for `boardId`, signed
   * with the testbed's operator key. Resolves to the board's answer; rejects if it refused.
   */
  async clearFailsafe(boardId: string): Promise<string> {
    this.boardOf(boardId);
    const operatorKey = path.join(
      path.dirname(this.testbed.operatorKeyPath),
      `${path.basename(this.testbed.operatorKeyPath, ".pub")}.key`,
    );
    const { stdout } = await run(process.execPath, [
      SMW_BIN,
      "board",
      "clear-failsafe",
      "--testbed",
      this.testbed.file,
      "--board",
      boardId,
      "--key",
      operatorKey,
    ]);
    const answer = stdout.trim();
    this.events.emit({ kind: "rig", detail: `operator: ${answer}` });
    return answer;
  }

  cutControlLink(a: string, b: string): void {
    const [x, y] = a < b ? [a, b] : [b, a];
    if (!this.links.cut(`control link ${x}-${y}`))
      throw new RangeError(
        `no serial control link between ${a} and ${b} (the rig cuts PTY links only)`,
      );
    this.events.emit({ kind: "fault", board: a, detail: `control link ${x}-${y} cut` });
  }

  /** Every board loses `fraction` of the control frames it sends, from now on. */
  loseFrames(fraction: number): void {
    for (const board of this.boards.values()) board.tell({ type: "lose-frames", fraction });
    this.events.emit({
      kind: "fault",
      board: "*",
      detail: `${Math.round(fraction * 100)}% of control frames lost`,
    });
  }

  skewClock(boardId: string, offsetMs: number): void {
    this.boardOf(boardId).tell({ type: "skew", offsetMs });
    this.events.emit({ kind: "fault", board: boardId, detail: `clock skewed by ${offsetMs} ms` });
  }

  tamperGolden(image: "os" | "sm"): void {
    const golden = this.testbed.boards[0]?.images[image].golden as string;
    corruptBytes(golden, 64 * 1024 + 5, 16);
    this.events.emit({
      kind: "fault",
      detail: `golden ${image} image tampered with (${path.basename(golden)})`,
    });
  }

  /** Alters one chunk digest of a signed manifest, as someone covering a tampered image would. */
  tamperManifest(image: "os" | "sm"): void {
    const manifest = this.testbed.boards[0]?.images[image].manifest as string;
    const text = readFileSync(manifest, "utf8");
    const altered = text.replace(/("[0-9a-f]{64}")/, (digest) =>
      digest.replace(/[0-9a-f]/, (c) => (c === "0" ? "1" : "0")),
    );
    if (altered === text) throw new Error(`${manifest}: no chunk digest found to alter`);
    writeFileSync(manifest, altered);
    this.events.emit({
      kind: "fault",
      detail: `${image} manifest tampered with: a chunk digest altered (${path.basename(manifest)})`,
    });
  }

  /** The write-protect line of a board sticks at its protecting level: a restore cannot write. */
  jamWriteProtect(boardId: string): void {
    this.boardOf(boardId).tell({ type: "stick", role: "write-protect", level: "active" });
    this.events.emit({
      kind: "fault",
      board: boardId,
      detail: "write-protect line stuck: restores cannot write",
    });
  }

  /** Does what a fault request asks; returns what was done, as the fault events say it. */
  async inject(request: FaultRequest): Promise<string> {
    const said: string[] = [];
    const off = this.events.on((e) => {
      if (e.kind === "fault") said.push(`${e.host ?? e.board ?? "testbed"}: ${e.detail}`);
      else if (e.kind === "rig") said.push(e.detail);
    });
    try {
      switch (request.fault) {
        case "byzantine":
          this.compromise(request.host, request.behaviours);
          break;
        case "corrupt-os":
          this.corruptOsImage(request.host);
          break;
        case "corrupt-state":
          if (request.now) {
            if (!this.corruptState(request.host))
              throw new RangeError(`${request.host} has no stored checkpoint yet`);
          } else this.corruptStateAtNextBoot(request.host);
          break;
        case "boot-hang":
          this.bootHang(request.host);
          break;
        case "slow-transfer":
          this.slowTransfer(request.host, request.stallMs);
          break;
        case "kill-board":
          this.killBoard(request.board);
          break;
        case "restart-board":
          await this.restartBoard(request.board);
          break;
        case "cut-link":
          this.cutControlLink(request.board, request.peer);
          break;
        case "skew-clock":
          this.skewClock(request.board, request.offsetMs);
          break;
        case "tamper-golden":
          this.tamperGolden(request.image);
          break;
        case "tamper-manifest":
          this.tamperManifest(request.image);
          break;
        case "jam-write-protect":
          this.jamWriteProtect(request.board);
          break;
      }
    } finally {
      off();
    }
    return said.length > 0 ? said.join("; ") : "nothing to do: it is so already";
  }

  // --- down -----------------------------------------------------------------------

  async down(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    process.off("SIGINT", this.signalHandler);
    process.off("SIGTERM", this.signalHandler);
    await this.faults?.stop();
    for (const board of this.boards.values()) board.stop();
    for (const host of this.hosts.values()) host.stop();
    await this.registry.close();
    this.network.close();
    await this.alerts.stop();
    const log = this.consoleLog;
    this.consoleLog = undefined;
    if (log !== undefined) await new Promise<void>((resolve) => log.end(() => resolve()));
    this.events.emit({ kind: "rig", detail: "rig down: every process stopped" });
  }
}

/** The files a fault touched, in one line: a few named, the rest counted (a state has many segments). */
function describeFiles(files: readonly string[]): string {
  const SHOWN = 3;
  const names = files.slice(0, SHOWN).map((f) => path.basename(f));
  return files.length <= SHOWN
    ? names.join(", ")
    : `${files.length} files: ${names.join(", ")} and ${files.length - SHOWN} more`;
}
