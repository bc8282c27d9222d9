import { hashString, mix32 } from "./hash.js";

/** A live member as every member sees it: `id` is unique (its key), `identity` is what it is placed by. */
export interface Member {
  readonly id: string;
  readonly identity: string;
}

/**
 * Which member should own each shard: rendezvous hashing with bounded load (design: Shards). Every
 * (shard, member) pair has a score, a hash of both; pairs are taken best score first, and a shard goes
 * to the member of its best remaining pair that still has room. Room is exact balance: with S shards
 * and M members, S mod M members get ceil(S/M) and the rest floor(S/M).
 *
 * A pure function of the member set (order does not matter), so members that see the same membership
 * compute the same assignment without talking to each other. Members are placed by identity, so a
 * process that restarts under the same identity gets (mostly) the same shards back. Movement: a leave
 * moves the leaver's shards and, rarely, a few more where the freed room lets a shard go to a member it
 * scores better with; a join moves about S/(M+1) (the unit tests bound both).
 *
 * Returns the owner's `id` of each shard (empty array when there are no members). O(S·M log(S·M)).
 */
export function assignShards(members: readonly Member[], shards: number): string[] {
  const sorted = [...members].sort((a, b) => cmp(a.identity, b.identity) || cmp(a.id, b.id));
  const m = sorted.length;
  if (m === 0) return [];
  const floor = Math.floor(shards / m);
  let extras = shards % m; // members that may still take floor + 1
  const memberHash = sorted.map((x) => hashString(x.identity));
  const shardHash = Array.from({ length: shards }, (_, s) => mix32(Math.imul(s + 1, 0x9e3779b1)));
  const score = new Uint32Array(shards * m);
  for (let s = 0; s < shards; s++) {
    for (let i = 0; i < m; i++) score[s * m + i] = mix32(memberHash[i]! ^ shardHash[s]!);
  }
  const order = bestFirst(score);
  const owner = new Int32Array(shards).fill(-1);
  const load = new Uint32Array(m);
  let left = shards;
  for (let k = 0; k < order.length && left > 0; k++) {
    const p = order[k]!;
    const s = Math.floor(p / m);
    const i = p % m;
    if (owner[s] !== -1) continue;
    if (load[i]! < floor) {
      // within its floor: always room
    } else if (load[i] === floor && extras > 0) extras--;
    else continue;
    owner[s] = i;
    load[i]!++;
    left--;
  }
  return Array.from(owner, (i) => sorted[i]!.id);
}

/**
 * Pair indexes (shard × M + member) by score, best first; ties (members of one identity) by index: fully
 * deterministic. Up to 2^21 pairs, each sort key (inverted score, index) fits a double's 53 bits exactly
 * and a typed array's numeric sort does the work (ten times a comparator's speed).
 */
function bestFirst(score: Uint32Array): Uint32Array {
  const n = score.length;
  const order = new Uint32Array(n);
  if (n <= 2 ** 21) {
    const keys = new Float64Array(n);
    for (let p = 0; p < n; p++) keys[p] = (0xffffffff - score[p]!) * 2 ** 21 + p;
    keys.sort();
    for (let p = 0; p < n; p++) order[p] = keys[p]! % 2 ** 21;
    return order;
  }
  for (let p = 0; p < n; p++) order[p] = p;
  return order.sort((a, b) => score[b]! - score[a]! || a - b);
}

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** How many shards change owner from `before` to `after` (shards missing from one side count as moved). */
export function countMoves(before: readonly string[], after: readonly string[]): number {
  let moves = 0;
  for (let s = 0; s < Math.max(before.length, after.length); s++) if (before[s] !== after[s]) moves++;
  return moves;
}
