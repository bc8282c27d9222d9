import type { ComparatorBuilder, ITxnResponse } from "etcd3";
import { onAbort } from "./common/abort.js";
import type { SessionContext } from "./session/context.js";
import { builderContents } from "./etcd/internals.js";
import { range } from "./etcd/kv.js";
import type { KeyEvent } from "./etcd/key-watch.js";
import type { ElectionError } from "./errors.js";
import { removeOwnKey } from "./queue/release.js";
import type { Ticket } from "./queue/queue.js";

/** How a hold reports its end: NotLeaderError for a term, LockLostError for a lock. */
export type LossError = (message: string, cause?: unknown) => ElectionError;

/**
 * What a term and a lock have in common: a key we created, its create revision as the fencing token,
 * a signal that aborts the moment the hold may be gone, guarded writes, and a confirmed release.
 */
export abstract class Holding {
  /** The key in etcd (relative to the client's namespace). */
  readonly key: string;
  /** Fencing token: the create revision of `key`. Successive holders of a name get increasing tokens. */
  readonly token: bigint;
  readonly #ctx: SessionContext;
  readonly #lost: LossError;
  /**
   * Made when `signal` is first read: most holds are released without anyone reading it, and an
   * AbortController (and the loss error with its stack) cost more than the rest of a lock's CPU.
   */
  #controller: AbortController | undefined;
  /** Set once the hold ended: why (the error itself is made on first use, see `#reason`). */
  #ended: { message: string; reason: ElectionError | undefined } | undefined;
  readonly #unwatch: () => void;
  readonly #undoSession: () => void;
  readonly #leaveLine: () => void;
  #value: Buffer;
  #releasing: Promise<void> | undefined;
  /** Ended locally by `endLocally()`: the local line is left when `release()` removed the key. */
  #leaveOnRelease = false;

