/** How a member's etcd server runs: runtime-docker.ts or runtime-process.ts. */

/** One member's etcd server, as a container or a local process. */
export interface Runtime {
  /** First start; resolves once etcd logs that it serves (needs quorum). */
  start(): Promise<void>;
  pause(): Promise<void>;
  unpause(): Promise<void>;
  kill(): Promise<void>;
  /** Start again after kill(); same data and ports. The caller waits until it serves. */
  restart(): Promise<void>;
  remove(): Promise<void>;
}

// Logged once etcd serves clients (it needs quorum for that). With --logger=zap
// 3.4 and 3.5 both log this as the client listener starts serving; 3.5 logs
// "ready to serve client requests" just before (before gRPC serves), 3.4 not at all.
export const READY_LOG = /serving client traffic (?:in)?securely/;
export const START_TIMEOUT_MS = 60_000;
export const OWNER_PID = process.env.ETCD_ELECTION_TEST_PID ?? String(process.pid);
