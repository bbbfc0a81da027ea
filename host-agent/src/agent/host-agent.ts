/**
 * The host agent: what runs on a payload host after every boot. It makes a
 * fresh replica key, asks its board to certify it over the host link, starts
 * the replica (a supervised child process, restarted if it crashes; spawned
 * at once, and "booted" is reported once it has loaded its code: the payload is
 * booted when it can start recovering), reports "state recovered" and
 * heartbeats to the board, and on "prepare shutdown" has a primary replica hand
 * off before acknowledging.
 */
import type { ChildProcess } from "node:child_process";
import type { BoardToHost, KeyCertificate, KeyLease, Testbed } from "@smw/wiring";
import { type AgentToReplica, isReplicaToAgent } from "./agent-protocol.js";
import { ConsoleLink } from "./console-link.js";
import { keyFilesIn, newBootKey, type ReplicaKeyFiles, writeCertificate } from "./replica-keys.js";

export interface HostAgentOptions {
  testbed: Testbed;
  hostId: string;
  /**
   * Spawns the replica process, `smw host replica ...` with an IPC channel: it loads its code,
   * says "ready" and waits for "start" (sent once the key is certified).
   */
  spawnReplica: () => ChildProcess;
  /** First start of the whole service: the empty state is the true one, nothing to recover. */
  initial?: boolean;
  /** Certify the key with a local board key instead of asking the board (benches without boards). */
  selfCertify?: (publicKey: string) => KeyCertificate;
  /** With `selfCertify`: leases on the key made the same way, renewed every `everyMs`. */
  selfLease?: { lease: (epoch: number) => KeyLease; everyMs: number };
  heartbeatMs?: number;
  log: (line: string) => void;
}

/** The longest "booted" waits for the replica process to say it has loaded. */
export const READY_WAIT_MS = 5_000;

export class HostAgent {
  private link: ConsoleLink | undefined;
  private child: ChildProcess | undefined;
  /** The child said "ready": it listens for "start". */
  private childReady = false;
  /** The child was told to start (and so holds this boot's key). */
  private childStarted = false;
  /** Certified before the child was ready: started as soon as it is. */
  private startWhenReady: { recovering: boolean; coldStart: boolean } | undefined;
  private readonly keyFiles: ReplicaKeyFiles;
  private publicKey = "";
  private certified = false;
  private stopping = false;
  private restarts = 0;
  private timers: NodeJS.Timeout[] = [];
  private bootedTimer: NodeJS.Timeout | undefined;
  /** "booted" waits for the replica process to have loaded (bounded by `READY_WAIT_MS`). */
  private bootedWhenReady: (() => void) | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private shutdownAckFor: number | undefined;

  constructor(private readonly options: HostAgentOptions) {
    const host = options.testbed.hosts.find((h) => h.id === options.hostId);
    if (host === undefined)
      throw new RangeError(`${options.testbed.file}: no host ${options.hostId}`);
    this.keyFiles = keyFilesIn(host.stateDir);
  }

  /** Running and not stopping: what its watchdog is fed on (with its event loop turning). */
  get healthy(): boolean {
    return !this.stopping;
  }

  get replicaRestarts(): number {
    return this.restarts;
  }

  get replicaPid(): number | undefined {
    return this.child?.pid;
  }

  async start(): Promise<void> {
    const host = this.options.testbed.hosts.find((h) => h.id === this.options.hostId);
    if (host === undefined) return;
    if (this.options.selfCertify) {
      this.askForCertificate();
      const self = this.options.selfLease;
      if (self !== undefined)
        this.timers.push(
          setInterval(() => {
            if (this.certifiedEpoch !== undefined) this.onLease(self.lease(this.certifiedEpoch));
          }, self.everyMs),
        );
      return;
    }
    // The replica process has its testbed before the console opens (which loads serialport and
    // its native binding): it reads its stored state meanwhile, so both are ready sooner.
    this.spawnChild();
    // The console before any key: if it cannot be opened, nothing is written to the state folder.
    this.link = new ConsoleLink(host.console.device, host.console.baud);
    await this.link.open();
    this.link.on((message) => this.onBoard(message));
    this.askForCertificate();
    const heartbeat = setInterval(
      () => this.link?.send({ type: "HB" }),
      this.options.heartbeatMs ?? 1_000,
    );
    this.timers.push(heartbeat);
  }

