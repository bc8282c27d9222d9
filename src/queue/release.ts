import type { IKeyValue } from "etcd3";
import { releaseRetry, retryWithBackoff } from "../common/backoff.js";
import type { SessionContext } from "../session/context.js";
import { isTransient, toElectionError } from "../etcd/errors.js";
import type { ElectionError } from "../errors.js";
import { range, txn } from "../etcd/kv.js";

/** A key of ours to remove, and how to tell that what is there is still ours. */
export interface OwnedKey {
  /** The key (relative to the keyspace). */
  key: string;
  /** What the delete is guarded by: the key's create revision, or its mod revision. */
  guard: "Create" | "Mod";
  /** The guard's revision; undefined when whether our put landed is unknown (its answer was lost). */
  revision: bigint | undefined;
  /** Of the key read when `revision` is undefined: its guard revision if it is ours, undefined if not. */
  ours: (kv: IKeyValue) => bigint | undefined;
  /** What the logs call it ("our key"). */
  what: string;
  /** The read (when `revision` is undefined) fetches the value too, for `ours` to judge. */
  values?: boolean;
}

/**
 * Deletes the key only if it is still the one we made (a newer holder's key is never touched): safe to
 * send again, and safe to arrive late.
 */
async function removeOnce(ctx: SessionContext, owned: OwnedKey, revision: bigint): Promise<void> {
  const full = ctx.keyspace.full(owned.key);
  const compare =
    owned.guard === "Create"
      ? { key: full, result: "Equal" as const, target: "Create" as const, create_revision: revision.toString() }
      : { key: full, result: "Equal" as const, target: "Mod" as const, mod_revision: revision.toString() };
  await txn(
    ctx,
    { compare: [compare], success: [{ request_delete_range: { key: full } }], failure: [] },
    `remove ${owned.key}`,
  );
}

/**
 * Removes a key of ours and resolves once etcd confirmed it gone, or once the session ended (its lease,
 * and the key with it, goes then too). In between, the removal is retried with backoff: a release lost
 * in a blip must not leave the key behind for the life of the session (design: Every outage ends in a
 * working state). `revision` undefined: whether our put landed is unknown; read the key first (the delete
 * stays guarded). Errors that sending again cannot cure (no permission) end the retries, logged: then it
 * resolves with that error, the key being still there under a live lease (undefined otherwise).
 */
export async function removeOwned(
  ctx: SessionContext,
  owned: OwnedKey,
  why: string,
): Promise<ElectionError | undefined> {
  const { key, what } = owned;
  const signal = ctx.lease.signal;
  try {
    await retryWithBackoff(
      releaseRetry,
      async (attempt) => {
        let revision = owned.revision;
        if (revision === undefined) {
          const res = await range(ctx, { key: ctx.keyspace.full(key), keys_only: !owned.values }, `read ${key}`);
          const kv = res.kvs[0];
          revision = kv && owned.ours(kv);
          if (revision === undefined) return;
        }
        await removeOnce(ctx, owned, revision);
        if (attempt > 1) ctx.logger.info({ key, attempts: attempt }, `${why}: ${what} is removed`);
      },
      {
        retryable: isTransient,
        signal,
        // Said once at warn; the retries that follow at debug, and the outcome at info.
        onRetry: (err, attempt) =>
          ctx.logger[attempt === 1 ? "warn" : "debug"](
            { err, key, attempt },
            `${why}: removing ${what} failed; retrying until etcd confirms or the session ends`,
          ),
      },
    );
    return undefined;
  } catch (err) {
    if (signal.aborted) {
      ctx.logger.debug({ key }, `${why}: the session ended; its lease takes ${what} with it`);
      return undefined;
    }
    // No permission, a closed client...: sending it again cannot help. The lease takes the key.
    ctx.logger.error({ err, key }, `${why}: etcd refused to remove ${what}; it stays until the session ends`);
    return toElectionError(err, `${why}: remove ${key}`);
  }
}

/** {@link removeOwned} of our queue key, guarded by its create revision (undefined: read it first). */
export function removeOwnKey(
  ctx: SessionContext,
  key: string,
  createRevision: bigint | undefined,
  why: string,
): Promise<ElectionError | undefined> {
  return removeOwned(
    ctx,
    { key, guard: "Create", revision: createRevision, ours: (kv) => BigInt(kv.create_revision), what: "our key" },
    why,
  );
}
