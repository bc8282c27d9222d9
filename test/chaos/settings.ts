/** Timing every part of a chaos run agrees on. */

/** The harness runs etcd with --election-timeout=1000 (test/support/launch.ts). */
export const ELECTION_TIMEOUT_MS = 1000;

/**
 * Workers keep the library's default deadline per call. It bounds how late a write can leave a paused
 * process: a pause shorter than it lets the write go out after the resume, for etcd to refuse.
 */
export const CALL_TIMEOUT_MS = 5000;

/** Session TTL of the workers, seconds, unless --ttl says otherwise: failover in seconds, faults short. */
export const DEFAULT_TTL = 3;

/** A leader exists again within TTL + election timeout + 0.5 s + the elector's backoff cap (its TTL). */
export const recoveryBoundMs = (ttlMs: number): number => ttlMs + ELECTION_TIMEOUT_MS + 500 + ttlMs;
