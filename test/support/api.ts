/** What tests get from startEtcd() and startCluster(). */
import type { Etcd3, IOptions } from "etcd3";
import type { Security } from "./security.js";
import type { TcpProxy } from "./tcp-proxy.js";

export interface EtcdMember {
  readonly name: string;
  /** "127.0.0.1:port" through the client proxy; tests use this. */
  readonly clientUrl: string;
  /** "127.0.0.1:port" of etcd itself, bypassing the proxy. */
  readonly directClientUrl: string;
  /** client<->member partition: cut()/blackhole()/delay()/open(). */
  readonly clientProxy: TcpProxy;
  pause(): Promise<void>;
  unpause(): Promise<void>;
  /** SIGKILL. */
  kill(): Promise<void>;
  /** Start again (after kill, or kills first) with the same data dir and ports; resolves once it serves linearizable reads. */
  restart(): Promise<void>;
  /** Partition this member from its peers (both directions). Cluster only. */
  isolate(): Promise<void>;
  heal(): Promise<void>;
  /** Hex member id, as etcdctl prints it. */
  memberId(): Promise<string>;
}

export interface EtcdEnv {
  /** Every member's clientUrl (through the proxies). */
  readonly endpoints: string[];
  /** [] with ETCD_ENDPOINTS. */
  readonly members: EtcdMember[];
  /**
   * A new client (default hosts = endpoints), closed by close(). On a secured etcd it carries the test
   * CA's client certificate and root's credentials unless `options` say otherwise.
   */
  client(options?: Partial<IOptions>, hosts?: string[]): Etcd3;
  /** How the members are secured (TLS material, authentication), as launched. */
  readonly security: Security;
  /** A unique key prefix, "t/<random>/<label>/". */
  prefix(label?: string): string;
  /** The current raft leader (waits up to 15 s for one). */
  leader(): Promise<EtcdMember>;
  /** Physically compacts at the current revision and returns that revision. */
  compact(): Promise<string>;
  /** Waits until every member that is neither killed nor paused answers a linearizable get. */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /** Closes clients and proxies, removes containers / processes and data. */
  close(): Promise<void>;
}
