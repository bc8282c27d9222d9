import { LockPrimitive, runLocked, type Lock, type LockOptions } from "./lock.js";
import { predecessorPolicy } from "./queue/policies.js";
import type { Session } from "./session.js";

const EMPTY = Buffer.alloc(0);

/**
 * A fair (FIFO by create revision) distributed mutex on `<name>/`, compatible with etcd's Go
 * `concurrency.Mutex` and `etcdctl lock`. Uncontended: one round trip to lock, one to unlock.
 */
export class Mutex extends LockPrimitive {
  constructor(session: Session, name: string) {
    super(session, name, "mutex");
  }

  /** Waits for the lock. Rejects with LockTimeoutError after `timeoutMs`, or the abort reason. */
  lock(options: LockOptions = {}): Promise<Lock> {
    return this.take(EMPTY, predecessorPolicy, options);
  }

  /** The lock if it is free now; undefined (leaving no key behind) when held elsewhere. */
  tryLock(): Promise<Lock | undefined> {
    return this.tryTake(EMPTY, predecessorPolicy);
  }

  /** Runs `fn` holding the lock; releases it either way; rejects with LockLostError if it was lost meanwhile. */
  async withLock<T>(fn: (lock: Lock) => Promise<T> | T, options: LockOptions = {}): Promise<T> {
    return runLocked(await this.lock(options), fn);
  }
}
