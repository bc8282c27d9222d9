import type { ComparatorBuilder, ICompare, IKeyValue, IRequestOp, ITxnResponse } from "etcd3";
import { onAbort } from "./common/abort.js";
import { deadlineIn, fixedDeadline } from "./common/client.js";
import type { ElectionError } from "./errors.js";
import { removeKey, type Ticket } from "./queue.js";
import type { Session } from "./session.js";

/**
 * What a term and a lock have in common: a key we created, its create revision as the fencing token,
 * a signal that aborts the moment the hold may be gone, guarded writes, and a guarded release.
 */
export class Holding {
  /** The key in etcd (relative to the client's namespace). */
  readonly key: string;
  /** Fencing token: the create revision of `key`. Successive holders of a name get increasing tokens. */
  readonly token: bigint;
  /** @internal */ protected readonly session: Session;
  /** @internal */ protected currentValue: Buffer;
  readonly #lost: (message: string, cause?: unknown) => ElectionError;
  readonly #controller = new AbortController();
  readonly #unwatch: () => void;
  #undoSession: (() => void) | undefined;
  readonly #leaveLine: () => void;
  #releasing: Promise<boolean> | undefined;

  /** @internal */
  constructor(session: Session, ticket: Ticket, lost: (message: string, cause?: unknown) => ElectionError, leaveLine: () => void) {
    this.session = session;
    this.key = ticket.key;
    this.token = ticket.createRevision;
    this.currentValue = ticket.value;
    this.#lost = lost;
    this.#leaveLine = leaveLine;
    // Off the hot path: the session's shared watch of its own key (created on first use, from the
    // revision our turn was confirmed at) tells us of anything after that revision.
    this.#unwatch = session.keyWatches.subscribe(this.key, {
      fromRevision: ticket.revision,
      event: (type, kv) => this.#onEvent(type, kv),
      resync: () => void this.#recheck(),
    });
    this.#undoSession = onAbort(session.signal, (reason) => this.#end(lost("lost with the session", reason)));
  }

  /** @internal Ends the hold locally after etcd refused a guarded write. */
  protected abandon(reason: ElectionError): void {
    this.#end(reason);
  }

  /** Aborts the moment this hold may no longer be valid: released, session lost, key deleted or replaced. */
  get signal(): AbortSignal {
    this.session.checkDeadline(); // rule 1: a passed deadline is noticed before anyone reads the signal
    return this.#controller.signal;
  }

  /**
   * An etcd3 transaction builder guarded by `Create(key) == token`: it commits only while this hold is
   * still ours in etcd. When the guard is what failed, `commit()` rejects with the loss error rather
   * than resolving `{ succeeded: false }`, and none of the caller's operations ran (not even its
   * `.else()`); it also rejects without sending once `signal` has aborted. The caller's own comparisons
   * decide between its `.then()` and `.else()` as usual.
   */
  txn(): ComparatorBuilder {
    // The builder's first comparison is our guard; the caller adds theirs after it.
    const builder = this.session.client.if(this.key, "Create", "==", this.token.toString());
    const internals = builder as unknown as {
      request: { compare: Promise<ICompare>[]; success: Promise<IRequestOp>[]; failure: Promise<IRequestOp>[] };
      callOptions?: object;
    };
    builder.commit = async (): Promise<ITxnResponse> => {
      this.assertHeld();
      const [guard, ...theirs] = await Promise.all(internals.request.compare);
      // The caller's transaction runs nested inside ours, and only if our guard holds.
      const res = await this.session.client.kv.txn(
        {
          compare: [guard!],
          success: [
            {
              request_txn: {
                compare: theirs,
                success: await Promise.all(internals.request.success),
                failure: await Promise.all(internals.request.failure),
              },
            },
          ],
          failure: [],
        },
        internals.callOptions ?? fixedDeadline(this.session.callTimeoutMs),
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
   * Aborts `signal` and deletes our key if it is still ours (never a newer holder's). Idempotent.
   * The next local contender for the name gets in only once the delete is done, so it never finds our
   * key and takes it for its own. If etcd cannot be reached, the session deletes the key before its
   * next use of the name (else it goes with the lease).
   */
  async release(): Promise<void> {
    await this.released();
  }

  /** @internal Releases, and tells whether etcd confirmed our key is gone. */
  released(): Promise<boolean> {
    this.#releasing ??= (async () => {
      const wasHeld = this.#stop(this.#lost("released"));
      try {
        await removeKey(this.session, this.key, this.token);
        return true;
      } catch {
        this.session.markStale(this.key, this.token); // deleted before the session uses the name again
        return false;
      } finally {
        if (wasHeld) this.#leaveLine();
      }
    })();
    return this.#releasing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }

  /** @internal Throws the loss error once the hold may be gone. */
  protected assertHeld(): void {
    const signal = this.signal;
    if (signal.aborted) throw signal.reason;
  }

  /** The hold is gone (key deleted or replaced, session lost): stop, and let the next local contender in. */
  #end(reason: ElectionError): void {
    if (this.#stop(reason)) this.#leaveLine();
  }

  /** Aborts the signal and stops watching; false when that already happened. */
  #stop(reason: ElectionError): boolean {
    if (this.#controller.signal.aborted) return false;
    this.#controller.abort(reason);
    this.#undoSession?.();
    this.#unwatch();
    return true;
  }

  #onEvent(type: "put" | "delete", kv: IKeyValue): void {
    if (type === "delete") this.#end(this.#lost(`our key ${this.key} was deleted`));
    else if (BigInt(kv.create_revision) !== this.token) this.#end(this.#lost(`our key ${this.key} was replaced`));
    else this.currentValue = kv.value;
  }

  /** Rule 8: the watch is a hint; a linearizable read is the truth. Unreachable etcd is the session's call. */
  async #recheck(): Promise<void> {
    if (this.#controller.signal.aborted) return;
    try {
      const res = await this.session.client.kv.range(
        { key: this.session.keyspace.full(this.key), keys_only: true },
        deadlineIn(this.session.callTimeoutMs),
      );
      const kv = res.kvs[0];
      if (!kv || BigInt(kv.create_revision) !== this.token) this.#end(this.#lost(`our key ${this.key} is gone`));
    } catch {
      // Keep holding until the session's deadline says otherwise.
    }
  }
}
