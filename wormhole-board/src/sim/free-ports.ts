/**
 * A band of consecutive loopback ports free for TCP and UDP, for a local testbed's boards and
 * hosts. Below the kernel's ephemeral range (32768 up by default): a port in that range can be
 * taken at any moment by another program's outgoing connection or unbound UDP socket, and a
 * board whose control port is taken exits at start-up. And below 17000: the tests that use fixed
 * ports (the six-daemon suites from 17400, the service's from 27400, the benchmark's from 29000)
 * stay above it.
 */
import { createSocket } from "node:dgram";
import { createServer } from "node:net";

const LOWEST_PORT = 10_000;
const HIGHEST_PORT = 17_000;

function tcpFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen({ port, host: "127.0.0.1", exclusive: true }, () =>
      server.close(() => resolve(true)),
    );
  });
}

function udpFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createSocket("udp4");
    socket.once("error", () => {
      socket.close();
      resolve(false);
    });
    socket.bind({ port, address: "127.0.0.1", exclusive: true }, () =>
      socket.close(() => resolve(true)),
    );
  });
}

/**
 * The first port of `spanPorts` consecutive ports that were free for both TCP and UDP on
 * 127.0.0.1 when checked, at a random place between 10000 and 17000. Another program may still
 * take one after the check; the random place makes two tests that ask at once unlikely to meet.
 */
export async function freePortBand(spanPorts: number, attempts = 50): Promise<number> {
  const room = HIGHEST_PORT - LOWEST_PORT - spanPorts;
  if (spanPorts < 1 || room <= 0) throw new Error(`no port band of ${spanPorts} ports to look for`);
  for (let attempt = 0; attempt < attempts; attempt++) {
    const base = LOWEST_PORT + Math.floor(Math.random() * room);
    let free = true;
    for (let port = base; port < base + spanPorts && free; port++)
      free = (await tcpFree(port)) && (await udpFree(port));
    if (free) return base;
  }
  throw new Error(
    `no ${spanPorts} consecutive free loopback ports found in ${attempts} tries between ${LOWEST_PORT} and ${HIGHEST_PORT}`,
  );
}
