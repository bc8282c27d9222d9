import type { Namespace } from "etcd3";
import { InvalidClientError } from "../errors.js";

/** The user's etcd3 client, or a namespace of it (`client.namespace("app/")`). */
export type EtcdClient = Namespace;

type Fn = (...args: never[]) => unknown;
const isFn = (v: unknown): v is Fn => typeof v === "function";
const has = (o: unknown, k: string): unknown => (o !== null && typeof o === "object" ? (o as Record<string, unknown>)[k] : undefined);

/**
 * Recognise an etcd3 client by shape, not instanceof: the user's copy of etcd3 may not be ours.
 * We talk through its raw RPC clients (kv, leaseClient) and its watch builder.
 */
export function assertClient(client: unknown): asserts client is EtcdClient {
  const kv = has(client, "kv");
  const lease = has(client, "leaseClient");
  const ok =
    isFn(has(kv, "range")) &&
    isFn(has(kv, "txn")) &&
    isFn(has(kv, "deleteRange")) &&
    isFn(has(lease, "leaseGrant")) &&
    isFn(has(lease, "leaseKeepAlive")) &&
    isFn(has(lease, "leaseRevoke")) &&
    isFn(has(client, "watch")) &&
    isFn(has(client, "if")) &&
    Buffer.isBuffer(has(client, "prefix"));
  if (!ok) {
    throw new InvalidClientError("expected an etcd3 client (new Etcd3(...)) or a namespace of one (client.namespace(...))");
  }
}

/**
 * Call options for the library's own RPCs, all safe to repeat. etcd3 retries a call that timed out on
 * the next endpoint, reading the options again for each attempt: each attempt gets half of `ms`, and
 * all of them together no more than `ms`. So a call stuck on a dead member moves on in time, and the
 * whole call still fails in bounded time (rule 11).
 */
export function deadlineIn(ms: number): { readonly deadline: Date } {
  const end = Date.now() + ms;
  return {
    get deadline() {
      return new Date(Math.min(end, Date.now() + ms / 2));
    },
  };
}

/**
 * One absolute deadline for a call that may not be safe to repeat (a user's guarded transaction):
 * once it has passed, etcd3's retry of a timed-out attempt fails at once instead of sending it again.
 */
export const fixedDeadline = (ms: number): { deadline: Date } => ({ deadline: new Date(Date.now() + ms) });

/**
 * etcd3's raw RPC clients bypass the client's namespace: every key we send through them is prefixed
 * here, and every key we hand to users is relative to their namespace, as their own client sees it.
 */
export class Keyspace {
  constructor(readonly prefix: Buffer) {}

  full(key: string): Buffer {
    return Buffer.concat([this.prefix, Buffer.from(key)]);
  }

  relative(key: Buffer | Uint8Array | string): string {
    const buf = Buffer.isBuffer(key) ? key : Buffer.from(key);
    return buf.subarray(this.prefix.length).toString();
  }

  /** range_end covering every key that starts with `key` (namespace applied). */
  rangeEnd(key: string): Buffer {
    const end = Buffer.from(this.full(key));
    for (let i = end.length - 1; i >= 0; i--) {
      if (end[i]! < 0xff) {
        end[i]!++;
        return end.subarray(0, i + 1);
      }
    }
    return Buffer.from([0]);
  }
}
