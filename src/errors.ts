/**
 * Every error this package throws is an ElectionError with a stable string `code`.
 * Test `code`, not `instanceof`: the ESM and CJS builds each carry their own classes.
 */
export type ElectionErrorCode =
  | "INVALID_ARGUMENT"
  | "INVALID_CLIENT"
  | "SESSION_LOST"
  | "SESSION_CLOSED"
  | "NOT_LEADER"
  | "LOCK_LOST"
  | "LOCK_TIMEOUT"
  | "NAME_CONFLICT"
  | "LIMIT_MISMATCH"
  | "ETCD_UNAVAILABLE"
  | "PERMISSION_DENIED"
  | "AUTH_FAILED"
  | "CLIENT_CLOSED"
  | "REQUEST_TOO_LARGE"
  | "ETCD_ERROR"
  | "WORK_FAILED"
  | "FENCE_BUSY"
  | "TRANSACTION_ABORTED"
  | "HANDOVER_FAILED";

/** Every code, as a record the compiler checks against the union: a code added there must be added here. */
const CODES: { readonly [C in ElectionErrorCode]: true } = {
  INVALID_ARGUMENT: true,
  INVALID_CLIENT: true,
  SESSION_LOST: true,
  SESSION_CLOSED: true,
  NOT_LEADER: true,
  LOCK_LOST: true,
  LOCK_TIMEOUT: true,
  NAME_CONFLICT: true,
  LIMIT_MISMATCH: true,
  ETCD_UNAVAILABLE: true,
  PERMISSION_DENIED: true,
  AUTH_FAILED: true,
  CLIENT_CLOSED: true,
  REQUEST_TOO_LARGE: true,
  ETCD_ERROR: true,
  WORK_FAILED: true,
  FENCE_BUSY: true,
  TRANSACTION_ABORTED: true,
  HANDOVER_FAILED: true,
};

/**
 * Whether `err` is an ElectionError (with `code`, if given), from either build: it tests the `code`, not
 * the class, so an error of the CJS build passes in the ESM build and the other way round. Use it rather
 * than `instanceof`.
 */
export function isElectionError<C extends ElectionErrorCode>(
  err: unknown,
  code?: C,
): err is ElectionError & {
  /** The code asked for. */
  readonly code: C;
} {
  if (!(err instanceof Error)) return false;
  const actual = (err as { code?: unknown }).code;
  return typeof actual === "string" && Object.hasOwn(CODES, actual) && (code === undefined || actual === code);
}

/** The base of every error this package throws: test its {@link ElectionError.code | code}, not its class. */
export class ElectionError extends Error {
  /** What went wrong, stable across releases and across the ESM and CJS builds. */
  readonly code: ElectionErrorCode;

  constructor(code: ElectionErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Bad input caught before anything is sent to etcd. */
export class InvalidArgumentError extends ElectionError {
  constructor(message: string) {
    super("INVALID_ARGUMENT", message);
  }
}

/** The value handed in is not an etcd3 client (or is a closed one). */
export class InvalidClientError extends ElectionError {
  constructor(message: string) {
    super("INVALID_CLIENT", message);
  }
}

/** The session's lease may have expired on the server: everything it held is gone. */
export class SessionLostError extends ElectionError {
  constructor(message = "session lost: its lease may have expired in etcd", options?: { cause?: unknown }) {
    super("SESSION_LOST", message, options);
  }
}

/** The session was closed by its owner; it can no longer be used. */
export class SessionClosedError extends ElectionError {
  constructor(message = "session closed") {
    super("SESSION_CLOSED", message);
  }
}

/** The term no longer holds: resigned, lost, or its key was deleted or replaced. */
export class NotLeaderError extends ElectionError {
  constructor(message = "not the leader: the term no longer holds", options?: { cause?: unknown }) {
    super("NOT_LEADER", message, options);
  }
}

/** The lock (or permit) no longer holds: released, lost, or its key was deleted or replaced. */
export class LockLostError extends ElectionError {
  constructor(message = "lock lost: it no longer holds", options?: { cause?: unknown }) {
    super("LOCK_LOST", message, options);
  }
}

/** A lock or permit was not granted within `timeoutMs`. */
export class LockTimeoutError extends ElectionError {
  constructor(message: string) {
    super("LOCK_TIMEOUT", message);
  }
}

/** The same name is already used through this session by another kind of primitive, or twice. */
export class NameConflictError extends ElectionError {
  constructor(message: string) {
    super("NAME_CONFLICT", message);
  }
}

/** A semaphore participant's limit disagrees with a limit already queued under the name. */
export class LimitMismatchError extends ElectionError {
  constructor(message: string) {
    super("LIMIT_MISMATCH", message);
  }
}

/**
 * etcd could not be reached within the call's deadline (unreachable, deadline exceeded, no leader,
 * overloaded). Transient: the same call may work later. The error from etcd3 or gRPC is the `cause`.
 */
export class EtcdUnavailableError extends ElectionError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("ETCD_UNAVAILABLE", message, options);
  }
}

