import { castGrpcError } from "etcd3";
import {
  AuthFailedError,
  ClientClosedError,
  EtcdError,
  EtcdUnavailableError,
  PermissionDeniedError,
  RequestTooLargeError,
  isElectionError,
  type ElectionError,
  type ElectionErrorCode,
} from "../errors.js";

/** gRPC status codes we tell apart. */
const CANCELLED = 1;
const INVALID_ARGUMENT = 3;
const DEADLINE_EXCEEDED = 4;
const PERMISSION_DENIED = 7;
const RESOURCE_EXHAUSTED = 8;
const INTERNAL = 13;
const UNAVAILABLE = 14;
const UNAUTHENTICATED = 16;

const codeOf = (err: unknown): number | undefined => {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "number" ? code : undefined;
};
const messageOf = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/**
 * etcd says the auth token expired, is unknown, or was issued before the auth store last changed (a JWT
 * carries that revision: adding any user makes it stale): fetch a new one and send again (nothing was
 * applied).
 */
export function isInvalidToken(err: unknown): boolean {
  return /invalid auth token|auth token is expired|user name is empty|revision of auth store is old/i.test(
    messageOf(err),
  );
}

/**
 * etcd's own words for a failure: the message of the innermost cause. Our errors wrap etcd's and name the
 * call, and the call's name carries the user's key: a name that happens to contain etcd's phrase must
 * not read as etcd saying it.
 */
function etcdMessage(err: unknown): string {
  let inner = err;
  while (inner instanceof Error && inner.cause instanceof Error) inner = inner.cause;
  return messageOf(inner);
}

/** etcd refuses a lease grant under an id already in use: ours, when a grant sent twice landed once. */
export function isLeaseExists(err: unknown): boolean {
  return /etcdserver: lease already exists/.test(etcdMessage(err));
}

/** etcd has no such lease: it expired or was revoked ("requested lease not found"). */
export function isLeaseNotFound(err: unknown): boolean {
  return /etcdserver: requested lease not found/.test(etcdMessage(err));
}

/** etcd no longer has that revision: a read at it was compacted away ("required revision has been compacted"). */
export function isCompacted(err: unknown): boolean {
  return /required revision has been compacted/.test(etcdMessage(err));
}

/**
 * An etcd3 watcher cancelled by etcd because its revision was compacted: etcd3's "Watcher canceled: <reason>",
 * the reason the compaction's, or none (etcd cancels a compacted watch with its compact revision and no reason).
 */
export function isWatchCompacted(err: unknown): boolean {
  return /^Watcher canceled: ?(.*required revision has been compacted.*)?$/.test(etcdMessage(err));
}

/** The member has no raft leader: it refused a require-leader call ("etcdserver: no leader"). */
export function isNoLeader(err: unknown): boolean {
  return /etcdserver: no leader/.test(etcdMessage(err));
}

/** etcd refuses for want of permission: an error, or a watch's cancel reason (a string). */
export function isPermissionDenied(err: unknown): boolean {
  return codeOf(err) === PERMISSION_DENIED || /permission denied/i.test(messageOf(err));
}

/**
 * Turns whatever gRPC or etcd3 rejected with into an ElectionError with a string code, keeping the
 * original (cast to etcd3's typed error) as `cause`. `what` names the call, for the message (design:
 * Every failure is visible).
 */
