/**
 * Throwaway etcd members as local processes on loopback, for the examples and the benchmark: the
 * harness's launcher (its process runtime, member flags, ports and etcd release), without the fault
 * proxies (clients talk to etcd itself) and without vitest or Docker.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { memberFlags } from "./etcd-flags.js";
import { DEFAULT_SERIES, binaryVersion, cachedBinaries } from "./etcd-release.js";
import { freePorts } from "./ports.js";
import { ProcessRuntime } from "./runtime-process.js";

/** ETCD_BIN, else the etcd 3.5 that .ci/fetch-etcd caches, else `etcd` on PATH (Debian bookworm's etcd-server: 3.4). */
function localBinary(): string {
  return process.env.ETCD_BIN || cachedBinaries(DEFAULT_SERIES)?.etcd || "etcd";
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
  stop(): Promise<void>;
}

// A process that ends without stop() leaves no data behind (runtime-process.ts kills the members).
const unstopped = new Set<string>();
process.once("exit", () => {
  for (const dir of unstopped) rmSync(dir, { recursive: true, force: true });
});

/** A cluster of `size` members on free loopback ports (one member: a single node). */
export async function startLocalCluster(size: number, log: (msg: string) => void): Promise<LocalCluster> {
  const binary = localBinary();
  const version = binaryVersion(binary);
  const dir = mkdtempSync(join(tmpdir(), "etcd-election-example-"));
  unstopped.add(dir);
  const token = randomBytes(4).toString("hex");
  const ports = await freePorts(2 * size);
  const url = (i: number): string => `http://127.0.0.1:${ports[i]}`;
  const initialCluster = Array.from({ length: size }, (_, i) => `m${i}=${url(2 * i + 1)}`).join(",");
  const members = Array.from({ length: size }, (_, i) => {
    const name = `m${i}`;
    const flags = memberFlags({
      name,
      dataDir: join(dir, name, "data"),
      listenClientUrl: url(2 * i),
      advertiseClientUrl: url(2 * i),
      listenPeerUrl: url(2 * i + 1),
      advertisePeerUrl: url(2 * i + 1),
      initialCluster,
      token,
    });
    const runtime = new ProcessRuntime(name, flags, join(dir, name), binary);
    const member: LocalMember = {
      name,
      endpoint: `127.0.0.1:${ports[2 * i]}`,
      kill: () => runtime.kill(),
      restart: () => runtime.restart(),
    };
    return { member, runtime };
  });
  const stop = async (): Promise<void> => {
    await Promise.allSettled(members.map((m) => m.runtime.kill()));
    rmSync(dir, { recursive: true, force: true });
    unstopped.delete(dir);
  };
  // Together: a member serves only once a quorum is up.
  try {
    await Promise.all(members.map((m) => m.runtime.start()));
  } catch (error) {
    await stop();
    throw error;
  }
  const endpoints = members.map((m) => m.member.endpoint);
  log(`started a throwaway etcd ${version} cluster of ${size} (${binary}) on ${endpoints.join(", ")}`);
  return { endpoints, dataDir: dir, members: members.map((m) => m.member), version, stop };
}
