import { InvalidArgumentError } from "../errors.js";
import { hashString } from "./hash.js";

/** The most shards a {@link ShardedElector} takes (each is an election: a key and a campaign). */
export const MAX_SHARDS = 100_000;

/** Throws InvalidArgumentError unless `shards` is a whole number from 1 to MAX_SHARDS. */
export function validateShardCount(shards: unknown): number {
  if (typeof shards !== "number" || !Number.isInteger(shards) || shards < 1 || shards > MAX_SHARDS) {
    throw new InvalidArgumentError(
      `shards must be a whole number from 1 to ${MAX_SHARDS}, got ${typeof shards === "number" ? String(shards) : typeof shards}`,
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
  return hashString(key) % validateShardCount(shards);
}
