import { withTimeout } from "./common/abort.js";
import { validateSignal, validateTimeout } from "./common/validate.js";
import { LockLostError, LockTimeoutError } from "./errors.js";
import { Holding } from "./holding.js";
import { acquire, type QueuePolicy, type Ticket } from "./queue.js";
import type { Session } from "./session.js";

export interface LockOptions {
  /** Abort to give up waiting: our queue key is removed and the call rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Give up after this many milliseconds with LockTimeoutError (our queue key is removed). */
  timeoutMs?: number;
}

/** A held mutex, read or write lock, or semaphore permit. */
export class Lock extends Holding {
  /** @internal */
  constructor(session: Session, ticket: Ticket, leaveLine: () => void) {
    super(session, ticket, (message, cause) => new LockLostError(`lock lost: ${message}`, { cause }), leaveLine);
  }

  /** Guarded delete: never removes a newer holder's key (etcd #22082). Idempotent. */
  unlock(): Promise<void> {
    return this.release();
  }
}

/**
 * What every lock kind does to take `name`: wait in this session's local line for the name (rule 6),
 * then in etcd's queue under `policy`, within one deadline; `tryOnly` gives up at once instead.
 */
export async function takeLock(
  session: Session,
  name: string,
  kind: string,
  value: Buffer,
  policy: QueuePolicy,
  options: LockOptions & { tryOnly?: boolean },
): Promise<Lock | undefined> {
  const timeoutMs = validateTimeout(options.timeoutMs, "timeoutMs");
  const { signal, dispose } = withTimeout(
    validateSignal(options.signal),
    timeoutMs,
    () => new LockTimeoutError(`${kind} "${name}" not acquired within ${timeoutMs} ms`),
  );
  try {
    signal.throwIfAborted();
    session.assertUsable();
    const line = session.line(name, kind);
    const leave = options.tryOnly ? line.tryEnter() : await line.enter(signal);
    if (!leave) return undefined;
    try {
      const ticket = await acquire(session, name, value, policy, {
        signal,
        tryOnly: options.tryOnly,
        vanished: (m) => new LockLostError(`${kind} not acquired: ${m}`),
      });
      if (!ticket) {
        leave();
        return undefined;
      }
      return new Lock(session, ticket, leave);
    } catch (err) {
      leave();
      throw err;
    }
  } finally {
    dispose();
  }
}

/** Runs `fn` under `lock`, releases it on both outcomes, and never reports success for a lost lock. */
export async function runLocked<T>(lock: Lock, fn: (lock: Lock) => Promise<T> | T): Promise<T> {
  try {
    const result = await fn(lock);
    if (lock.signal.aborted) {
      throw new LockLostError("lock lost while the critical section ran", { cause: lock.signal.reason });
    }
    return result;
  } finally {
    await lock.release();
  }
}