  /**
   * A new key for a replica that remembers nothing, and "booted", repeated until the board
   * answers with its certificate; the replica starts then. A replica that lost its memory votes
   * again only under a key its peers learned after it lost it (SAFETY.md), so a crashed replica
   * needs a new key as much as a rejuvenated one.
   */
  private askForCertificate(): void {
    this.certified = false;
    this.certifiedEpoch = undefined;
    this.lease = undefined;
    this.publicKey = newBootKey(this.keyFiles).publicKey;
    this.spawnChild();
    if (this.options.selfCertify) {
      this.onCertificate(this.options.selfCertify(this.publicKey));
      return;
    }
    // Fast at first (the board's T_boot is short), then every 2 s.
    let delayMs = 100;
    let first = true;
    const sendBooted = () => {
      if (this.certified || this.stopping) return;
      if (first)
        this.options.log(
          `booted${this.childReady ? " (replica loaded)" : ""}; asked board for a certificate of key ${this.publicKey.slice(-16)}`,
        );
      first = false;
      this.link?.send({ type: "BOOTED", publicKey: this.publicKey });
      this.bootedTimer = setTimeout(sendBooted, delayMs);
      delayMs = Math.min(2_000, delayMs * 2);
    };
    if (this.childReady) {
      sendBooted();
      return;
    }
    // The replica's code loads while the host is still booting; the board's T_transfer then
    // measures the recovery itself. A replica that never loads does not hold "booted" back long.
    const fallback = setTimeout(() => this.releaseBooted(), READY_WAIT_MS);
    this.bootedWhenReady = () => {
      clearTimeout(fallback);
      sendBooted();
    };
  }

  private releaseBooted(): void {
    const send = this.bootedWhenReady;
    this.bootedWhenReady = undefined;
    send?.();
  }

  private onBoard(message: BoardToHost): void {
    if (message.type === "CERT")
      this.onCertificate(message.certificate, message.coldStart === true);
    else if (message.type === "PREPARE_SHUTDOWN") this.onPrepareShutdown(message.period);
    else if (message.type === "REVOKE") this.onRevoke(message.hosts, message.before);
    else if (message.type === "LEASE") this.onLease(message.lease);
  }

  /** The epoch of this boot's certified key, once certified. */
  private certifiedEpoch: number | undefined;
  /** The newest lease on that key: passed on, and given to a replica that starts after it came. */
  private lease: KeyLease | undefined;

  private onLease(lease: KeyLease): void {
    if (lease.host !== this.options.hostId || lease.epoch !== this.certifiedEpoch) return;
    this.lease = lease;
    this.tell({ type: "lease", lease });
  }

  /** Kept for a replica started later, and passed on to the one running. */
  private readonly revoked = new Map<string, number>();

  private onRevoke(hosts: string[], before: number): void {
    for (const host of hosts)
      if (before > (this.revoked.get(host) ?? 0)) this.revoked.set(host, before);
    this.options.log(`board revoked the keys of ${hosts.join(", ")} (before epoch ${before})`);
    this.tell({ type: "revoke", hosts, before });
  }

  private onCertificate(certificate: KeyCertificate, coldStart = false): void {
    if (certificate.host !== this.options.hostId || certificate.publicKey !== this.publicKey) {
      this.options.log("ignored a certificate that is not for this boot's key");
      return;
    }
    writeCertificate(this.keyFiles, certificate);
    const first = !this.certified;
    this.certified = true;
    this.certifiedEpoch = certificate.period;
    this.lease = undefined;
    const self = this.options.selfLease;
    if (self !== undefined) queueMicrotask(() => this.onLease(self.lease(certificate.period)));
    if (this.bootedTimer) clearTimeout(this.bootedTimer);
    this.options.log(
      `key certified by board ${certificate.board} for period ${certificate.period}${coldStart ? " (a cold start)" : ""}`,
    );
    const initial = this.options.initial === true && this.restarts === 0;
    // The board certifies a cold start only for the first boot after it released the host.
    const cold = !initial && coldStart;
    if (first) this.startReplica(!initial && !cold, cold);
    else this.tell({ type: "install-key", ...this.keyFiles });
  }

  /** To the running replica; one not yet started learns revocations in its "start". */
  private tell(message: AgentToReplica): void {
    if (this.childStarted && this.child !== undefined) toReplica(this.child, message);
  }

  private startReplica(recovering: boolean, coldStart: boolean): void {
    if (this.stopping) return;
    this.spawnChild();
    this.startWhenReady = { recovering, coldStart };
    this.sendStart();
  }

