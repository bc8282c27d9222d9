import { ExponentialBackoff, type IBackoff } from "cockatiel";
import { sleep } from "./abort.js";

/**
 * Every wait between tries in the library, by purpose. Each series is cockatiel's `ExponentialBackoff`
 * with its default decorrelated jitter: the first delay is below 1.4 x `initialDelay`, each later one
 * grows about twofold (jittered), none exceeds `maxDelay`. Delays are in milliseconds.
 *
 * cockatiel's `retry()` policy is not used for the loops: its wait ignores the abort signal (a stop would
 * sit out the delay) and runs on its own unmonitored timer; `retryWithBackoff` waits on ours.
 */
export interface BackoffBounds {
  readonly initialDelay: number;
  readonly maxDelay: number;
}

/** A unary call sent again, to the next endpoint, within its own deadline (etcd/connection.ts). */
export const callRetry: BackoffBounds = { initialDelay: 25, maxDelay: 500 };

/** Our key's removal, retried until etcd confirms it or the session ends (queue/release.ts). */
export const releaseRetry: BackoffBounds = { initialDelay: 50, maxDelay: 500 };

/** A read a wait or an observer depends on, retried through an outage until its signal aborts. */
export const readRetry: BackoffBounds = { initialDelay: 50, maxDelay: 1000 };

/** The session's watch stream, re-opened after it broke (etcd/watch-stream.ts). */
export const streamReopen: BackoffBounds = { initialDelay: 50, maxDelay: 1000 };

/**
 * A watch etcd canceled for a reason we do not know, made again after this long: a watch etcd keeps
 * refusing must not spin (etcd/watch-stream.ts).
 */
export const watchRemakeMs = 1000;

/**
 * Keepalives re-sent while they fail (lease/keeper.ts): at most half the keepalive interval, so a few
 * attempts fit before the deadline, and never more than a second.
 */
export const keepaliveRetry = (intervalMs: number): BackoffBounds => ({
  initialDelay: 50,
  maxDelay: Math.min(1000, intervalMs / 2),
});

/** A leader elector campaigning again after a failure: up to its TTL, the time a lost leader's key lives. */
export const campaignBackoff = (ttlSeconds: number): BackoffBounds => ({
  initialDelay: 200,
  maxDelay: ttlSeconds * 1000,
});

/** One series of delays under `bounds`: `next()` hands out the next, `reset()` starts over. */
export class Backoff {
  readonly bounds: BackoffBounds;
  readonly #factory: ExponentialBackoff<unknown>;
  #last: IBackoff<unknown> | undefined;

  constructor(bounds: BackoffBounds) {
    this.bounds = bounds;
    this.#factory = new ExponentialBackoff(bounds);
  }

  /** The next delay of the series, ms. */
  next(): number {
    this.#last = this.#last ? this.#last.next(undefined) : this.#factory.next();
    return this.#last.duration;
  }

  /** The delay `next()` last handed out (0 before the first). */
  get current(): number {
    return this.#last?.duration ?? 0;
  }

  /** A success: the next failure starts from the first delay again. */
  reset(): void {
    this.#last = undefined;
  }
}

export interface RetryOptions {
  /** Whether a failure is worth another try; any other failure is rethrown at once. */
  retryable: (err: unknown) => boolean;
  /** Ends the tries, the wait between them too, rejecting with its reason. */
  signal: AbortSignal | undefined;
  /** Hears each failure that is tried again (attempt counts from 1), to log it. */
  onRetry: (err: unknown, attempt: number) => void;
}

/**
 * Runs `attempt` until it succeeds, waiting a delay of `bounds` between tries; no limit on the count,
 * so `signal` must end it if the failures never do.
 */
export async function retryWithBackoff<T>(
  bounds: BackoffBounds,
  attempt: (attempt: number) => Promise<T>,
  { retryable, signal, onRetry }: RetryOptions,
): Promise<T> {
  const backoff = new Backoff(bounds);
  for (let n = 1; ; n++) {
    signal?.throwIfAborted();
    try {
      return await attempt(n);
    } catch (err) {
      signal?.throwIfAborted();
      if (!retryable(err)) throw err;
      onRetry(err, n);
      await sleep(backoff.next(), signal);
    }
  }
}
