/**
 * `smw host run`: the host agent of one payload host. `smw host replica` is
 * the replica process the agent supervises (not for people to run).
 */
import { fork, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { formatProblem, loadTestbedFile, type Testbed } from "@smw/wiring";
import {
  type CliContext,
  nativeModuleStatus,
  reportChecks,
  SERIALPORT_MODULE,
  systemdNotifyFromEnvironment,
  UsageError,
  WatchdogError,
  WatchdogFeeder,
} from "@smw/wiring/cli";
import { Command } from "commander";
import {
  type AgentToReplica,
  isAgentToReplica,
  type ReplicaToAgent,
} from "../agent/agent-protocol.js";
import { HostAgent } from "../agent/host-agent.js";
import { hostChecks, listenProbe } from "../agent/host-checks.js";
import { readReplicaKey } from "../agent/replica-keys.js";
import { signerFor } from "../replica/ed25519.js";
import { type ReplicaServer, readStoredCheckpoint } from "../service/replica-server.js";
import { certifyWithBoardKey, KeyFileError, leaseWithBoardKey } from "../service/service-keys.js";
import { readServiceKeys, type ServiceKeys, startReplica } from "../service/service-runtime.js";

/** The program to start the replica with, when the running one does not say (tests in-process). */
/**
 * The program's entry, for a replica process when the caller did not say (`io.selfPath`): from
 * host-agent/dist/cli as built, or from cli/dist in the host bundle.
 */
const SMW_BIN_CANDIDATES = [
  fileURLToPath(new URL("../../../bin/smw.js", import.meta.url)),
  fileURLToPath(new URL("../../bin/smw.js", import.meta.url)),
];
const SMW_BIN =
  SMW_BIN_CANDIDATES.find((file) => existsSync(file)) ?? (SMW_BIN_CANDIDATES[0] as string);

function loadTestbed(file: string): Testbed {
  const loaded = loadTestbedFile(file);
  if (!loaded.ok) throw new UsageError(loaded.problems.map(formatProblem).join("\n"));
  return loaded.testbed;
}

function untilSignal(): Promise<void> {
  return new Promise((resolve) => {
    process.once("SIGINT", () => resolve());
    process.once("SIGTERM", () => resolve());
  });
}

export function hostCommand(context: CliContext): Command {
  const host = new Command("host").description("the payload host's agent");
  host
    .command("doctor")
    .description(
      "check that this machine can run a payload host of the testbed: Node, where the code loads from (the bundle and its code cache), the console's binding and device, the state folder, the keys the replica reads, its address",
    )
    .requiredOption("--testbed <file>", "testbed file")
    .requiredOption("--host <id>", "which host this machine is")
    .option("--json", "one JSON object per check")
    .action(async (flags: { testbed: string; host: string; json?: boolean }) => {
      const testbed = loadTestbed(flags.testbed);
      const host = testbed.hosts.find((h) => h.id === flags.host);
      if (host === undefined)
        throw new UsageError(
          `${flags.testbed}: no host "${flags.host}"; hosts are ${testbed.hosts.map((h) => h.id).join(", ")}`,
        );
      const checks = await hostChecks(
        testbed,
        host,
        {
          nodeVersion: process.version,
          ...(context.io.loadedFrom !== undefined ? { loadedFrom: context.io.loadedFrom } : {}),
          loads: (module) => nativeModuleStatus(createRequire(import.meta.url), module),
          canListen: listenProbe,
          hasTool: (command, args) => spawnSync(command, args, { stdio: "ignore" }).status === 0,
          isRoot: process.getuid?.() === 0,
        },
        SERIALPORT_MODULE,
      );
      reportChecks(context, `host ${host.id}`, checks, flags.json === true);
    });
  host
    .command("run")
    .description(
      "after boot: get this boot's replica key certified by the board, run the replica (supervised), report to the board",
    )
    .requiredOption("--testbed <file>", "testbed file")
    .requiredOption("--host <id>", "this host's id")
    .option(
      "--initial",
      "first start of the service: start from the empty state, nothing to recover",
    )
    .option(
      "--self-certify",
      "certify the key with the board's signing key from the testbed instead of asking the board (benches without boards)",
    )
    .action(
      async (flags: {
        testbed: string;
        host: string;
        initial?: boolean;
        selfCertify?: boolean;
      }) => {
        const loadedMs = process.uptime() * 1000;
        const testbed = loadTestbed(flags.testbed);
        if (!testbed.hosts.some((h) => h.id === flags.host))
          throw new UsageError(
            `${flags.testbed}: no host "${flags.host}"; hosts are ${testbed.hosts.map((h) => h.id).join(", ")}`,
          );
        const log = (line: string) =>
          context.io.err(`${new Date().toISOString()} ${flags.host} agent: ${line}\n`);
        // Where a boot's time goes before the agent can do anything: node and its code, the testbed.
        log(
          `started (loaded in ${Math.round(loadedMs)} ms${context.io.loadedFrom !== undefined ? `, from the ${context.io.loadedFrom}` : ""}; testbed read in ${Math.round(process.uptime() * 1000 - loadedMs)} ms)`,
        );
        // Under systemd (Type=notify, WatchdogSec): said at once when socat, which carries the
        // notifications, is missing, rather than killed at the start timeout.
        let systemd: ReturnType<typeof systemdNotifyFromEnvironment>;
        try {
          systemd = systemdNotifyFromEnvironment();
        } catch (error) {
          if (error instanceof WatchdogError) throw new UsageError(error.message);
          throw error;
        }
        let selfCertified = 0;
        const agent = new HostAgent({
          testbed,
          hostId: flags.host,
          log,
          ...(flags.initial ? { initial: true } : {}),
          ...(flags.selfCertify
            ? {
                // Each key newer than the last (a crashed replica comes back under a new one),
                // as a board's clock in seconds makes them.
                selfCertify: (publicKey: string) => {
                  selfCertified = Math.max(selfCertified + 1, Math.floor(Date.now() / 1000));
                  return certifyWithBoardKey(
                    testbed,
                    flags.host,
                    { publicKey, sign: () => "" },
                    selfCertified,
                  );
                },
                selfLease: {
                  lease: selfLeaseOf(testbed, flags.host),
                  everyMs: testbed.rejuvenation.keyLeaseMs / 4,
                },
              }
            : {}),
          spawnReplica: () => {
            // The first replica may have been started already, before this code loaded.
            const early = context.io.earlyReplica;
            context.io.earlyReplica = undefined;
            if (early?.connected === true && early.exitCode === null) return early;
            early?.kill();
            return fork(
              context.io.selfPath ?? SMW_BIN,
              ["host", "replica", "--testbed", flags.testbed, "--host", flags.host],
              { stdio: ["ignore", "inherit", "inherit", "ipc"] },
            );
          },
        });
        try {
          await agent.start();
        } catch (error) {
          systemd?.close();
          await agent.stop();
          if (error instanceof KeyFileError) throw new UsageError(error.message);
          throw new UsageError((error as Error).message);
        }
        // Fed from the event loop: an agent whose loop hangs is killed by systemd and started
        // again, and comes back as a crashed replica does (a new key, certified once a period).
        const feeder = new WatchdogFeeder(systemd ? [systemd] : [], () => agent.healthy);
        feeder.start();
        await untilSignal();
        feeder.stop();
        await agent.stop();
        context.setExitCode(0);
      },
    );

  host
    .command("replica", { hidden: true })
    .description(
      "the replica process a host agent supervises: loads, says ready, and starts when told (over IPC)",
    )
    .requiredOption("--testbed <file>", "the testbed file (the agent passes what it read from it)")
    .requiredOption("--host <id>", "this host's id")
    .action(async (flags: { testbed: string; host: string }) => {
      if (process.send === undefined)
        throw new UsageError("smw host replica is started by `smw host run`, over an IPC channel");
      // The testbed as the agent read it (it reports a bad file itself); gone before: nothing to do.
      const testbed = await testbedFromAgent();
      if (testbed === undefined) {
        context.setExitCode(0);
        return;
      }
      // Read now, while the host waits for its certificate: not part of T_transfer then.
      const stateDir = testbed.hosts.find((h) => h.id === flags.host)?.stateDir;
      const storedCheckpoint = stateDir === undefined ? undefined : readStoredCheckpoint(stateDir);
      let serviceKeys: ServiceKeys | undefined;
      // An agent that has just died: the channel's end makes this process exit; a failed send
      // is dropped (given a callback, it is not emitted as an "error").
      const tellAgent = (m: ReplicaToAgent) => process.send?.(m, undefined, undefined, () => {});
      // Timed like the agent's lines, so the console shows where a recovery's time goes.
      const log = (line: string) => context.io.err(`${new Date().toISOString()} ${line}\n`);
      let server: ReplicaServer | undefined;
      let starting = false;
      /** What came while the replica was starting, done once it has. */
      const pending: AgentToReplica[] = [];
      const start = async (m: Extract<AgentToReplica, { type: "start" }>) => {
        const startAskedAtMs = performance.now();
        const { privateKey, certificate } = readReplicaKey(m);
        const revoked = m.revokedKeys.map((r) => `${r.host} before ${r.before}`).join(", ");
        log(
          `${flags.host}: replica starting${m.recovering ? ", recovering" : ""}${m.coldStart ? ", in a cold start" : ""}${revoked ? `; keys revoked: ${revoked}` : ""}`,
        );
        const started = await startReplica(testbed, flags.host, {
          ...(serviceKeys !== undefined ? { serviceKeys } : {}),
          startAskedAtMs,
          signer: signerFor(privateKey),
          certificate,
          recovering: m.recovering,
          coldStart: m.coldStart,
          revokedKeys: m.revokedKeys,
          ...(storedCheckpoint !== undefined ? { storedCheckpoint } : {}),
          log,
          onAction: (a) => {
            if (a.type === "recovered")
              tellAgent({ type: "recovered", seq: a.seq, digest: a.digest });
          },
        });
        // Recovered at once only with nothing to agree on or fetch first.
        if (!m.recovering && !m.coldStart)
          tellAgent({
            type: "recovered",
            seq: started.core.stableCheckpoint.seq,
            digest: started.core.stableCheckpoint.digest,
          });
        tellAgent({ type: "started" });
        return started;
      };
      const handle = (m: AgentToReplica, running: ReplicaServer) => {
        if (m.type === "prepare-shutdown") {
          running.prepareShutdown();
          tellAgent({ type: "shutdown-prepared" });
        } else if (m.type === "revoke") {
          running.revokeKeys(m.hosts, m.before);
        } else if (m.type === "lease") {
          running.installLease(m.lease);
        } else if (m.type === "install-key") {
          const next = readReplicaKey({ keyFile: m.keyFile, certificateFile: m.certificateFile });
          running.installKey(next.certificate, signerFor(next.privateKey));
        }
      };
      process.on("message", (m: unknown) => {
        if (!isAgentToReplica(m)) return;
        if (m.type !== "start") {
          if (server !== undefined) handle(m, server);
          else if (starting) pending.push(m);
          return;
        }
        if (starting) return;
        starting = true;
        start(m).then(
          (running) => {
            server = running;
            for (const each of pending.splice(0)) handle(each, running);
          },
          (error: Error) => {
            log(`${flags.host}: the replica did not start: ${error.message}`);
            process.exit(1);
          },
        );
      });
      log(
        `${flags.host}: replica process ready (loaded in ${Math.round(process.uptime() * 1000)} ms${context.io.loadedFrom !== undefined ? `, from the ${context.io.loadedFrom}` : ""})`,
      );
      tellAgent({ type: "ready" });
      // While the board checks BOOTED and certifies the new key, the keys the replica checks
      // certificates and clients with (cold, on a loaded host, this took 11-85 ms of T_transfer).
      // Read again at the start, where a missing or bad key file is reported, if this fails.
      setImmediate(() => {
        if (!starting)
          try {
            serviceKeys = readServiceKeys(testbed);
          } catch {}
      });
      // The agent gone means this host is going down: stop serving.
      const stop = new Promise<void>((resolve) => process.once("disconnect", () => resolve()));
      await Promise.race([untilSignal(), stop]);
      await server?.close();
      context.setExitCode(0);
    });
  return host;
}

/** The agent's first message: the testbed it read; undefined if the agent goes first. */
function testbedFromAgent(): Promise<Testbed | undefined> {
  return new Promise((resolve) => {
    const onMessage = (m: unknown) => {
      if (!isAgentToReplica(m) || m.type !== "testbed") return;
      done(m.testbed);
    };
    const onDisconnect = () => done(undefined);
    const done = (testbed: Testbed | undefined) => {
      process.off("message", onMessage);
      process.off("disconnect", onDisconnect);
      resolve(testbed);
    };
    process.on("message", onMessage);
    process.once("disconnect", onDisconnect);
  });
}

/** Leases made with the board's key, for `--self-certify`: a key file that cannot be read is bad usage. */
function selfLeaseOf(testbed: Testbed, hostId: string): ReturnType<typeof leaseWithBoardKey> {
  try {
    return leaseWithBoardKey(testbed, hostId);
  } catch (error) {
    if (error instanceof KeyFileError) throw new UsageError(error.message);
    throw error;
  }
}
