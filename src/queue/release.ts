import { releaseRetry, retryWithBackoff } from "../common/backoff.js";
import type { SessionContext } from "../session/context.js";
import { isTransient, toElectionError } from "../etcd/errors.js";
import type { ElectionError } from "../errors.js";
import { range, txn } from "../etcd/kv.js";

/**
 * Deletes `key` only if it is still the one we created (a newer holder's key is never touched): safe to
 * send again, and safe to arrive late.
 */
async function removeKeyOnce(ctx: SessionContext, key: string, createRevision: bigint): Promise<void> {
  const full = ctx.keyspace.full(key);
  await txn(
    ctx,
    {
      compare: [{ key: full, result: "Equal", target: "Create", create_revision: createRevision.toString() }],
      success: [{ request_delete_range: { key: full } }],
      failure: [],
    },
    `remove ${key}`,
  );
}

/**
 * Removes a key of ours and resolves once etcd confirmed it gone, or once the session ended (its lease,
 * and the key with it, goes then too). In between, the removal is retried with backoff: a release lost
 * in a blip must not leave the key in the queue for the life of the session (design: Every outage ends
 * in a working state). `createRevision`
 * undefined: whether our put landed is unknown; read the key first (the delete stays guarded). Errors
 * that sending again cannot cure (no permission) end the retries, logged: then it resolves with that
 * error, the key being still there under a live lease (undefined otherwise).
 */
export async function removeOwnKey(
  ctx: SessionContext,
  key: string,
  createRevision: bigint | undefined,
  why: string,
): Promise<ElectionError | undefined> {
  const signal = ctx.lease.signal;
  try {
    await retryWithBackoff(
      releaseRetry,
      async (attempt) => {
        let revision = createRevision;
        if (revision === undefined) {
          const res = await range(ctx, { key: ctx.keyspace.full(key), keys_only: true }, `read ${key}`);
          const kv = res.kvs[0];
          if (!kv) return;
          revision = BigInt(kv.create_revision);
        }
        await removeKeyOnce(ctx, key, revision);
        if (attempt > 1) ctx.logger.info({ key, attempts: attempt }, `${why}: our key is removed`);
      },
      {
        retryable: isTransient,
        signal,
        // Said once at warn; the retries that follow at debug, and the outcome at info.
        onRetry: (err, attempt) =>
          ctx.logger[attempt === 1 ? "warn" : "debug"](
            { err, key, attempt },
            `${why}: removing our key failed; retrying until etcd confirms or the session ends`,
          ),
      },
    );
    return undefined;
  } catch (err) {
    if (signal.aborted) {
      ctx.logger.debug({ key }, `${why}: the session ended; its lease takes our key with it`);
      return undefined;
    }
    // No permission, a closed client...: sending it again cannot help. The lease takes the key.
    ctx.logger.error({ err, key }, `${why}: etcd refused to remove our key; it stays until the session ends`);
    return toElectionError(err, `${why}: remove ${key}`);
  }
}
