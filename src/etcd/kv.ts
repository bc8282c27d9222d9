import type { IRangeRequest, IRangeResponse, ITxnRequest, ITxnResponse } from "etcd3";
import type { SessionContext } from "../context.js";
import { SessionLostError } from "../errors.js";

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
    if (/requested lease not found/.test((err as Error).message)) {
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
