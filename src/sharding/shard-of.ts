import { InvalidArgumentError } from "../errors.js";
import { hashString } from "./hash.js";

/**
 * The most shards a {@link ShardedElector} takes: what has been measured to work (bench/sharded.ts,
 * docs/sharded-elector.md): one member alone owned 2,000 in 6 s at TTL 3 s and in 9 s at TTL 10 s,
 * with one session throughout, and handed them all over within the stop's bound.
 */
export const MAX_SHARDS = 2000;

/** The most shards `shardOf` maps to (a hash: no etcd cost, so more than an elector takes). */
export const MAX_SHARD_OF = 100_000;

/** Throws InvalidArgumentError unless `shards` is a whole number from 1 to `max`. */
export function validateShardCount(shards: unknown, max = MAX_SHARDS): number {
  if (typeof shards !== "number" || !Number.isInteger(shards) || shards < 1 || shards > max) {
    throw new InvalidArgumentError(
      `shards must be a whole number from 1 to ${max}, got ${typeof shards === "number" ? String(shards) : typeof shards}`,
    );
  }
  return shards;
}

/**
 * The shard (0 to `shards` - 1) a work item belongs to: a hash of its key's UTF-8 bytes, the same in
 * every process and every version of this library, so all members agree where `customer-42` lives.
 * Changing the shard count remaps most keys: choose it once, larger than the most members you expect.
 *
 * ```ts
 * if (sharded.owned().includes(shardOf("customer-42", 64))) await bill("customer-42");
 * ```
 */
export function shardOf(key: string, shards: number): number {
  if (typeof key !== "string") throw new InvalidArgumentError(`shardOf: key must be a string, got ${typeof key}`);
  return hashString(key) % validateShardCount(shards, MAX_SHARD_OF);
}
