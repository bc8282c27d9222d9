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

// Logged once etcd serves clients (it needs quorum for that). 3.5 logs both
// messages; 3.4 with --logger=zap only the second.
export const READY_LOG = /ready to serve client requests|serving client traffic insecurely/;
export const START_TIMEOUT_MS = 60_000;
export const OWNER_PID = process.env.ETCD_ELECTION_TEST_PID ?? String(process.pid);
