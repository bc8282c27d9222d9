import { ExponentialBackoff, type IBackoff } from "cockatiel";
import { ElectionError } from "../errors.js";
import { sleep } from "./abort.js";

/**
 * A wait can outlast a passing etcd outage: reads (safe to repeat) are retried with backoff until they
 * succeed or `signal` aborts; the session's deadline aborts it if etcd stays away too long.
 */
export async function retryUntilAborted<T>(read: () => Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  let backoff: IBackoff<unknown> | undefined;
  for (;;) {
    try {
      return await read();
    } catch (err) {
      signal?.throwIfAborted();
      if (err instanceof ElectionError) throw err; // our own verdicts (e.g. a limit mismatch) are final
      backoff = backoff ? backoff.next(undefined) : new ExponentialBackoff({ initialDelay: 50, maxDelay: 1000 }).next();
      await sleep(backoff.duration, signal);
    }
  }
}
