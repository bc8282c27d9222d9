import { readFileSync } from "node:fs";
import { createServer } from "node:net";

/**
 * Free loopback ports for etcd's client and peer listeners.
 *
 * A member keeps its ports across kill + restart, so while it is down its
 * ports must not be taken by someone else. Ports from the kernel's ephemeral
 * range could be grabbed by any outgoing connection in that window, so we
 * prefer ports just below that range (still probed by binding them) and fall
 * back to port 0 when the range leaves no room.
 */

// Ports handed out by this process; a probe closes its socket before etcd
// binds the port, so the kernel alone would not stop us handing it out twice.
const handedOut = new Set<number>();

const LOWEST = 20_000;

function ephemeralLow(): number {
  try {
    const [low] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/);
    return Number(low) || 32_768;
  } catch {
    return 32_768;
  }
}

/** Binds 127.0.0.1:port (0 = kernel's choice), returns the bound port, or undefined if taken. */
function probe(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(undefined));
    server.listen({ host: "127.0.0.1", port, exclusive: true }, () => {
      const address = server.address();
      const bound = typeof address === "object" && address ? address.port : undefined;
      server.close(() => resolve(bound));
    });
  });
}

export async function freePort(): Promise<number> {
  const high = ephemeralLow();
  for (let attempt = 0; attempt < 100; attempt++) {
    const wanted = high - LOWEST > 100 ? LOWEST + Math.floor(Math.random() * (high - LOWEST)) : 0;
    if (handedOut.has(wanted)) continue;
    const port = await probe(wanted);
    if (port !== undefined && !handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error("ports: no free loopback port found after 100 attempts");
}

export async function freePorts(count: number): Promise<number[]> {
  const ports: number[] = [];
  for (let i = 0; i < count; i++) ports.push(await freePort());
  return ports;
}