/** etcd's authorisation refused the request: the user's role lacks a permission on the key. */
export class PermissionDeniedError extends ElectionError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("PERMISSION_DENIED", message, options);
  }
}

/** etcd refused the client's username or password. */
export class AuthFailedError extends ElectionError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("AUTH_FAILED", message, options);
  }
}

/** The user's etcd3 client was closed: nothing made from it can talk to etcd any more. */
export class ClientClosedError extends ElectionError {
  constructor(message = "the etcd3 client was closed", options?: { cause?: unknown }) {
    super("CLIENT_CLOSED", message, options);
  }
}

/** The request is larger than etcd accepts (its --max-request-bytes, 1.5 MiB by default). */
export class RequestTooLargeError extends ElectionError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("REQUEST_TOO_LARGE", message, options);
  }
}

/** Any other failure reported by etcd or gRPC, kept as the `cause`. */
export class EtcdError extends ElectionError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("ETCD_ERROR", message, options);
  }
}

/**
 * The user's work (`onStartedLeading`) or a callback of the elector threw: not a failure to reach etcd.
 * The elector resigns and campaigns again; this is what its `failure` event and `metrics().lastError`
 * carry, the thrown value as `cause`.
 */
export class WorkFailedError extends ElectionError {
  constructor(cause: unknown, what = "onStartedLeading") {
    super("WORK_FAILED", `${what} threw: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

/**
 * `withFence` (etcd-election/postgres) waited longer than its `lockTimeoutMs` for the fence row of the
 * resource: another transaction holds it (a holder still in its `fn`, or one paused or cut off inside it).
 * Nothing was written. Transient: retry; the database's lock error is the `cause`.
 */
export class FenceBusyError extends ElectionError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("FENCE_BUSY", message, options);
  }
}

/**
 * `withFence` (etcd-election/postgres, with `pg`): a statement of `fn` failed and `fn` went on (it caught
 * the error), so the transaction was aborted and Postgres answered `COMMIT` with a rollback. Nothing of
 * `fn` was committed, fence row included; the hold is not lost. Not retryable as is: fix `fn` (let the error
 * out, or use a savepoint around a statement that may fail).
 */
export class TransactionAbortedError extends ElectionError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("TRANSACTION_ABORTED", message, options);
  }
}

/**
 * A hand-over (`term.handOver()`, `elector.handOver()`, a preferred leader) could not be done: no such
 * waiting candidate, one ahead of it could not step aside (an `etcdctl elect` process, an older version,
 * a dead one), the target went away, or the time ran out. Unless `term.signal` has aborted, the term
 * still holds and nobody's key was deleted; candidates that stepped aside meanwhile stay behind the target
 * (they joined again: design, Hand-overs).
 */
export class HandoverFailedError extends ElectionError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("HANDOVER_FAILED", message, options);
  }
}
