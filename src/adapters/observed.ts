import type { ElectionError } from "../errors.js";
import type { ElectorEvents, ElectorMetrics, ElectorState } from "../leader-elector.js";
import type { SessionState } from "../session.js";

/**
 * What a metrics adapter reads of an elector: its events and `metrics()`. A shape rather than a class, so
 * an elector from the other build (ESM or CJS) fits too, and so does a `ShardedElector`, reported as a
 * summary: leader while it owns at least one shard, its shard terms counted as terms.
 */
export interface ObservedElector {
  /** The election's (or group's) name: the `name` label. */
  readonly name: string;
  /** Whether it leads (a sharded elector: owns at least one shard). */
  isLeader(): boolean;
  /** Its metrics snapshot. */
  metrics(): ElectorMetrics;
  /** A term began (a sharded elector: a shard's term). */
  on(event: "elected", listener: ElectorEvents["elected"]): unknown;
  /** A failure was recorded. */
  on(event: "failure", listener: ElectorEvents["failure"]): unknown;
  /** A keepalive was acknowledged. */
  on(event: "renewed", listener: ElectorEvents["renewed"]): unknown;
  /** Removes a listener `on` added. */
  off(event: "elected", listener: ElectorEvents["elected"]): unknown;
  /** Removes a listener `on` added. */
  off(event: "failure", listener: ElectorEvents["failure"]): unknown;
  /** Removes a listener `on` added. */
  off(event: "renewed", listener: ElectorEvents["renewed"]): unknown;
}

// Written as records so that a state added to the union fails to compile here until it is listed.
const electorStates: Record<ElectorState, true> = {
  idle: true,
  campaigning: true,
  leading: true,
  stopping: true,
  stopped: true,
};
const sessionStates: Record<SessionState, true> = { connected: true, suspended: true, lost: true, closed: true };

/** Every state an elector can be in: one series each, 1 for the current state (the Prometheus enum idiom). */
export const ELECTOR_STATES = Object.keys(electorStates) as ElectorState[];
/** Every state of the elector's session; all 0 between sessions. */
export const SESSION_STATES = Object.keys(sessionStates) as SessionState[];

/** The user's callback threw (counted apart from failures to reach etcd, as `metrics()` does). */
export function isWorkFailure(error: ElectionError): boolean {
  return error.code === "WORK_FAILED";
}

/** Histogram buckets, in seconds. A campaign can wait for as long as another process leads. */
export const CAMPAIGN_WAIT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600];
/** A keepalive's round trip: milliseconds on a healthy cluster, seconds when etcd struggles. */
export const ROUND_TRIP_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
