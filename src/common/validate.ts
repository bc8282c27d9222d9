/** Input checks made before any RPC (design: Bad input fails first). */
import { InvalidArgumentError } from "../errors.js";

/** etcd's largest lease TTL (seconds), from lease.MaxLeaseTTL. */
export const MAX_TTL_SECONDS = 9_000_000_000;
/** Names become key prefixes; etcd keys are small by convention and must fit a request. */
export const MAX_NAME_BYTES = 1024;
/**
 * Values ride in one put, with the key and the request around it. etcd refuses requests over its
 * --max-request-bytes, 1.5 MiB by default: the default value limit leaves 8 KiB of that for the rest.
 * A server set lower answers "request is too large" (REQUEST_TOO_LARGE); `maxValueBytes` follows it.
 */
export const DEFAULT_MAX_VALUE_BYTES = 1.5 * 1024 * 1024 - 8 * 1024;

export function validateTtl(ttl: unknown): number {
  if (typeof ttl !== "number" || !Number.isInteger(ttl) || ttl < 1 || ttl > MAX_TTL_SECONDS) {
    throw new InvalidArgumentError(
      `ttl must be a whole number of seconds from 1 to ${MAX_TTL_SECONDS}, got ${describe(ttl)}`,
    );
  }
  return ttl;
}

/**
 * A name becomes the key prefix `<name>/`: segments separated by single "/", none empty, no leading or
 * trailing "/" or whitespace, no control characters (NUL included: etcdctl could not name such a key,
 * and it would only hide mistakes), at most MAX_NAME_BYTES bytes of UTF-8.
 */
export function validateName(name: unknown, what = "name"): string {
  const bad = (why: string): never => {
    throw new InvalidArgumentError(
      `${what} ${why}, got ${typeof name === "string" ? JSON.stringify(name.length > 80 ? `${name.slice(0, 80)}...` : name) : typeof name}`,
    );
  };
  if (typeof name !== "string" || name.length === 0) return bad("must be a non-empty string");
  if (name.trim() !== name) return bad("must not start or end with whitespace");
  if (Buffer.byteLength(name) > MAX_NAME_BYTES)
    return bad(`must be at most ${MAX_NAME_BYTES} bytes of UTF-8 (it has ${Buffer.byteLength(name)})`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) return bad("must not contain control characters (NUL, newline...)");
  if (name.startsWith("/") || name.endsWith("/"))
    return bad('must not start or end with "/" (keys are "<name>/<lease id>")');
  if (name.includes("//")) return bad('must not contain "//" (an empty segment)');
  return name;
}

export function toValueBuffer(value: unknown, what: string, maxBytes: number): Buffer {
  let buf: Buffer;
  if (typeof value === "string") buf = Buffer.from(value);
  else if (Buffer.isBuffer(value)) buf = value;
  else if (value instanceof Uint8Array) buf = Buffer.from(value);
  else throw new InvalidArgumentError(`${what} must be a string, Buffer or Uint8Array, got ${describe(value)}`);
  if (buf.length > maxBytes) {
    throw new InvalidArgumentError(
      `${what} must be at most ${maxBytes} bytes (the session's maxValueBytes), got ${buf.length}`,
    );
  }
  return buf;
}

/** `maxValueBytes`: a whole number of bytes, at most etcd's largest --max-request-bytes (2 GiB). */
export function validateByteLimit(bytes: unknown): number {
  if (bytes === undefined) return DEFAULT_MAX_VALUE_BYTES;
  if (typeof bytes !== "number" || !Number.isInteger(bytes) || bytes < 1 || bytes > 2 ** 31) {
    throw new InvalidArgumentError(
      `maxValueBytes must be a whole number of bytes from 1 to 2^31, got ${describe(bytes)}`,
    );
  }
  return bytes;
}

export function validateTimeout(ms: unknown, what: string): number | undefined {
  if (ms === undefined) return undefined;
  if (typeof ms !== "number" || !Number.isFinite(ms) || ms < 0) {
    throw new InvalidArgumentError(`${what} must be a finite number of milliseconds >= 0, got ${describe(ms)}`);
  }
  return ms;
}

