/** Input checks made before any RPC (design: Bad input fails first). */
import { InvalidArgumentError } from "../errors.js";

/** etcd's largest lease TTL (seconds), from lease.MaxLeaseTTL. */
export const MAX_TTL_SECONDS = 9_000_000_000;
/** Names become key prefixes; etcd keys are small by convention and must fit a request. */
export const MAX_NAME_BYTES = 1024;
/** Values ride in one put; etcd rejects requests over 1.5 MiB by default (--max-request-bytes). */
export const MAX_VALUE_BYTES = 1024 * 1024;

export function validateTtl(ttl: unknown): number {
  if (typeof ttl !== "number" || !Number.isInteger(ttl) || ttl < 1 || ttl > MAX_TTL_SECONDS) {
    throw new InvalidArgumentError(`ttl must be a whole number of seconds from 1 to ${MAX_TTL_SECONDS}, got ${describe(ttl)}`);
  }
  return ttl;
}

export function validateName(name: unknown, what = "name"): string {
  if (typeof name !== "string" || name.length === 0) {
    throw new InvalidArgumentError(`${what} must be a non-empty string`);
  }
  if (Buffer.byteLength(name) > MAX_NAME_BYTES) {
    throw new InvalidArgumentError(`${what} must be at most ${MAX_NAME_BYTES} bytes, got ${Buffer.byteLength(name)}`);
  }
  if (name.endsWith("/")) {
    throw new InvalidArgumentError(`${what} must not end with "/" (keys are "<name>/<lease id>"): ${JSON.stringify(name)}`);
  }
  return name;
}

export function toValueBuffer(value: unknown, what = "value"): Buffer {
  let buf: Buffer;
  if (typeof value === "string") buf = Buffer.from(value);
  else if (Buffer.isBuffer(value)) buf = value;
  else if (value instanceof Uint8Array) buf = Buffer.from(value);
  else throw new InvalidArgumentError(`${what} must be a string, Buffer or Uint8Array`);
  if (buf.length > MAX_VALUE_BYTES) {
    throw new InvalidArgumentError(`${what} must be at most ${MAX_VALUE_BYTES} bytes, got ${buf.length}`);
  }
  return buf;
}

export function validateTimeout(ms: unknown, what: string): number | undefined {
  if (ms === undefined) return undefined;
  if (typeof ms !== "number" || !Number.isFinite(ms) || ms < 0) {
    throw new InvalidArgumentError(`${what} must be a finite number of milliseconds >= 0, got ${describe(ms)}`);
  }
  return ms;
}

export function validateSignal(signal: unknown): AbortSignal | undefined {
  if (signal === undefined) return undefined;
  if (!(signal instanceof AbortSignal)) throw new InvalidArgumentError("signal must be an AbortSignal");
  return signal;
}

const describe = (v: unknown): string => (typeof v === "number" || typeof v === "string" ? JSON.stringify(v) : typeof v);

/** A semaphore's limit: how many may hold it at once. */
export const MAX_SEMAPHORE_LIMIT = 10_000;

export function validateLimit(limit: unknown): number {
  if (typeof limit !== "number" || !Number.isInteger(limit) || limit < 1 || limit > MAX_SEMAPHORE_LIMIT) {
    throw new InvalidArgumentError(`semaphore limit must be a whole number from 1 to ${MAX_SEMAPHORE_LIMIT}, got ${describe(limit)}`);
  }
  return limit;
}
