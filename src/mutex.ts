import { predecessorPolicy } from "./election.js";
import { runLocked, takeLock, type Lock, type LockOptions } from "./lock.js";
import { Primitive } from "./primitive.js";
import type { Session } from "./session.js";

const EMPTY = Buffer.alloc(0);

/**
 * A fair (FIFO by create revision) distributed mutex on `<name>/`, compatible with etcd's Go
 * `concurrency.Mutex` and `etcdctl lock`. Uncontended: one round trip to lock, one to unlock.
 */
export class Mutex extends Primitive {

  constructor(session: Session, name: string) {
    super(session, name, "mutex");
  }

  /** Waits for the lock. Rejects with LockTimeoutError after `timeoutMs`, or the abort reason. */
  async lock(options: LockOptions = {}): Promise<Lock> {
    return (await takeLock(this.session, this.name, "mutex", EMPTY, predecessorPolicy, options))!;
  }

  /** The lock if it is free now; undefined (leaving no key behind) when held elsewhere. */
  tryLock(): Promise<Lock | undefined> {
    return takeLock(this.session, this.name, "mutex", EMPTY, predecessorPolicy, { tryOnly: true });
  }

  /** Runs `fn` holding the lock; releases it either way; rejects with LockLostError if it was lost meanwhile. */
  async withLock<T>(fn: (lock: Lock) => Promise<T> | T, options: LockOptions = {}): Promise<T> {
    return runLocked(await this.lock(options), fn);
  }
}