export function toElectionError(err: unknown, what: string): ElectionError {
  if (isElectionError(err)) return err; // by code: an error of the other build (ESM/CJS) is one too
  const cause = err instanceof Error && err.constructor === Error ? castGrpcError(err) : err;
  const message = messageOf(err);
  const code = codeOf(err);
  const say = (text: string): string => `${what}: ${text} (${message})`;
  if (/authentication failed|invalid user ID or password/i.test(message))
    return new AuthFailedError(say("etcd refused the username or password"), { cause });
  // A TLS handshake refused (an untrusted or missing client certificate, a server certificate we do not
  // trust): no retry will change that.
  if (
    /SSL alert|alert (unknown ca|bad certificate|certificate required|certificate unknown)|certificate verify failed|unable to (get local issuer|verify)|self[- ]signed certificate/i.test(
      message,
    )
  ) {
    return new AuthFailedError(say("the TLS handshake with etcd failed: check the client certificate and the CA"), {
      cause,
    });
  }
  if (isPermissionDenied(err)) return new PermissionDeniedError(say("permission denied by etcd"), { cause });
  if (
    /request is too large|larger than max/i.test(message) ||
    (code === RESOURCE_EXHAUSTED && /message/i.test(message))
  ) {
    return new RequestTooLargeError(say("the request is larger than etcd accepts"), { cause });
  }
  if (/client was already closed|client was closed|Channel has been shut down/i.test(message))
    return new ClientClosedError(say("the etcd3 client was closed"), { cause });
  if (isTransientCode(code, message)) return new EtcdUnavailableError(say("etcd unavailable"), { cause });
  if (code === UNAUTHENTICATED) return new AuthFailedError(say("etcd refused the credentials"), { cause });
  return new EtcdError(say("etcd failed"), { cause });
}

/**
 * grpc-js failed the call on our side with INTERNAL: it could not serialize our request, or not parse
 * (or decompress) what came back: a proxy answering garbage, a proto mismatch. Sending again cannot cure it.
 */
function isLocalInternal(code: number | undefined, message: string): boolean {
  return (
    code === INTERNAL &&
    /Request message serialization failure|Response message parsing error|Failed to decompress/i.test(message)
  );
}

function isTransientCode(code: number | undefined, message: string): boolean {
  if (code === UNAVAILABLE || code === DEADLINE_EXCEEDED || code === CANCELLED) return true;
  if (code === RESOURCE_EXHAUSTED) return /too many requests/i.test(message);
  if (code === INVALID_ARGUMENT) return false;
  // The transport, not etcd, failed the call (etcd never answers INTERNAL): a stream reset without a gRPC
  // status, or an HTTP 5xx from a proxy in front of etcd (grpc-js maps 500 to UNKNOWN). A 4xx is a refusal,
  // and so is grpc-js's own INTERNAL for a message it could not encode or decode.
  if (/Received HTTP status code 4\d\d/.test(message)) return false;
  if (isLocalInternal(code, message)) return false;
  if (code === INTERNAL || /RST_STREAM|Received HTTP status code 5\d\d/.test(message)) return true;
  // etcd answers a request it gave up on when our deadline passed (a linearizable read on a member just
  // restarted, a range over a long queue on a busy one) with UNKNOWN "... context deadline exceeded":
  // a timeout, not a refusal.
  return /leader changed|no leader|request timed out|timed out|deadline exceeded|too many requests|ECONNREFUSED|ECONNRESET|No connection established/i.test(
    message,
  );
}

/** Worth trying again (an idempotent call, on this or another member): etcd may answer later. */
export function isTransient(err: unknown): boolean {
  return isElectionError(err) ? err.code === "ETCD_UNAVAILABLE" : isTransientCode(codeOf(err), messageOf(err));
}

/** Codes that trying again cannot cure: a runner (the elector) gives up on them instead of retrying forever. */
const INCURABLE: ReadonlySet<ElectionErrorCode> = new Set([
  "INVALID_ARGUMENT",
  "INVALID_CLIENT",
  "AUTH_FAILED",
  "PERMISSION_DENIED",
  "CLIENT_CLOSED",
  "REQUEST_TOO_LARGE",
  "NAME_CONFLICT",
  "SESSION_CLOSED",
]);

/** Whether retrying cannot cure `err`: judged by `code`, so an ElectionError of either build counts. */
export function isIncurable(err: unknown): boolean {
  return isElectionError(err) && INCURABLE.has(err.code);
}