  private sendStart(): void {
    const child = this.child;
    const wanted = this.startWhenReady;
    if (child === undefined || wanted === undefined || !this.childReady || !child.connected) return;
    this.startWhenReady = undefined;
    this.childStarted = true;
    toReplica(child, {
      type: "start",
      ...this.keyFiles,
      ...wanted,
      revokedKeys: [...this.revoked].map(([host, before]) => ({ host, before })),
    });
    if (this.lease !== undefined) toReplica(child, { type: "lease", lease: this.lease });
  }

  /** A replica process waiting for its start, unless one is there already. */
  private spawnChild(): void {
    if (this.stopping || this.child !== undefined) return;
    const child = this.options.spawnReplica();
    this.child = child;
    // Unheard, an "error" would end the agent. A process that could not be spawned has no pid
    // and never emits "exit": it is gone as if it had exited.
    child.on("error", (error) => {
      this.options.log(`replica process: ${error.message}`);
      if (child.pid === undefined) this.replicaGone(child, null, null);
    });
    toReplica(child, { type: "testbed", testbed: this.options.testbed });
    this.childReady = false;
    this.childStarted = false;
    child.on("message", (m: unknown) => {
      if (!isReplicaToAgent(m) || child !== this.child) return;
      if (m.type === "ready") {
        this.childReady = true;
        this.releaseBooted();
        this.sendStart();
      } else if (m.type === "recovered") {
        this.options.log(`state recovered at checkpoint ${m.seq}`);
        this.link?.send({ type: "RECOVERED", checkpointSeq: m.seq, digest: m.digest });
      } else if (m.type === "shutdown-prepared" && this.shutdownAckFor !== undefined) {
        this.link?.send({ type: "SHUTDOWN_ACK", period: this.shutdownAckFor });
        this.shutdownAckFor = undefined;
      }
    });
    child.on("exit", (code, signal) => this.replicaGone(child, code, signal));
  }

  /** The replica process exited (or never started): restarted, under a new key. */
  private replicaGone(
    child: ChildProcess,
    code: number | null,
    signal: NodeJS.Signals | null,
  ): void {
    if (this.child !== child || this.stopping) return;
    this.child = undefined;
    this.childReady = false;
    this.childStarted = false;
    this.startWhenReady = undefined;
    if (this.bootedTimer) clearTimeout(this.bootedTimer);
    // One that died before it loaded: the restart below asks afresh, under a new key.
    this.bootedWhenReady = undefined;
    this.restarts++;
    // A crashed replica lost its memory: it comes back recovering, after a growing pause.
    const delayMs = Math.min(10_000, 250 * 2 ** Math.min(this.restarts, 6));
    this.options.log(
      `replica ${code === null && signal === null ? "did not start" : `exited (${signal ?? `code ${code}`})`}; restarting in ${delayMs} ms, under a new key`,
    );
    this.restartTimer = setTimeout(() => this.askForCertificate(), delayMs);
  }

  private onPrepareShutdown(period: number): void {
    this.options.log(`board announces shutdown for period ${period}`);
    if (!this.childStarted || !this.child?.connected) {
      this.link?.send({ type: "SHUTDOWN_ACK", period });
      return;
    }
    this.shutdownAckFor = period;
    this.tell({ type: "prepare-shutdown" });
    // Acknowledge anyway if the replica does not answer promptly: the board will not wait.
    const timer = setTimeout(() => {
      if (this.shutdownAckFor === period) {
        this.link?.send({ type: "SHUTDOWN_ACK", period });
        this.shutdownAckFor = undefined;
      }
    }, 300);
    this.timers.push(timer);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    for (const t of this.timers) clearTimeout(t);
    if (this.bootedTimer) clearTimeout(this.bootedTimer);
    if (this.restartTimer) clearTimeout(this.restartTimer);
    const child = this.child;
    this.child = undefined;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 2_000);
      await exited;
      clearTimeout(timer);
    }
    await this.link?.close();
  }
}

/**
 * A message to the replica process. One that died a moment ago still looks connected until its
 * channel's end is read, and a send to it fails: its exit restarts it, so the failure is dropped
 * here rather than emitted as an "error" (which, unheard, ended the agent: a lease renewed just
 * as its replica crashed took the host's agent down).
 */
function toReplica(child: ChildProcess, message: AgentToReplica): void {
  if (!child.connected) return;
  // Given a callback, a failed send goes to it, not to an "error" event.
  child.send(message, () => {});
}
