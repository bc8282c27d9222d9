/** The harness's own clients and health probes, separate from the clients tests make. */
import { noop } from "cockatiel";
import { Etcd3, type IOptions } from "etcd3";

export const SERVE_TIMEOUT_MS = 30_000;
export const PROBE_DEADLINE_MS = 2_000;

// After a fault heals tests want the connection back quickly; grpc-js's
// default reconnect backoff grows to 2 minutes.
export const FAST_RECONNECT = { "grpc.initial_reconnect_backoff_ms": 100, "grpc.max_reconnect_backoff_ms": 1_000 };

export function deadline(ms: number): { deadline: Date } {
  return { deadline: new Date(Date.now() + ms) };
}

/** Harness-internal client: no retries or circuit breakers, so probes see each failure as it is. */
export function probeClient(hosts: string[], options: Partial<IOptions> = {}): Etcd3 {
  return new Etcd3({
    ...options,
    hosts,
    grpcOptions: FAST_RECONNECT,
    faultHandling: { host: () => noop, global: noop },
  });
}

export async function servesLinearizableGet(client: Etcd3): Promise<boolean> {
  await client.get("harness/health").options(deadline(PROBE_DEADLINE_MS));
  return true;
}

export const hexId = (decimal: string): string => BigInt(decimal).toString(16);
