import { InvalidArgumentError, LimitMismatchError } from "./errors.js";
import { runLocked, takeLock, type Lock, type LockOptions } from "./lock.js";
import type { QueueEntry, QueuePolicy } from "./queue.js";
import { Primitive } from "./primitive.js";
import type { Session } from "./session.js";

const MAX_LIMIT = 10_000;

/**
 * At most `limit` holders of `<name>/` at once, granted FIFO by create revision. The limit travels in
 * every permit key's value, so participants that disagree about it fail clearly instead of overfilling.
 * A waiter counts deletes ahead of it from its watch and re-reads only when its turn may have come.
 * One session holds at most one permit of a name at a time (rule 6); local callers queue behind it.
 */
export class Semaphore extends Primitive {
  readonly limit: number;
  readonly #value: Buffer;
  readonly #policy: QueuePolicy;

  constructor(session: Session, name: string, options: { limit: number }) {
    super(session, name, "semaphore");
    const limit = options?.limit;
    if (typeof limit !== "number" || !Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
      throw new InvalidArgumentError(`semaphore limit must be a whole number from 1 to ${MAX_LIMIT}`);
    }
    this.limit = limit;
    this.#value = Buffer.from(JSON.stringify({ limit }));
    this.#policy = {
      lookahead: limit,
      readValues: true,
      check: (entries) => this.#check(entries),
      blocking: (ahead) => (ahead.length < limit ? undefined : { keys: ahead, needed: ahead.length - limit + 1 }),
    };
  }

  /** Waits for a permit. Rejects with LockTimeoutError after `timeoutMs`, or the abort reason. */
  async acquire(options: LockOptions = {}): Promise<Lock> {
    return (await takeLock(this.session, this.name, "semaphore", this.#value, this.#policy, options))!;
  }

  /** A permit if one is free now; undefined (leaving no key behind) otherwise. */
  tryAcquire(): Promise<Lock | undefined> {
    return takeLock(this.session, this.name, "semaphore", this.#value, this.#policy, { tryOnly: true });
  }

  /** Runs `fn` holding a permit; releases it either way; rejects with LockLostError if it was lost meanwhile. */
  async withPermit<T>(fn: (permit: Lock) => Promise<T> | T, options: LockOptions = {}): Promise<T> {
    return runLocked(await this.acquire(options), fn);
  }

  #check(entries: QueueEntry[]): void {
    for (const e of entries) {
      let limit: unknown;
      try {
        limit = (JSON.parse(e.value?.toString() ?? "") as { limit?: unknown }).limit;
      } catch {
        limit = undefined;
      }
      if (limit !== this.limit) {
        throw new LimitMismatchError(
          `semaphore "${this.name}": key ${e.key} was queued with limit ${JSON.stringify(limit)}, this participant uses ${this.limit}`,
        );
      }
    }
  }
}
