import { setTimeout as sleep } from "node:timers/promises";

export interface WaitForOptions {
  /** Give up after this long (default 10 s). */
  timeoutMs?: number;
  /** Pause between attempts (default 100 ms). */
  intervalMs?: number;
  /** Names the condition in the timeout error. */
  description?: string;
}

type Truthy<T> = Exclude<T, false | null | undefined | 0 | "">;

/**
 * Polls `fn` until it returns a truthy value (which is returned) without
 * throwing. An attempt that hangs past the deadline does not hold waitFor up:
 * it times out with the last error or value seen.
 */
export async function waitFor<T>(
  fn: () => T | PromiseLike<T>,
  options: WaitForOptions = {},
): Promise<Truthy<Awaited<T>>> {
  const { timeoutMs = 10_000, intervalMs = 100, description = "condition" } = options;
  const deadline = Date.now() + timeoutMs;
  let last: string = "no attempt finished";
  for (;;) {
    const remaining = deadline - Date.now();
    try {
      const value: Awaited<T> = await withTimeout(Promise.resolve().then(fn), remaining);
      if (value) return value as Truthy<Awaited<T>>;
      last = `returned ${String(value)}`;
    } catch (error) {
      last = error instanceof TimeoutError ? last : `threw ${describe(error)}`;
    }
    if (Date.now() + intervalMs > deadline) break;
    await sleep(intervalMs);
  }
  throw new Error(`waitFor: ${description} not met within ${timeoutMs} ms (last attempt ${last})`);
}

class TimeoutError extends Error {}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError()), Math.max(0, ms));
  });
  // The losing attempt may reject later; nobody awaits it then.
  promise.catch(() => undefined);
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** Resolves with the signal's reason once it aborts (at once if it has), or rejects after `timeoutMs`. */
export function aborted(signal: AbortSignal, timeoutMs = 10_000): Promise<unknown> {
  if (signal.aborted) return Promise.resolve(signal.reason);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      reject(new Error(`signal not aborted within ${timeoutMs} ms`));
    }, timeoutMs);
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