  /** @internal */
  protected constructor(ctx: SessionContext, ticket: Ticket, lost: LossError, leaveLine: () => void) {
    this.#ctx = ctx;
    this.key = ticket.key;
    this.token = ticket.createRevision;
    this.#value = ticket.value;
    this.#lost = lost;
    this.#leaveLine = leaveLine;
    // The lease may have been lost since the win was confirmed (something else checked its clock in
    // between): never hand out a hold that is gone already (design: Re-check after waiting). Its key
    // goes with the lease; the next local contender gets in.
    ctx.lease.check();
    if (ctx.lease.signal.aborted) {
      leaveLine();
      throw ctx.lease.signal.reason;
    }
    // Off the hot path: the session's shared watch of its own key (created on first use, from the
    // revision our turn was confirmed at) tells us of anything after that revision.
    this.#unwatch = ctx.ownKeys.subscribe(this.key, {
      fromRevision: ticket.revision,
      event: (e) => this.#onEvent(e),
      resync: () => void this.#recheck(),
      // Nothing could tell us the hold ended: it may have. Our key is likely still there: as a release.
      denied: (err) => void this.#release(err.message, err),
    });
    this.#undoSession = onAbort(ctx.lease.signal, (reason) => this.#end(lost("lost with the session", reason)));
  }

  /**
   * Aborts the moment this hold may no longer be valid: released, session lost, key deleted or replaced.
   * A signal you keep flips only when this process gets to run: after a pause (SIGSTOP, a long GC) it may
   * still read "not aborted" for a moment. Right before an unfenced act, call `assertHeld()`.
   */
  get signal(): AbortSignal {
    this.#ctx.lease.check(); // a passed deadline is noticed before anyone reads the signal
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#ended) this.#controller.abort(this.#reason(this.#ended));
    }
    return this.#controller.signal;
  }

  /**
   * Throws the reason (NotLeaderError, LockLostError) if the hold may be gone, reading the clocks now
   * (monotonic and wall): for the moment right before a side effect that fencing cannot protect. Only
   * fencing (`txn()`, or the token checked by your storage) protects a write already in flight.
   */
  assertHeld(): void {
    const signal = this.signal;
    if (signal.aborted) throw signal.reason;
  }

  /** @internal The value of our key (the candidate value of a term, as last proclaimed). */
  protected get currentValue(): Buffer {
    return this.#value;
  }

  /** @internal */
  protected set currentValue(value: Buffer) {
    this.#value = value;
  }

  /** @internal */
  protected get context(): SessionContext {
    return this.#ctx;
  }

  /**
   * An etcd3 transaction builder guarded by `Create(key) == token`: it commits only while this hold is
   * still ours in etcd. When the guard is what failed, `commit()` rejects with the loss error rather
   * than resolving `{ succeeded: false }`, and none of the caller's operations ran (not even its
   * `.else()`); it also rejects without sending once the hold may be gone. The caller's own comparisons
   * decide between its `.then()` and `.else()` as usual. It is sent once: a transaction of yours is not
   * ours to repeat (design: Fencing; Safe to retry).
   */
  txn(): ComparatorBuilder {
    const builder = this.#ctx.client.if(this.key, "Create", "==", this.token.toString());
    builder.commit = async (): Promise<ITxnResponse> => {
      this.assertHeld();
      const { compare, success, failure, callOptions } = await builderContents(builder);
      const [guard, ...theirs] = compare;
      const deadline = callOptions?.deadline;
      const timeoutMs =
        deadline === undefined ? this.#ctx.callTimeoutMs : Math.max(0, new Date(deadline).getTime() - Date.now());
      // The caller's transaction runs nested inside ours, and only if our guard holds.
      const res = await this.#ctx.conn.call<ITxnResponse>(
        "KV",
        "txn",
        { compare: [guard!], success: [{ request_txn: { compare: theirs, success, failure } }], failure: [] },
        { timeoutMs, idempotent: false, what: `guarded transaction of ${this.key}` },
      );
      const inner = res.succeeded ? res.responses[0]?.response_txn : undefined;
      if (!inner) {
        const err = this.#lost("guarded transaction refused by etcd: the key is gone or belongs to a newer holder");
        this.#end(err);
        throw err;
      }
      return { ...inner, header: res.header };
    };
    return builder;
  }

  /**
   * Aborts `signal` and deletes our key if it is still ours (never a newer holder's). Resolves once etcd
   * confirmed the key gone, or the session ended (its lease takes the key); in between the delete is
   * retried with backoff. The next local contender for the name gets in only after that. Idempotent.
   */
  release(): Promise<void> {
    return this.#release("released");
  }

  /**
   * Ends the hold and removes our key; the local line is left only once etcd confirmed it gone (or the
   * session ended). If etcd refused, the key stays under a live lease: the session remembers it, so the
   * next join of the name replaces it (a new token) instead of adopting it (rule 2).
   */
  #release(message: string, reason?: ElectionError): Promise<void> {
    this.#releasing ??= (async () => {
      const wasHeld = this.#stop(message, reason) || this.#leaveOnRelease;
      let refused: ElectionError | undefined;
      try {
        refused = await removeOwnKey(this.#ctx, this.key, this.token, `release of ${this.key}`);
      } finally {
        if (refused !== undefined) this.#ctx.names.leftBehind(this.key, this.token);
        if (wasHeld) this.#leaveLine();
      }
    })();
    return this.#releasing;
  }

  /**
   * @internal Ends the hold here (its signal aborts, `txn()` and `assertHeld()` refuse) while its key stays
   * in etcd until `release()`: a graceful hand-over lets the work stop before the next holder can begin.
   */
  endLocally(message: string): void {
    if (this.#stop(message)) this.#leaveOnRelease = true;
  }

  /** `await using` releases it at the end of the scope, as {@link release}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }

  /** @internal Ends the hold locally after etcd refused a guarded write of ours. */
  protected abandon(reason: ElectionError): void {
    this.#end(reason);
  }

  /**
   * @internal A store fenced by our token (Postgres, through `withFence`) holds a newer token: a newer
   * holder exists, so this hold is gone. Ends it as release does (our key may still be in etcd: left
   * there, the session's next join of the name would adopt it and its token); returns the loss error.
   */
  fenceRefused(message: string): ElectionError {
    const err = this.#lost(message);
    this.#release(message, err).catch((e: unknown) =>
      this.#ctx.logger.warn({ err: e, key: this.key }, "removing our key after Postgres refused it failed"),
    );
    return err;
  }

  /** The hold is gone (key deleted or replaced, session lost): stop, and let the next local contender in. */
  #end(reason: ElectionError): void {
    if (this.#stop(reason.message, reason)) this.#leaveLine();
  }

  /**
   * Aborts the signal (if anyone has it) and stops watching; false when that already happened. Without
   * `reason`, the loss error for `message` is made only if someone reads the signal.
   */
  #stop(message: string, reason?: ElectionError): boolean {
    if (this.#ended) return false;
    const ended = (this.#ended = { message, reason });
    this.#ctx.logger.debug({ key: this.key, token: this.token.toString(), reason: message }, "hold ended");
    if (this.#controller) this.#controller.abort(this.#reason(ended));
    this.#undoSession();
    this.#unwatch();
    return true;
  }

  #reason(ended: { message: string; reason: ElectionError | undefined }): ElectionError {
    return (ended.reason ??= this.#lost(ended.message));
  }

  /** The session's watch of its own key tells deletes only (a replaced key was deleted first). */
  #onEvent(e: KeyEvent): void {
    if (e.type === "delete") this.#end(this.#lost(`our key ${this.key} was deleted`));
  }

  /** Watches are hints, reads are truth. Unreachable etcd is the session's call. */
  async #recheck(): Promise<void> {
    if (this.#ended) return;
    try {
      const res = await range(
        this.#ctx,
        { key: this.#ctx.keyspace.full(this.key), keys_only: true },
        `check ${this.key}`,
      );
      const kv = res.kvs[0];
      if (!kv || BigInt(kv.create_revision) !== this.token) this.#end(this.#lost(`our key ${this.key} is gone`));
    } catch (err) {
      // Keep holding until the session's deadline says otherwise.
      this.#ctx.logger.debug({ err, key: this.key }, "re-read of our key failed; the session's deadline decides");
    }
  }
}
