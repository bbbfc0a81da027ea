/**
 * `smw host run`: the host agent of one payload host. `smw host replica` is
 * the replica process the agent supervises (not for people to run).
 */
import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { formatProblem, loadTestbedFile, type Testbed } from "@smw/wiring";
import { type CliContext, UsageError } from "@smw/wiring/cli";
import { Command } from "commander";
import { isAgentToReplica, type ReplicaToAgent } from "../agent/agent-protocol.js";
import { HostAgent } from "../agent/host-agent.js";
import { readReplicaKey } from "../agent/replica-keys.js";
import { signerFor } from "../replica/ed25519.js";
import { certifyWithBoardKey, KeyFileError } from "../service/service-keys.js";
import { startReplica } from "../service/service-runtime.js";

const SMW_BIN = fileURLToPath(new URL("../../../bin/smw.js", import.meta.url));

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
        const testbed = loadTestbed(flags.testbed);
        if (!testbed.hosts.some((h) => h.id === flags.host))
          throw new UsageError(
            `${flags.testbed}: no host "${flags.host}"; hosts are ${testbed.hosts.map((h) => h.id).join(", ")}`,
          );
        const log = (line: string) =>
          context.io.err(`${new Date().toISOString()} ${flags.host} agent: ${line}\n`);
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
              }
            : {}),
          spawnReplica: ({ keyFiles, recovering, coldStart, revokedKeys }) =>
            fork(
              SMW_BIN,
              [
                "host",
                "replica",
                "--testbed",
                flags.testbed,
                "--host",
                flags.host,
                "--key-file",
                keyFiles.keyFile,
                "--certificate",
                keyFiles.certificateFile,
                ...(recovering ? ["--recovering"] : []),
                ...(coldStart ? ["--cold-start"] : []),
                ...(revokedKeys.length > 0
                  ? ["--revoked", revokedKeys.map((r) => `${r.host}:${r.before}`).join(",")]
                  : []),
              ],
              { stdio: ["ignore", "inherit", "inherit", "ipc"] },
            ),
        });
        try {
          await agent.start();
        } catch (error) {
          await agent.stop();
          if (error instanceof KeyFileError) throw new UsageError(error.message);
          throw new UsageError((error as Error).message);
        }
        await untilSignal();
        await agent.stop();
        context.setExitCode(0);
      },
    );

  host
    .command("replica", { hidden: true })
    .description("the replica process a host agent supervises")
    .requiredOption("--testbed <file>", "testbed file")
    .requiredOption("--host <id>", "this host's id")
    .requiredOption("--key-file <file>", "this boot's private key")
    .requiredOption("--certificate <file>", "its certificate from the board")
    .option("--recovering", "recover the state from the other replicas first")
    .option("--cold-start", "every replica restarted: agree on the state to start from")
    .option("--revoked <list>", "keys the board revoked: host:epoch,...")
    .action(
      async (flags: {
        testbed: string;
        host: string;
        keyFile: string;
        certificate: string;
        recovering?: boolean;
        coldStart?: boolean;
        revoked?: string;
      }) => {
        const testbed = loadTestbed(flags.testbed);
        const files = { keyFile: flags.keyFile, certificateFile: flags.certificate };
        const { privateKey, certificate } = readReplicaKey(files);
        const tellAgent = (m: ReplicaToAgent) => process.send?.(m);
        const server = await startReplica(testbed, flags.host, {
          signer: signerFor(privateKey),
          certificate,
          recovering: flags.recovering === true,
          coldStart: flags.coldStart === true,
          revokedKeys: parseRevoked(flags.revoked ?? ""),
          log: (line) => context.io.err(`${line}\n`),
          onAction: (a) => {
            if (a.type === "recovered")
              tellAgent({ type: "recovered", seq: a.seq, digest: a.digest });
          },
        });
        // Recovered at once only with nothing to agree on or fetch first.
        if (flags.recovering !== true && flags.coldStart !== true)
          tellAgent({
            type: "recovered",
            seq: server.core.stableCheckpoint.seq,
            digest: server.core.stableCheckpoint.digest,
          });
        tellAgent({ type: "started" });
        process.on("message", (m: unknown) => {
          if (!isAgentToReplica(m)) return;
          if (m.type === "prepare-shutdown") {
            server.prepareShutdown();
            tellAgent({ type: "shutdown-prepared" });
          } else if (m.type === "revoke") {
            server.revokeKeys(m.hosts, m.before);
          } else {
            const next = readReplicaKey({ keyFile: m.keyFile, certificateFile: m.certificateFile });
            server.installKey(next.certificate, signerFor(next.privateKey));
          }
        });
        // The agent gone means this host is going down: stop serving.
        const stop = new Promise<void>((resolve) => process.once("disconnect", () => resolve()));
        await Promise.race([untilSignal(), stop]);
        await server.close();
        context.setExitCode(0);
      },
    );
  return host;
}

/** `--revoked h3:1767000000,h4:1767000000` as the agent writes it; anything else is an error. */
function parseRevoked(text: string): Array<{ host: string; before: number }> {
  if (text === "") return [];
  return text.split(",").map((item) => {
    const match = /^([A-Za-z0-9_.-]{1,64}):(\d{1,15})$/.exec(item);
    if (match === null) throw new RangeError(`--revoked: "${item}" is not host:epoch`);
    return { host: match[1] as string, before: Number(match[2]) };
  });
}
