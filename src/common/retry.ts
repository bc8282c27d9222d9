import { ExponentialBackoff, type IBackoff } from "cockatiel";
import { raceAbort, sleep } from "./abort.js";
import { isTransient } from "../etcd/errors.js";
import type { Logger } from "./logger.js";

/**
 * A wait can outlast a passing etcd outage: reads (safe to repeat) that fail transiently are retried
 * with backoff until they succeed or `signal` aborts (the session's deadline aborts it if etcd stays
 * away too long). Other errors (no permission, a limit mismatch...) are final: retrying cannot help.
 */
export async function retryUntilAborted<T>(
  read: () => Promise<T>,
  signal: AbortSignal | undefined,
  logger: Logger,
): Promise<T> {
  let backoff: IBackoff<unknown> | undefined;
  for (let attempt = 1; ; attempt++) {
    try {
      return await raceAbort(read(), signal); // a stop does not wait for a slow read
    } catch (err) {
      signal?.throwIfAborted();
      if (!isTransient(err)) throw err;
      logger[attempt === 1 ? "warn" : "debug"]({ err, attempt }, "read failed; retrying while etcd is away");
      backoff = backoff ? backoff.next(undefined) : new ExponentialBackoff({ initialDelay: 50, maxDelay: 1000 }).next();
      await sleep(backoff.duration, signal);
    }
  }
}
