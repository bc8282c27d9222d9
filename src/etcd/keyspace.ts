/**
 * Keys as etcd stores them and as users see them. Our raw RPCs bypass etcd3's namespace, so the prefix
 * of `client.namespace(...)` is applied here, and every key we hand to users is relative to it.
 *
 * The queue of a name is exactly the keys `<name>/<lease id in lowercase hex>` (as etcd's Go
 * `concurrency` package writes them): a deeper key such as `<name>/sub/<lease hex>` belongs to the name
 * `<name>/sub` and never counts in the queue of `<name>` (design: Names are exact; Interoperable keys).
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

const LEASE_HEX = /^[0-9a-f]{1,16}$/;

/** The key a session with lease `leaseHex` owns under `name`. */
export const queueKey = (name: string, leaseHex: string): string => `${name}/${leaseHex}`;

/** Whether `key` (relative) is in the queue of `name`: `<name>/<lease hex>`, nothing deeper. */
export function inQueue(name: string, key: string): boolean {
  return (
    key.length > name.length + 1 &&
    key.startsWith(name) &&
    key[name.length] === "/" &&
    LEASE_HEX.test(key.slice(name.length + 1))
  );
}
