/**
 * etcd's own view, from a member's /metrics (its client URL serves them over HTTP): RPCs handled by
 * method, streams open, watchers. The benchmark counts with these, not with the library's counters.
 */
import { metricsAt } from "../test/support/metrics.js";

export type Samples = Map<string, number>;

/** Every sample of `/metrics` at `endpoint` ("host:port"); a member busy with 10,000 holders may be slow to answer. */
export const scrape = (endpoint: string): Promise<Samples> => metricsAt(endpoint, 10_000);

/** Sum of `metric` over the samples whose labels include every one of `labels` (e.g. `grpc_method="Txn"`). */
export function total(samples: Samples, metric: string, ...labels: string[]): number {
  let sum = 0;
  for (const [name, value] of samples) {
    if (name !== metric && !name.startsWith(`${metric}{`)) continue;
    if (labels.every((l) => name.includes(l))) sum += value;
  }
  return sum;
}

/** The unary methods the library and etcd3 use. */
export const UNARY = ["Range", "Put", "DeleteRange", "Txn", "LeaseGrant", "LeaseRevoke", "LeaseTimeToLive"] as const;
export const STREAMS = ["LeaseKeepAlive", "Watch"] as const;

export interface Counts {
  /** Unary RPCs handled, by method. */
  rpcs: Record<string, number>;
  /** Streams opened, by method. */
  opened: Record<string, number>;
}

/** RPCs handled and streams opened between two scrapes, divided by `per`. */
export function delta(before: Samples, after: Samples, per = 1): Counts {
  const rpcs: Record<string, number> = {};
  for (const m of UNARY) {
    const d =
      total(after, "grpc_server_handled_total", `grpc_method="${m}"`) -
      total(before, "grpc_server_handled_total", `grpc_method="${m}"`);
    if (d !== 0) rpcs[m] = d / per;
  }
  const opened: Record<string, number> = {};
  for (const m of STREAMS) {
    const d =
      total(after, "grpc_server_started_total", `grpc_method="${m}"`) -
      total(before, "grpc_server_started_total", `grpc_method="${m}"`);
    if (d !== 0) opened[m] = d / per;
  }
  return { rpcs, opened };
}

/** What etcd holds open: keepalive and watch streams (started − handled), and watchers (its gauge). */
export interface Streams {
  keepAliveStreams: number;
  watchStreams: number;
  watchers: number;
}

export function openNow(samples: Samples): Streams {
  const open = (m: string): number =>
    total(samples, "grpc_server_started_total", `grpc_method="${m}"`) -
    total(samples, "grpc_server_handled_total", `grpc_method="${m}"`);
  return {
    keepAliveStreams: open("LeaseKeepAlive"),
    watchStreams: open("Watch"),
    watchers: total(samples, "etcd_debugging_mvcc_watcher_total"),
  };
}

/** "Txn 1, Range 1" (per operation, rounded to 2 decimals); "–" for nothing. */
export function describeCounts(c: Counts): string {
  const parts = Object.entries(c.rpcs).map(([m, n]) => `${m} ${round(n)}`);
  for (const [m, n] of Object.entries(c.opened)) parts.push(`${m} stream ${round(n)}`);
  return parts.length ? parts.join(", ") : "–";
}

/** Unary RPCs in all. */
export const rpcTotal = (c: Counts): number => Object.values(c.rpcs).reduce((a, b) => a + b, 0);

const round = (n: number): string => String(Math.round(n * 100) / 100);

/**
 * Counts what `op` costs in etcd: runs it `times` times between two scrapes. Run alone (not
 * interleaved), so each path's RPCs are its own; background traffic of open sessions is keepalives
 * (stream messages, not counted here).
 */
export async function countRpcs(endpoint: string, times: number, op: (i: number) => Promise<void>): Promise<Counts> {
  const before = await scrape(endpoint);
  for (let i = 0; i < times; i++) await op(i);
  const after = await scrape(endpoint);
  return delta(before, after, times);
}

/** Stream traffic between two scrapes: what the counts of RPCs and streams opened do not show. */
export interface StreamTraffic {
  /** Keepalive requests received on LeaseKeepAlive streams (one per renewal a client sends). */
  keepalives: number;
  /** Leases renewed, as etcd's leader counts them. */
  renewals: number;
  /** Watch events delivered to watchers (etcd_debugging_mvcc_events_total: each event once per watcher). */
  watchEvents: number;
  /** Watch responses sent (a response can carry several events; creations and cancels are responses too). */
  watchResponses: number;
}

export function traffic(before: Samples, after: Samples): StreamTraffic {
  const d = (metric: string, ...labels: string[]): number =>
    total(after, metric, ...labels) - total(before, metric, ...labels);
  return {
    keepalives: d("grpc_server_msg_received_total", 'grpc_method="LeaseKeepAlive"'),
    renewals: d("etcd_debugging_lease_renewed_total"),
    watchEvents: d("etcd_debugging_mvcc_events_total"),
    watchResponses: d("grpc_server_msg_sent_total", 'grpc_method="Watch"'),
  };
}
