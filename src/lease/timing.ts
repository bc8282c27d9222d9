import type { Stamp } from "../common/clock.js";

/**
 * The lease's clock arithmetic, in milliseconds (design: Step down first). Pure functions, unit-tested
 * without etcd.
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

/**
 * Time left before the deadline, by whichever clock ran further since the acknowledged keepalive was
 * sent: the monotonic clock stands still while the system is suspended (or the VM frozen), the wall
 * clock does not. A wall clock stepped back only lengthens its own count, and the shorter one counts,
 * so it never extends the deadline.
 */
export const leaseRemainingMs = (ackedSentAt: Stamp, at: Stamp, ttlSeconds: number, marginMs: number): number =>
  Math.min(
    leaseDeadline(ackedSentAt.mono, ttlSeconds, marginMs) - at.mono,
    leaseDeadline(ackedSentAt.wall, ttlSeconds, marginMs) - at.wall,
  );

/** Time from `since` to `at`, by whichever clock ran further. */
export const elapsedMs = (since: Stamp, at: Stamp): number => Math.max(at.mono - since.mono, at.wall - since.wall);

/** Go's client renews every TTL/3: two renewals can fail before the lease runs short. */
export const renewIntervalMs = (ttlSeconds: number): number => Math.max(100, (ttlSeconds * 1000) / 3);

/** How long an open stream may leave a keepalive unanswered before we replace it: TTL/6, 0.5 to 5 s. */
export const ackTimeoutMs = (ttlSeconds: number): number => Math.min(5000, Math.max(500, (ttlSeconds * 1000) / 6));
