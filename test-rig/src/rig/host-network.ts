/**
 * The rig's payload network. By default the hosts share this machine's
 * loopback and listen at their testbed addresses. Asked to (and as root), each
 * host gets a network namespace of its own, joined to the others and to this
 * machine by a bridge: a host then reaches its peers only over its own
 * interface, as on a real network. The namespaces and the bridge are named
 * after the testbed and written down, so a killed rig's are removed by the
 * next rig on the testbed, or by `smw rig down`.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import type { Testbed } from "@smw/wiring";

export interface HostNetwork {
  /** The argv that starts a program on `hostId`'s network. */
  wrap(hostId: string, argv: readonly string[]): string[];
  describe(): string;
  close(): void;
}

export const loopbackNetwork: HostNetwork = {
  wrap: (_host, argv) => [...argv],
  describe: () => "payload network on loopback",
  close: () => {},
};

function ip(...args: string[]): void {
  const run = spawnSync("ip", args, { encoding: "utf8" });
  if (run.status !== 0)
    throw new Error(
      `ip ${args.join(" ")}: ${(run.stderr || run.error?.message || "failed").trim()}`,
    );
}

function names(testbed: Testbed): {
  tag: string;
  bridge: string;
  namespace(host: string): string;
  veth(i: number): [string, string];
} {
  const tag = createHash("sha256").update(testbed.file).digest("hex").slice(0, 6);
  return {
    tag,
    bridge: `smwbr${tag}`,
    namespace: (host) => `smw-${tag}-${host}`,
    veth: (i) => [`sv${tag}${i}a`, `sv${tag}${i}b`],
  };
}

/** Why namespaces cannot be made for this testbed here (empty: they can). */
export function namespaceProblems(testbed: Testbed, uid = process.getuid?.() ?? -1): string[] {
  const problems: string[] = [];
  if (uid !== 0)
    problems.push(
      "--netns: network namespaces need root (run as root, or leave --netns out: the hosts then share loopback)",
    );
  if (spawnSync("ip", ["-V"]).status !== 0)
    problems.push("--netns: the ip command is missing (Debian: apt-get install iproute2)");
  const prefixes = new Set<string>();
  for (const host of testbed.hosts) {
    const parts = host.address.host.split(".");
    if (parts.length !== 4 || parts.some((p) => !/^\d+$/.test(p) || Number(p) > 255)) {
      problems.push(
        `--netns: host ${host.id}'s address ${host.address.host} is not an IPv4 address`,
      );
      continue;
    }
    if (parts[0] === "127")
      problems.push(
        `--netns: host ${host.id}'s address ${host.address.host} is on loopback; in its own namespace each host needs an address of its own in one /24 (as in wiring/examples/rig-6-netns.yaml), in ${testbed.file}`,
      );
    if (parts[3] === "254")
      problems.push(
        `--netns: host ${host.id}'s address ${host.address.host}: .254 is the bridge's`,
      );
    prefixes.add(parts.slice(0, 3).join("."));
  }
  if (prefixes.size > 1)
    problems.push(
      `--netns: the hosts' addresses are not in one /24 (${[...prefixes].join(", ")}), in ${testbed.file}`,
    );
  return problems;
}

export class NamespaceNetwork implements HostNetwork {
  private constructor(
    private readonly testbed: Testbed,
    private readonly stateFile: string,
  ) {}

  /** Makes the bridge and one namespace per host; on any failure removes what it made. */
  static up(testbed: Testbed, stateFile: string): NamespaceNetwork {
    NamespaceNetwork.reap(stateFile);
    const n = names(testbed);
    const made: string[] = [];
    const network = new NamespaceNetwork(testbed, stateFile);
    const record = (what: string) => {
      made.push(what);
      writeFileSync(stateFile, `${made.join("\n")}\n`);
    };
    try {
      const first = testbed.hosts[0]?.address.host.split(".") ?? [];
      const gateway = `${first.slice(0, 3).join(".")}.254`;
      ip("link", "add", n.bridge, "type", "bridge");
      record(`link ${n.bridge}`);
      ip("addr", "add", `${gateway}/24`, "dev", n.bridge);
      ip("link", "set", n.bridge, "up");
      testbed.hosts.forEach((host, i) => {
        const ns = n.namespace(host.id);
        const [outside, inside] = n.veth(i);
        ip("netns", "add", ns);
        record(`netns ${ns}`);
        ip("link", "add", outside, "type", "veth", "peer", "name", inside);
        record(`link ${outside}`);
        ip("link", "set", inside, "netns", ns);
        ip("link", "set", outside, "master", n.bridge);
        ip("link", "set", outside, "up");
        ip("-n", ns, "addr", "add", `${host.address.host}/24`, "dev", inside);
        ip("-n", ns, "link", "set", inside, "up");
        ip("-n", ns, "link", "set", "lo", "up");
        ip("-n", ns, "route", "add", "default", "via", gateway);
      });
    } catch (error) {
      NamespaceNetwork.reap(stateFile);
      throw error;
    }
    return network;
  }

  wrap(hostId: string, argv: readonly string[]): string[] {
    return ["ip", "netns", "exec", names(this.testbed).namespace(hostId), ...argv];
  }

  describe(): string {
    return `one network namespace per host, bridged (${names(this.testbed).bridge})`;
  }

  close(): void {
    NamespaceNetwork.reap(this.stateFile);
  }

  /** Removes the namespaces and links a rig wrote down in `stateFile`; returns how many. */
  static reap(stateFile: string): number {
    if (!existsSync(stateFile)) return 0;
    let removed = 0;
    const lines = readFileSync(stateFile, "utf8")
      .split("\n")
      .filter((l) => l !== "");
    for (const line of lines.reverse()) {
      const [kind, name] = line.split(" ");
      if (name === undefined || !/^(smw-|smwbr|sv)[\w-]+$/.test(name)) continue;
      const run =
        kind === "netns"
          ? spawnSync("ip", ["netns", "del", name])
          : spawnSync("ip", ["link", "del", name]);
      if (run.status === 0) removed++;
    }
    rmSync(stateFile, { force: true });
    return removed;
  }
}
