import type { IRangeRequest, IRangeResponse, ITxnRequest, ITxnResponse } from "etcd3";
import { raceAbort } from "../common/abort.js";
import { readRetry, retryWithBackoff } from "../common/backoff.js";
import type { Logger } from "../common/logger.js";
import type { SessionContext } from "../session/context.js";
import { SessionLostError } from "../errors.js";
import { isLeaseNotFound, isTransient } from "./errors.js";
import type { Endpoint } from "./internals.js";

/**
 * The library's own KV calls, on the session's channels, each within the session's call deadline. Every
 * one of them is safe to send twice (put-if-absent on our own key, guarded deletes, reads).
 */
export async function txn(ctx: SessionContext, req: ITxnRequest, what: string): Promise<ITxnResponse> {
  try {
    return await ctx.conn.call<ITxnResponse>("KV", "txn", req, {
      timeoutMs: ctx.callTimeoutMs,
      idempotent: true,
      what,
    });
  } catch (err) {
    // A put on our lease that etcd refuses for want of the lease: the session is lost, now.
    if (isLeaseNotFound(err)) {
      ctx.lease.lose(new SessionLostError("session lost: etcd reports the lease expired or revoked", { cause: err }));
      throw ctx.lease.signal.reason;
    }
    throw err;
  }
}

/** A linearizable range read. */
export function range(ctx: SessionContext, req: IRangeRequest, what: string): Promise<IRangeResponse> {
  return ctx.conn.call<IRangeResponse>("KV", "range", req, { timeoutMs: ctx.callTimeoutMs, idempotent: true, what });
}

/**
 * A serializable range on `endpoint` only (the member whose watch told us of a delete): that member
 * serves it from its own store, at the latest revision it has applied (the answer's header says which),
 * with no raft round. Require-leader: a member that knows it has lost its raft leader (cut off from its
 * peers) refuses, instead of answering from a store the others may have moved past. One attempt (a call
 * bound to an endpoint is not sent elsewhere; an expired auth token aside), which as an idempotent call
 * Connection.call bounds by half the call deadline; every failure is the caller's, who reads
 * linearizably instead (design: Decide at the event's revision).
 */
export function rangeOn(
  ctx: SessionContext,
  req: IRangeRequest,
  endpoint: Endpoint,
  what: string,
): Promise<IRangeResponse> {
  return ctx.conn.call<IRangeResponse>(
    "KV",
    "range",
    { ...req, serializable: true },
    { timeoutMs: ctx.callTimeoutMs, idempotent: true, what, endpoint, requireLeader: true },
  );
}

/**
 * A wait can outlast a passing etcd outage: reads (safe to repeat) that fail transiently are retried
 * with backoff until they succeed or `signal` aborts (the session's deadline aborts it if etcd stays
 * away too long). Other errors (no permission, a limit mismatch...) are final: retrying cannot help.
 */
export function retryRead<T>(read: () => Promise<T>, signal: AbortSignal | undefined, logger: Logger): Promise<T> {
  // A stop does not wait for a slow read.
  return retryWithBackoff(readRetry, () => raceAbort(read(), signal), {
    retryable: isTransient,
    signal,
    onRetry: (err, attempt) =>
      logger[attempt === 1 ? "warn" : "debug"]({ err, attempt }, "read failed; retrying while etcd is away"),
  });
}
