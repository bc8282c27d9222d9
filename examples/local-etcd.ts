/** For the examples: throwaway etcd members from a local binary, on loopback, in temporary directories. */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";

/**
 * ETCD_BIN, else the etcd 3.5 that .ci/setup caches (.ci/fetch-etcd: as root, or as anyone else), else
 * `etcd` on PATH (Debian bookworm's etcd-server: 3.4).
 */
function etcdBinary(): string {
  if (process.env.ETCD_BIN) return process.env.ETCD_BIN;
  const caches = [
    "/var/cache/etcd-election",
    join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "etcd-election"),
  ];
  return caches.map((dir) => join(dir, "etcd-3.5", "etcd")).find((path) => existsSync(path)) ?? "etcd";
}

export interface LocalMember {
  readonly name: string;
  /** "127.0.0.1:port" */
  readonly endpoint: string;
  /** SIGKILL, as a crash. */
  kill(): Promise<void>;
  /** Starts it again with its data and ports; resolves once it serves. */
  restart(): Promise<void>;
}

export interface LocalCluster {
  readonly endpoints: string[];
  /** Where the members keep their data (removed by stop()). */
  readonly dataDir: string;
  readonly members: LocalMember[];
  readonly version: string;
  /** Kills every member and removes their data. */
  stop: () => void;
}

/** A cluster of `size` members on free loopback ports (one member: a single node). */
export async function startLocalCluster(size: number, log: (msg: string) => void): Promise<LocalCluster> {
  const binary = etcdBinary();
  const version =
    /etcd Version: (\S+)/.exec(execFileSync(binary, ["--version"], { encoding: "utf8" }))?.[1] ?? "(version unknown)";
  const dir = mkdtempSync(join(tmpdir(), "etcd-election-example-"));
  const ports = await Promise.all(
    Array.from({ length: size }, async () => ({ client: await freePort(), peer: await freePort() })),
  );
  const initialCluster = ports.map((p, i) => `m${i}=http://127.0.0.1:${p.peer}`).join(",");
  const processes = new Set<ChildProcess>();
  const entries = ports.map((p, i) => {
    const name = `m${i}`;
    const args = [
      `--name=${name}`,
      `--data-dir=${join(dir, name)}`,
      `--listen-client-urls=http://127.0.0.1:${p.client}`,
      `--advertise-client-urls=http://127.0.0.1:${p.client}`,
      `--listen-peer-urls=http://127.0.0.1:${p.peer}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${p.peer}`,
      `--initial-cluster=${initialCluster}`,
      "--initial-cluster-state=new",
      "--heartbeat-interval=100",
      "--election-timeout=1000",
    ];
    let proc: ChildProcess | undefined;
    const start = (): Promise<void> => {
      const child = spawn(binary, args, { stdio: ["ignore", "ignore", "pipe"] });
      proc = child;
      processes.add(child);
      child.once("exit", () => processes.delete(child));
      return new Promise<void>((resolve, reject) => {
        let out = "";
        child.once("error", reject);
        child.stderr.on("data", (d: Buffer) => {
          out = (out + d.toString()).slice(-4000);
          // 3.4 and 3.5 both print this once they serve clients (which needs a quorum).
          if (out.includes("ready to serve client requests")) resolve();
        });
        child.once("exit", (code) => reject(new Error(`etcd ${name} exited with ${code}: ${out.slice(-500)}`)));
      });
    };
    const member: LocalMember = {
      name,
      endpoint: `127.0.0.1:${p.client}`,
      kill: async () => {
        const child = proc;
        if (!child || child.exitCode !== null || child.signalCode !== null) return;
        const exited = new Promise((resolve) => child.once("exit", resolve));
        child.kill("SIGKILL");
        await exited;
      },
      restart: start,
    };
    return { member, start };
  });
  const members = entries.map((e) => e.member);
  const stop = (): void => {
    for (const child of processes) child.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    // Together: a member serves only once a quorum is up.
    await Promise.all(entries.map((e) => e.start()));
  } catch (error) {
    stop();
    throw error;
  }
  log(
    `started a throwaway etcd ${version} cluster of ${size} (${binary}) on ${members.map((m) => m.endpoint).join(", ")}`,
  );
  return { endpoints: members.map((m) => m.endpoint), dataDir: dir, members, version, stop };
}

/** A single etcd member (the quickstart and the benchmark). */
export async function startLocalEtcd(log: (msg: string) => void): Promise<{ endpoint: string; stop: () => void }> {
  const cluster = await startLocalCluster(1, log);
  return { endpoint: cluster.endpoints[0]!, stop: cluster.stop };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
    server.once("error", reject);
  });
}
