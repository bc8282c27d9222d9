/**
 * The lease's clock arithmetic, in milliseconds on the monotonic clock (design: Step down first).
 * Pure functions, unit-tested without etcd.
 */

/** Share of the TTL kept back for clock-rate drift between us and the etcd leader. */
const DRIFT_RATIO = 0.05;

/** The safety margin: the larger of 5% of the TTL (clock-rate drift) and `minMarginMs` (scheduling). */
export const safetyMarginMs = (ttlSeconds: number, minMarginMs: number): number =>
  Math.max(minMarginMs, Math.ceil(ttlSeconds * 1000 * DRIFT_RATIO));

/**
 * Until when the lease surely holds: etcd renewed it after the acknowledged keepalive was *sent*, so it
 * cannot expire it before that moment plus the TTL; we give up `marginMs` earlier.
 */
export const leaseDeadline = (ackedSentAt: number, ttlSeconds: number, marginMs: number): number =>
  ackedSentAt + ttlSeconds * 1000 - marginMs;

/** Go's client renews every TTL/3: two renewals can fail before the lease runs short. */
export const renewIntervalMs = (ttlSeconds: number): number => Math.max(100, (ttlSeconds * 1000) / 3);

/** How long an open stream may leave a keepalive unanswered before we replace it: TTL/6, 0.5 to 5 s. */
export const ackTimeoutMs = (ttlSeconds: number): number => Math.min(5000, Math.max(500, (ttlSeconds * 1000) / 6));
