import { validateLimit } from "./common/validate.js";
import { LimitMismatchError } from "./errors.js";
import { LockPrimitive, runLocked, type Lock, type LockOptions } from "./lock.js";
import { semaphorePolicy, type QueueEntry, type QueuePolicy } from "./queue/policies.js";
import type { Session } from "./session.js";

/**
 * At most `limit` holders of `<name>/` at once, granted FIFO by create revision. The limit travels in
 * every permit key's value, so participants that disagree about it fail clearly instead of overfilling.
 * A waiter counts deletes ahead of it from its watch and re-reads only when its turn may have come.
 * One session holds at most one permit of a name at a time; local callers queue behind it.
 */
export class Semaphore extends LockPrimitive {
  /** How many may hold a permit at once. */
  readonly limit: number;
  readonly #value: Buffer;
  readonly #policy: QueuePolicy;

  constructor(session: Session, name: string, options: { limit: number }) {
    super(session, name, "semaphore");
    const limit = validateLimit((options as { limit?: unknown } | undefined)?.limit);
    this.limit = limit;
    this.#value = Buffer.from(JSON.stringify({ limit }));
    this.#policy = semaphorePolicy(limit, (entries) => checkLimits(name, limit, entries));
  }

  /** Waits for a permit. Rejects with LockTimeoutError after `timeoutMs`, or the abort reason. */
  acquire(options: LockOptions = {}): Promise<Lock> {
    return this.take(this.#value, this.#policy, options);
  }

  /** A permit if one is free now; undefined (leaving no key behind) otherwise. */
  tryAcquire(): Promise<Lock | undefined> {
    return this.tryTake(this.#value, this.#policy);
  }

  /** Runs `fn` holding a permit; releases it either way; rejects with LockLostError if it was lost meanwhile. */
  async withPermit<T>(fn: (permit: Lock) => Promise<T> | T, options: LockOptions = {}): Promise<T> {
    return runLocked(await this.acquire(options), fn);
  }
}

/** Every entry must carry our limit; LimitMismatchError names the first that does not. */
export function checkLimits(name: string, limit: number, entries: QueueEntry[]): void {
  for (const e of entries) {
    let theirs: unknown;
    try {
      theirs = (JSON.parse(e.value?.toString() ?? "") as { limit?: unknown }).limit;
    } catch {
      theirs = undefined;
    }
    if (theirs !== limit) {
      throw new LimitMismatchError(
        `semaphore "${name}": key ${e.key} was queued with limit ${JSON.stringify(theirs)}, this participant uses ${limit}`,
      );
    }
  }
}
