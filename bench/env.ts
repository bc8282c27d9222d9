/** What every part of the benchmark works with: the etcd it measures against, clients, sizes. */
import { Etcd3 } from "etcd3";

export interface BenchEnv {
  /** Small sizes, same code paths (CI). */
  readonly quick: boolean;
  /** Endpoints the clients talk to. */
  readonly endpoints: string[];
  /** The member whose /metrics counts RPCs and streams (the one the clients talk to). */
  readonly metricsEndpoint: string;
  /** A fresh etcd3 client on `endpoints`; closed when the benchmark ends. */
  client(): Etcd3;
  /** A key prefix no other part of this run uses. */
  prefix(what: string): string;
  /** Progress, on stderr. */
  log(message: string): void;
  /** Closes every client made so far. */
  closeClients(): void;
}

export function makeEnv(options: {
  quick: boolean;
  endpoints: string[];
  metricsEndpoint: string;
  log: (m: string) => void;
  run: string;
}): BenchEnv {
  const clients: Etcd3[] = [];
  let n = 0;
  return {
    quick: options.quick,
    endpoints: options.endpoints,
    metricsEndpoint: options.metricsEndpoint,
    client: () => {
      const c = new Etcd3({ hosts: options.endpoints });
      clients.push(c);
      return c;
    },
    prefix: (what) => `bench/${options.run}/${what}-${n++}`,
    log: options.log,
    closeClients: () => {
      for (const c of clients.splice(0)) c.close();
    },
  };
}
