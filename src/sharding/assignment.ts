import { hashString, mix32 } from "./hash.js";

/** A live member as every member sees it: `id` is unique (its key), `identity` is what it is placed by. */
export interface Member {
  readonly id: string;
  readonly identity: string;
}

/**
 * Which member should own each shard: rendezvous hashing with bounded load, sticky (design: Shards).
 * Every (shard, member) pair has a score, a hash of the shard and the member's identity. Quotas are
 * exact balance: with S shards and M members, S mod M members get ceil(S/M), the rest floor(S/M); the
 * ceil quotas go first to members that hold ceil(S/M) or more now (so they give up the least), the rest
 * by the hash of the identity (not by how many they hold, which changes while shards move). Each member keeps
 * the shards it holds now, up to its quota (its best-scored ones); every other shard (no holder, a
 * holder that is no longer a member, or over a quota) goes, in shard order, to its best-scored member
 * that still has room.
 *
 * So a leave moves exactly the leaver's shards (the others' quotas only grow), and a join exactly the
 * newcomer's share, floor(S/(M+1)) (the members holding the most keep the ceil quotas); once every
 * shard is held where this says, computing it again moves nothing. Computed again from any state on the
 * way (some shards released, some taken), it gives the same owners: a transition moves each shard once. A stateless exactly balanced scheme
 * cannot do this: keeping every leave to the leaver's shards forces a fixed preference order per shard
 * (plain rendezvous), which no exactly balanced scheme is for every member set; hence the holders.
 *
 * A pure function of the member set (order does not matter) and the holders, so members that see the
 * same group compute the same. Members are placed by identity, so a process that restarts under the
 * same identity (a new lease) is given back the shards it held when the others are full.
 *
 * `holders[s]` is the member `id` holding shard s now (undefined: none). Returns the owner's `id` of
 * each shard (an empty array when there are no members). O(S log S + S × M) at most.
 */
export function assignShards(
  members: readonly Member[],
  shards: number,
  holders: readonly (string | undefined)[] = [],
): string[] {
  const sorted = [...members].sort((a, b) => cmp(a.identity, b.identity) || cmp(a.id, b.id));
  const m = sorted.length;
  if (m === 0) return [];
  const index = new Map(sorted.map((x, i) => [x.id, i]));
  const memberHash = sorted.map((x) => hashString(x.identity));
  const score = (s: number, i: number): number => mix32(memberHash[i]! ^ mix32(Math.imul(s + 1, 0x9e3779b1)));
  const held: number[][] = sorted.map(() => []);
  for (let s = 0; s < shards; s++) {
    const holder = holders[s];
    const i = holder === undefined ? undefined : index.get(holder);
    if (i !== undefined) held[i]!.push(s);
  }
  const floor = Math.floor(shards / m);
  const quota = new Uint32Array(m).fill(floor);
  // Ceil quotas first to the members holding at least ceil(S/M) (each saves a move), then by hash alone.
  // Not by how many they hold: that changes with every release and acquisition of a transition, and the
  // quotas with it (shards moving twice). This rank holds still: a member at ceil keeps ceil, one below
  // ceil reaches it only with a ceil quota.
  const full = (i: number): number => (held[i]!.length >= Math.ceil(shards / m) ? 1 : 0);
  const ranked = sorted.map((_, i) => i).sort((a, b) => full(b) - full(a) || memberHash[a]! - memberHash[b]! || a - b);
  for (let k = 0; k < shards % m; k++) quota[ranked[k]!]!++;
  const owner = new Int32Array(shards).fill(-1);
  const load = new Uint32Array(m);
  for (let i = 0; i < m; i++) {
    const mine = held[i]!;
    if (mine.length > quota[i]!) mine.sort((a, b) => score(b, i) - score(a, i) || a - b);
    for (const s of mine.slice(0, quota[i])) owner[s] = i;
    load[i] = Math.min(mine.length, quota[i]!);
  }
  for (let s = 0; s < shards; s++) {
    if (owner[s] !== -1) continue;
    let best = -1;
    let bestScore = -1;
    for (let i = 0; i < m; i++) {
      if (load[i]! >= quota[i]!) continue;
      const sc = score(s, i);
      if (sc > bestScore) {
        best = i;
        bestScore = sc;
      }
    }
    owner[s] = best;
    load[best]!++;
  }
  return Array.from(owner, (i) => sorted[i]!.id);
}

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** How many shards change owner from `before` to `after` (shards missing from one side count as moved). */
export function countMoves(before: readonly string[], after: readonly string[]): number {
  let moves = 0;
  for (let s = 0; s < Math.max(before.length, after.length); s++) if (before[s] !== after[s]) moves++;
  return moves;
}