/** `callTimeoutMs`: every RPC's deadline, so 0 would fail every call at once, forever. */
export function validateCallTimeout(ms: unknown): number | undefined {
  if (ms === undefined) return undefined;
  if (typeof ms !== "number" || !Number.isFinite(ms) || ms <= 0) {
    throw new InvalidArgumentError(`callTimeoutMs must be a finite number of milliseconds > 0, got ${describe(ms)}`);
  }
  return ms;
}

export function validateSignal(signal: unknown): AbortSignal | undefined {
  if (signal === undefined) return undefined;
  if (!(signal instanceof AbortSignal)) throw new InvalidArgumentError("signal must be an AbortSignal");
  return signal;
}

const describe = (v: unknown): string =>
  typeof v === "number"
    ? Number.isNaN(v)
      ? "NaN"
      : String(v)
    : typeof v === "string"
      ? JSON.stringify(v)
      : v === null
        ? "null"
        : typeof v;

/** A semaphore's limit: how many may hold it at once. */
const MAX_SEMAPHORE_LIMIT = 10_000;

export function validateLimit(limit: unknown): number {
  if (typeof limit !== "number" || !Number.isInteger(limit) || limit < 1 || limit > MAX_SEMAPHORE_LIMIT) {
    throw new InvalidArgumentError(
      `semaphore limit must be a whole number from 1 to ${MAX_SEMAPHORE_LIMIT}, got ${describe(limit)}`,
    );
  }
  return limit;
}

/** The session an elector is given, as far as its checks need it. */
interface GivenSession {
  readonly ttl: number;
  readonly callTimeoutMs: number;
  readonly maxValueBytes: number;
}

/** What `validateElectorOptions` makes of an elector's options. */
export interface ElectorSettings {
  name: string;
  identity: string;
  /** The given session's TTL, or the one of the sessions the elector makes. */
  ttl: number;
  callTimeoutMs: number;
}

/** What a runner calls its work callback and its optional callbacks (for the messages and checks). */
export interface RunnerShape {
  what: string;
  work: string;
  callbacks: readonly string[];
}

const leaderElectorShape: RunnerShape = {
  what: "LeaderElector",
  work: "onStartedLeading",
  callbacks: ["onStoppedLeading", "onNewLeader"],
};

/**
 * A LeaderElector's options (in the order a user would fix them), or another runner's of `shape`;
 * `checkPeer` checks the client or session given (design: Bad input fails first).
 */
export function validateElectorOptions(
  options: unknown,
  checkPeer: (peer: { client?: unknown; session?: unknown }) => void,
  shape: RunnerShape = leaderElectorShape,
): ElectorSettings {
  const { what, work } = shape;
  const o = options as
    | {
        client?: unknown;
        session?: GivenSession;
        name?: unknown;
        identity?: unknown;
        ttl?: unknown;
        callTimeoutMs?: unknown;
        [callback: string]: unknown;
      }
    | undefined;
  if (!o || typeof o !== "object")
    throw new InvalidArgumentError(`${what} needs options: { client or session, name, identity, ${work} }`);
  if (o.session && o.client) throw new InvalidArgumentError(`give ${what} either client or session, not both`);
  if (!o.session && !o.client) throw new InvalidArgumentError(`${what} needs a client (an etcd3 client) or a session`);
  checkPeer(o);
  if (typeof o[work] !== "function") throw new InvalidArgumentError(`${work} must be a function`);
  for (const cb of shape.callbacks) {
    if (o[cb] !== undefined && typeof o[cb] !== "function") throw new InvalidArgumentError(`${cb} must be a function`);
  }
  if (typeof o.identity !== "string") throw new InvalidArgumentError("identity must be a string");
  // A session of another installed copy may lack a getter: its numbers are checked, not trusted.
  toValueBuffer(o.identity, "identity", o.session?.maxValueBytes ?? DEFAULT_MAX_VALUE_BYTES);
  const name = validateName(o.name, "election name");
  if (o.session && (o.ttl !== undefined || o.callTimeoutMs !== undefined)) {
    throw new InvalidArgumentError(
      "ttl and callTimeoutMs belong to the session: set them on Session.create when you pass a session",
    );
  }
  return {
    name,
    identity: o.identity,
    ttl: validateTtl(o.session ? o.session.ttl : (o.ttl ?? 10)),
    callTimeoutMs: validateCallTimeout(o.session ? o.session.callTimeoutMs : o.callTimeoutMs) ?? 5000,
  };
}
