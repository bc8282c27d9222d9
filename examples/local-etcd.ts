/** For the examples: a throwaway single etcd member from a local binary. */
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
  const caches = ["/var/cache/etcd-election", join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "etcd-election")];
  return caches.map((dir) => join(dir, "etcd-3.5", "etcd")).find((path) => existsSync(path)) ?? "etcd";
}

/** A single etcd member on free loopback ports, in a temporary directory. */
export async function startLocalEtcd(log: (msg: string) => void): Promise<{ endpoint: string; stop: () => void }> {
  const [client, peer] = [await freePort(), await freePort()];
  const dir = mkdtempSync(join(tmpdir(), "etcd-quickstart-"));
  const binary = etcdBinary();
  const version = /etcd Version: (\S+)/.exec(execFileSync(binary, ["--version"], { encoding: "utf8" }))?.[1] ?? "(version unknown)";
  const proc: ChildProcess = spawn(
    binary,
    [
      `--data-dir=${dir}`,
      `--listen-client-urls=http://127.0.0.1:${client}`,
      `--advertise-client-urls=http://127.0.0.1:${client}`,
      `--listen-peer-urls=http://127.0.0.1:${peer}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${peer}`,
      `--initial-cluster=default=http://127.0.0.1:${peer}`,
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  await new Promise<void>((resolve, reject) => {
    let out = "";
    proc.once("error", reject);
    proc.stderr!.on("data", (d: Buffer) => {
      out += d.toString();
      // 3.4 and 3.5 both print this with their default loggers.
      if (out.includes("ready to serve client requests")) resolve();
    });
    proc.once("exit", (code) => reject(new Error(`etcd exited with ${code}: ${out.slice(-500)}`)));
  });
  log(`started a throwaway etcd ${version} (${binary}) on 127.0.0.1:${client}`);
  return {
    endpoint: `127.0.0.1:${client}`,
    stop: () => {
      proc.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    },
  };
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
