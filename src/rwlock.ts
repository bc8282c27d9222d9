import { LockPrimitive, runLocked, type Lock, type LockOptions } from "./lock.js";
import { predecessorPolicy, READ, readerPolicy, WRITE } from "./queue/policies.js";
import type { Session } from "./session.js";

/**
 * Many readers or one writer on `<name>/`, FIFO by create revision: a waiting writer is not starved by
 * later readers (they queue behind it), and every wake is re-checked by a read (unlike etcd's recipe,
 * etcd #16221). The key's value says its mode; a key of unknown mode counts as a writer.
 * One session holds one key under a name: its local read and write calls take turns.
 */
export class RWLock extends LockPrimitive {
  constructor(session: Session, name: string) {
    super(session, name, "read-write lock");
  }

  /** A reader waits only for the writers queued before it. Rejects with LockTimeoutError after `timeoutMs`, or the abort reason. */
  readLock(options: LockOptions = {}): Promise<Lock> {
    return this.take(READ, readerPolicy, options);
  }

  /** A writer waits for everything queued before it. */
  writeLock(options: LockOptions = {}): Promise<Lock> {
    return this.take(WRITE, predecessorPolicy, options);
  }

  /** The read lock if no writer holds or waits before it now; undefined (leaving no key behind) otherwise. */
  tryReadLock(): Promise<Lock | undefined> {
    return this.tryTake(READ, readerPolicy);
  }

  /** The write lock if nothing holds or waits before it now; undefined (leaving no key behind) otherwise. */
  tryWriteLock(): Promise<Lock | undefined> {
    return this.tryTake(WRITE, predecessorPolicy);
  }

  /** Runs `fn` holding the read lock; releases it either way; rejects with LockLostError if it was lost meanwhile. */
  async withReadLock<T>(fn: (lock: Lock) => Promise<T> | T, options: LockOptions = {}): Promise<T> {
    return runLocked(await this.readLock(options), fn);
  }

  /** Runs `fn` holding the write lock; releases it either way; rejects with LockLostError if it was lost meanwhile. */
  async withWriteLock<T>(fn: (lock: Lock) => Promise<T> | T, options: LockOptions = {}): Promise<T> {
    return runLocked(await this.writeLock(options), fn);
  }
}
