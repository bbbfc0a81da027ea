/**
 * The program a Byzantine SM code image boots: an intruder's host. It does not
 * talk to its board; it runs a compromised replica under the key it stole from
 * the host's state folder (the key the board certified for the honest code),
 * until the board's next rejuvenation resets the host and restores the code.
 * It listens on the console all the same: the board's leases on that key pass
 * there, and its replica hands them to clients as an honest one would.
 */
import { ConsoleLink, keyFilesIn } from "@smw/host-agent";
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
  const hostLink = new ConsoleLink(host.console.device, host.console.baud);
  try {
    await hostLink.open();
    hostLink.on((message) => {
      if (message.type === "LEASE") replica.installLease(message.lease);
    });
  } catch (error) {
    log(`no console, so no leases for clients: ${(error as Error).message}`);
  }
  await new Promise<void>((resolve) => {
    process.once("SIGTERM", resolve);
    process.once("SIGINT", resolve);
  });
  await hostLink.close();
  await replica.close();
}
