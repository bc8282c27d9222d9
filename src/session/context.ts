import type { Namespace } from "etcd3";
import type { Logger } from "../common/logger.js";
import type { Connection } from "../etcd/connection.js";
import type { Keyspace } from "../etcd/keyspace.js";
import type { WatchStream } from "../etcd/watch-stream.js";
import { InvalidArgumentError } from "../errors.js";
import type { LeaseKeeper } from "../lease/keeper.js";
import type { SessionNames } from "../queue/names.js";
import type { OwnKeyWatches } from "./own-key-watches.js";

/**
 * What every election and lock made from a session works with: the session's channels and watch
 * stream, its lease, its keyspace and names. Internal: users see only `Session`.
 */
export interface SessionContext {
  /** The user's client: only for the transaction builders we hand out (`txn()`). */
  readonly client: Namespace;
  readonly conn: Connection;
  readonly watches: WatchStream;
  readonly ownKeys: OwnKeyWatches;
  readonly keyspace: Keyspace;
  readonly names: SessionNames;
  readonly lease: LeaseKeeper;
  /** The lease id in lowercase hex: the last segment of every key this session creates. */
  readonly leaseHex: string;
  readonly callTimeoutMs: number;
  /** The largest value a key of this session may carry (bad input beyond it, before any RPC). */
  readonly maxValueBytes: number;
  readonly logger: Logger;
  /** How often waiters, holders and observers re-read what their watches tell them (TTL/2). */
  resyncMs(): number;
  /** Aborted when the session is closed (not when lost): what needs no lease ends only then. */
  readonly closed: AbortSignal;
}

/** A session made by the other build (ESM/CJS) carries its context under the same global symbol. */
const CONTEXT = Symbol.for("etcd-election.session-context.v1");

export function attachContext(session: object, context: SessionContext): void {
  Object.defineProperty(session, CONTEXT, { value: context, enumerable: false });
}

/** The context of a Session; InvalidArgumentError for anything else. */
export function contextOf(session: unknown): SessionContext {
  const context =
    session !== null && typeof session === "object" ? (session as { [CONTEXT]?: SessionContext })[CONTEXT] : undefined;
  if (!context) throw new InvalidArgumentError("expected a Session (await Session.create(client, { ttl }))");
  return context;
}

/** Throws the session's end (SessionLostError, SessionClosedError) once it can no longer create keys. */
export function assertUsable(ctx: SessionContext): void {
  ctx.lease.check();
  ctx.lease.signal.throwIfAborted();
}
