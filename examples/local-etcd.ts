/** For the examples: a throwaway single etcd member from the local binary (Debian's etcd-server). */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A single etcd member on free loopback ports, in a temporary directory. */
export async function startLocalEtcd(log: (msg: string) => void): Promise<{ endpoint: string; stop: () => void }> {
  const [client, peer] = [await freePort(), await freePort()];
  const dir = mkdtempSync(join(tmpdir(), "etcd-quickstart-"));
  const proc: ChildProcess = spawn(
    process.env.ETCD_BIN ?? "etcd",
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
      if (out.includes("ready to serve client requests")) resolve();
    });
    proc.once("exit", (code) => reject(new Error(`etcd exited with ${code}: ${out.slice(-500)}`)));
  });
  log(`started a throwaway etcd on 127.0.0.1:${client}`);
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
