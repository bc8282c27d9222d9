import { withTimeout } from "./common/abort.js";
import { validateSignal, validateTimeout } from "./common/validate.js";
import { assertUsable, type SessionContext } from "./session/context.js";
import { LockLostError, LockTimeoutError } from "./errors.js";
import { Holding } from "./holding.js";
import { Primitive } from "./queue/primitive.js";
import type { QueuePolicy } from "./queue/policies.js";
import { acquire, type Ticket } from "./queue/queue.js";

/** How long a lock call may wait. */
export interface LockOptions {
  /** Abort to give up waiting: our queue key is removed and the call rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Give up after this many milliseconds with LockTimeoutError (our queue key is removed). */
  timeoutMs?: number;
}

/** A held mutex, read or write lock, or semaphore permit. */
export class Lock extends Holding {
  private constructor(ctx: SessionContext, ticket: Ticket, leaveLine: () => void) {
    super(ctx, ticket, (message, cause) => new LockLostError(`lock lost: ${message}`, { cause }), leaveLine);
  }

  /** @internal */
  static of(ctx: SessionContext, ticket: Ticket, leaveLine: () => void): Lock {
    return new Lock(ctx, ticket, leaveLine);
  }

  /**
   * Guarded delete: never removes a newer holder's key (etcd #22082). Resolves once etcd confirmed the
   * key gone (retrying through outages), or the session ended. Idempotent.
   */
  unlock(): Promise<void> {
    return this.release();
  }
}

/**
 * What every lock kind does to take its name: wait in the session's local line for the name (one key
 * per name per session), then in etcd's queue under a policy, within one deadline.
 */
export abstract class LockPrimitive extends Primitive {
  /** @internal Waits for the lock; rejects with LockTimeoutError after `timeoutMs`, or the abort reason. */
  protected async take(value: Buffer, policy: QueuePolicy, options: LockOptions): Promise<Lock> {
    const timeoutMs = validateTimeout(options.timeoutMs, "timeoutMs");
    const given = validateSignal(options.signal);
    const { signal, dispose } = withTimeout(
      given,
      timeoutMs,
      () => new LockTimeoutError(`${this.kind} "${this.name}" not acquired within ${timeoutMs} ms`),
    );
    try {
      signal?.throwIfAborted();
      assertUsable(this.context);
      const line = this.context.names.line(this.name, this.kind);
      const leave = line.tryEnter() ?? (await line.enter(signal));
      return await this.#inLine(leave, async () =>
        Lock.of(
          this.context,
          await acquire(this.context, this.name, value, policy, { signal, vanished: this.#vanished }),
          leave,
        ),
      );
    } finally {
      dispose();
    }
  }

  /** @internal The lock if it is free now; undefined (leaving no key behind) when held elsewhere. */
  protected async tryTake(value: Buffer, policy: QueuePolicy): Promise<Lock | undefined> {
    assertUsable(this.context);
    const leave = this.context.names.line(this.name, this.kind).tryEnter();
    if (!leave) return undefined;
    return this.#inLine(leave, async () => {
      const ticket = await acquire(this.context, this.name, value, policy, { vanished: this.#vanished, ifFree: true });
      if (ticket) return Lock.of(this.context, ticket, leave);
      leave();
      return undefined;
    });
  }

  readonly #vanished = (message: string): Error => new LockLostError(`${this.kind} not acquired: ${message}`);

  /** Runs `take` holding the name's local line, leaving the line if it fails (making the hold included). */
  async #inLine<T>(leave: () => void, take: () => Promise<T>): Promise<T> {
    try {
      return await take();
    } catch (err) {
      leave();
      throw err;
    }
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
