/**
 * The program a Byzantine SM code image boots: an intruder's host. It does not
 * talk to its board; it runs a compromised replica under the key it stole from
 * the host's state folder (the key the board certified for the honest code),
 * until the board's next rejuvenation resets the host and restores the code.
 */
import { keyFilesIn } from "@smw/host-agent";
import { formatProblem, loadTestbedFile } from "@smw/wiring";
import { parseBehaviours, runByzantineReplica } from "./byzantine-replica.js";

export async function runByzantineHost(
  testbedFile: string,
  hostId: string,
  behavioursText: string,
): Promise<void> {
  const log = (line: string) =>
    process.stderr.write(`${new Date().toISOString()} ${hostId} byzantine: ${line}\n`);
  const loaded = loadTestbedFile(testbedFile);
  if (!loaded.ok) throw new Error(loaded.problems.map(formatProblem).join("\n"));
  const host = loaded.testbed.hosts.find((h) => h.id === hostId);
  if (host === undefined) throw new Error(`${testbedFile}: no host ${hostId}`);
  const behaviours = parseBehaviours(behavioursText);
  log(`compromised code running (${behaviours.join(", ")}) under the stolen replica key`);
  const replica = await runByzantineReplica(
    loaded.testbed,
    hostId,
    keyFilesIn(host.stateDir),
    behaviours,
    log,
  );
  await new Promise<void>((resolve) => {
    process.once("SIGTERM", resolve);
    process.once("SIGINT", resolve);
  });
  await replica.close();
}
