/**
 * Leader election, fenced locks and leader-watch on etcd. Metrics adapters are separate entry points:
 * `etcd-election/prometheus` and `etcd-election/opentelemetry`.
 *
 * Layout: src/'s top level holds only the public surface (this file and the files it exports from);
 * everything internal lives in a folder (design: The pieces).
 *
 * @module etcd-election
 */
export * from "./errors.js";
export { Session } from "./session.js";
export type { EtcdClient, SessionEvents, SessionOptions, SessionState } from "./session.js";
export type { Logger } from "./common/logger.js";
export { Election } from "./election.js";
export type { Leader } from "./leader.js";
export { Holding } from "./holding.js";
export { Term } from "./term.js";
export type { HandOverOptions } from "./term.js";
export { Lock } from "./lock.js";
export type { LockOptions } from "./lock.js";
export { Mutex } from "./mutex.js";
export { Semaphore } from "./semaphore.js";
export { RWLock } from "./rwlock.js";
export { LeaderElector } from "./leader-elector.js";
export type { LeaderElectorOptions, ElectorEvents, ElectorMetrics, ElectorState } from "./leader-elector.js";
export { healthHandler, healthPaths } from "./health.js";
export type { HealthHandler, HealthHandlerOptions, HealthSource, PrometheusRegistry } from "./health.js";
export { ShardedElector, shardOf } from "./sharded-elector.js";
export type { ShardedElectorOptions, ShardedElectorEvents, ShardedMetrics } from "./sharded-elector.js";
