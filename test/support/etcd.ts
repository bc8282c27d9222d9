/**
 * The etcd test harness: single nodes and clusters on loopback, each member
 * behind a client proxy and a peer proxy so tests can inject faults.
 *
 * Backends (chosen by global-setup.ts through ETCD_BACKEND):
 * - docker (default): one container per member, host networking, image from etcdImage();
 * - process: the cached binary of ETCD_VERSION (or ETCD_BINARY, else /usr/bin/etcd) as child processes.
 * With ETCD_ENDPOINTS set, tests run against that external cluster instead and
 * fault injection is unavailable.
 *
 * Files: api.ts (EtcdEnv, EtcdMember), launch.ts (members behind proxies),
 * etcd-flags.ts (a member's etcd flags), etcd-env.ts, etcd-member.ts,
 * runtime*.ts (docker / process), local-cluster.ts (the same members without
 * proxies or vitest, for the examples and the benchmark),
 * probe.ts (harness clients), rafthttp-sender.ts (peer partitions),
 * external-endpoints.ts (ETCD_ENDPOINTS). Which etcd release, and its etcdctl:
 * etcd-release.ts, select-etcd.ts (global setup), etcd-image.ts, docker-cli.ts.
 */
import type { EtcdEnv } from "./api.js";
import { Env } from "./etcd-env.js";
import { EXTERNAL_ENDPOINTS, faultsUnavailableReason } from "./external-endpoints.js";
import { launch, type LaunchOptions } from "./launch.js";

export type { EtcdEnv, EtcdMember } from "./api.js";
export { faultsUnavailableReason } from "./external-endpoints.js";

/**
 * A single node, or the external cluster when ETCD_ENDPOINTS is set. A secured one (`options`: TLS,
 * authentication, more flags) is always the harness's own.
 */
export async function startEtcd(options?: LaunchOptions): Promise<EtcdEnv> {
  if (options) {
    if (faultsUnavailableReason) throw new Error(`startEtcd(options): ${faultsUnavailableReason}`);
    return launch(1, options);
  }
  if (EXTERNAL_ENDPOINTS.length > 0) {
    const env = new Env([...EXTERNAL_ENDPOINTS], []);
    await env.waitHealthy();
    return env;
  }
  return launch(1);
}

/** A cluster of `size` members (default 3); not available with ETCD_ENDPOINTS. */
export async function startCluster(size = 3, options: LaunchOptions = {}): Promise<EtcdEnv> {
  if (faultsUnavailableReason) throw new Error(`startCluster(): ${faultsUnavailableReason}`);
  return launch(size, options);
}

export type { LaunchOptions } from "./launch.js";
