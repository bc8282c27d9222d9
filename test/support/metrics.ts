/** etcd's own Prometheus metrics, read from a member's /metrics endpoint (bypassing the proxy). */
import type { EtcdMember } from "./api.js";

/** Every sample of the member's `/metrics` as "name{labels}" -> value. */
export function etcdMetrics(member: EtcdMember): Promise<Map<string, number>> {
  return metricsAt(member.directClientUrl);
}

/** Every sample of `/metrics` at `endpoint` ("host:port", etcd's client URL serves them over HTTP). */
export async function metricsAt(endpoint: string, timeoutMs = 5000): Promise<Map<string, number>> {
  const res = await fetch(`http://${endpoint}/metrics`, { signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  const samples = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const space = line.lastIndexOf(" ");
    samples.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return samples;
}

/** Unary RPCs of `method` ("Range", "Txn", "Put"...) etcd has handled so far. */
export async function handledRpcs(member: EtcdMember, method: string): Promise<number> {
  let total = 0;
  for (const [name, value] of await etcdMetrics(member)) {
    if (name.startsWith("grpc_server_handled_total{") && name.includes(`grpc_method="${method}"`)) total += value;
  }
  return total;
}

/** Watchers etcd holds now (every watch of every client). */
export async function watchersInEtcd(member: EtcdMember): Promise<number> {
  return (await etcdMetrics(member)).get("etcd_debugging_mvcc_watcher_total") ?? Number.NaN;
}
