import { ExponentialBackoff, type IBackoff } from "cockatiel";
import { raceAbort, sleep } from "./abort.js";

/**
 * A wait can outlast a passing etcd outage: reads (safe to repeat) that fail in a way etcd3 calls
 * transient are retried with backoff until they succeed or `signal` aborts (the session's deadline
 * aborts it if etcd stays away too long). Other errors are final.
 */
export async function retryUntilAborted<T>(read: () => Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  let backoff: IBackoff<unknown> | undefined;
  for (;;) {
    try {
      return await raceAbort(read(), signal); // a stop does not wait for a slow read
    } catch (err) {
      signal?.throwIfAborted();
      if (!isRecoverable(err)) throw err; // permission denied, a limit mismatch...: retrying cannot help
      backoff = backoff ? backoff.next(undefined) : new ExponentialBackoff({ initialDelay: 50, maxDelay: 1000 }).next();
      await sleep(backoff.duration, signal);
    }
  }
}

/**
 * Transient: etcd3 marks them (unavailable, deadline exceeded...) with a symbol named RecoverableError;
 * and while a member's circuit breaker is open, etcd3 fails calls to it with cockatiel's
 * BrokenCircuitError (with one endpoint, that is every call for a while after a restart).
 */
function isRecoverable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if ((err as { isBrokenCircuitError?: unknown }).isBrokenCircuitError === true) return true;
  return Object.getOwnPropertySymbols(err).some((s) => s.description === "RecoverableError");
}
