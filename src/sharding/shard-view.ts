import { linkedController, onAbort, untilWoken } from "../common/abort.js";
import { KeyWatch, type KeyEvent } from "../etcd/key-watch.js";
import { inQueue } from "../etcd/keyspace.js";
import { isCompacted } from "../etcd/errors.js";
import { range, retryRead } from "../etcd/kv.js";
import { ClientClosedError } from "../errors.js";
import type { SessionContext } from "../session/context.js";
import type { Member } from "./assignment.js";

/** A member of a sharded group as read from etcd: `id` is its lease in hex (its key's last segment). */
export interface GroupMember extends Member {
  readonly createRevision: bigint;
}

/** The holder of one shard as read from etcd: the oldest key of the shard's election. */
export interface ShardHolder {
  readonly identity: string;
  readonly token: bigint;
  readonly key: string;
}

/** Members and shard holders of a group, read together at one revision. */
export interface ShardView {
  readonly revision: bigint;
  /** Live members, oldest first. */
  readonly members: readonly GroupMember[];
  /** The holder of each shard (index = shard), undefined where nobody holds it. */
  readonly holders: readonly (ShardHolder | undefined)[];
}

/** The name of the members' queue of group `name`. */
export const membersName = (name: string): string => `${name}/members`;
/** The election name of shard `shard` of group `name`. */
export const shardName = (name: string, shard: number): string => `${name}/shards/${shard}`;

const SHARD_KEY = /^(0|[1-9][0-9]{0,5})\/([0-9a-f]{1,16})$/;

/** One candidate key of a shard's election. */
interface Candidate {
  key: string;
  createRevision: bigint;
  identity: string;
}

/** The shard a key of the group's `shards/` belongs to, or undefined (a member key, another name...). */
function shardOfKey(shardsPrefix: string, shards: number, key: string): number | undefined {
  if (!key.startsWith(shardsPrefix)) return undefined;
  const m = SHARD_KEY.exec(key.slice(shardsPrefix.length));
  const shard = m ? Number(m[1]) : shards;
  return shard < shards ? shard : undefined;
}

const byCreate = (a: { createRevision: bigint }, b: { createRevision: bigint }): number =>
  a.createRevision < b.createRevision ? -1 : a.createRevision > b.createRevision ? 1 : 0;

/**
 * The group as last read plus the watch's events since (pure, no I/O). A read replaces everything; an
 * event applies only if it is newer than the last read (a watch that lags, or resumes after a re-read,
 * replays events the read already has: applied, they would put back a state the read says is gone).
 * An event costs O(candidates of its shard): `holders` is kept up to date in place, never rebuilt.
 */
export class GroupState {
  readonly #group: string;
  readonly #shardsPrefix: string;
  readonly #shards: number;
  #readRevision = 0n;
  /**
   * A member came or went since the read: holder events wait for the next read (which has them), so
   * the state stays the group at one moment, never old members with holders from after the change.
   */
  #membersChanged = false;
  /** The newest revision applied (a read's, or an event's). */
  revision = 0n;
  members: readonly GroupMember[] = [];
  #candidates: Candidate[][];
  /** The holder of each shard (index = shard): the oldest candidate key; updated in place. */
  readonly holders: (ShardHolder | undefined)[];

  constructor(name: string, shards: number) {
    this.#group = membersName(name);
    this.#shardsPrefix = `${name}/shards/`;
    this.#shards = shards;
    this.#candidates = Array.from({ length: shards }, () => []);
    this.holders = new Array<ShardHolder | undefined>(shards).fill(undefined);
  }

  /** Replaces the state with a read of every key under `<name>/` at `revision`. */
  reset(revision: bigint, kvs: readonly Candidate[]): void {
    this.#readRevision = revision;
    this.revision = revision;
    this.#membersChanged = false;
    const members: GroupMember[] = [];
    this.#candidates = Array.from({ length: this.#shards }, () => []);
    for (const kv of kvs) {
      if (inQueue(this.#group, kv.key)) {
        members.push({
          id: kv.key.slice(this.#group.length + 1),
          identity: kv.identity,
          createRevision: kv.createRevision,
        });
        continue;
      }
      const shard = shardOfKey(this.#shardsPrefix, this.#shards, kv.key);
      if (shard !== undefined) this.#candidates[shard]!.push(kv);
    }
    this.members = members.sort(byCreate);
    for (let s = 0; s < this.#shards; s++) {
      this.#candidates[s]!.sort(byCreate);
      this.#setHolder(s);
    }
  }

  /**
   * Applies a watch event. "members": a member came or went (the caller reads the group again);
   * "holders": a shard's candidates changed; undefined: nothing (not ours, not newer than the read, or
   * a holder event after a member event: the next read has it).
   */
  apply(e: KeyEvent): "members" | "holders" | undefined {
    if (e.modRevision <= this.#readRevision) return undefined;
    if (inQueue(this.#group, e.key)) {
      if (e.modRevision > this.revision) this.revision = e.modRevision;
      this.#membersChanged = true;
      return "members";
    }
    const shard = shardOfKey(this.#shardsPrefix, this.#shards, e.key);
    if (shard === undefined || this.#membersChanged) return undefined;
    if (e.modRevision > this.revision) this.revision = e.modRevision;
    const list = this.#candidates[shard]!.filter((c) => c.key !== e.key);
    if (e.type === "put") {
      list.push({ key: e.key, createRevision: e.createRevision, identity: e.value.toString() });
      list.sort(byCreate);
    }
    this.#candidates[shard] = list;
    this.#setHolder(shard);
    return "holders";
  }

  #setHolder(shard: number): void {
    const c = this.#candidates[shard]![0];
    this.holders[shard] = c && { identity: c.identity, token: c.createRevision, key: c.key };
  }
}

/** Keys per page of the group's read: a read of S = 10,000 shards is 10 pages, none near etcd's limits. */
export const GROUP_PAGE = 1000;

/**
 * The group as a latest-state stream, as `observeLeader` is for one election: a linearizable read of
 * `<name>/` first (in pages, at one revision), then one watch of it. A member joining or leaving reads
 * the group again (the assignment depends on it); a shard's candidate key coming or going is applied to
 * the last read as the watch tells it, in O(1) per event (each shard's holder is its oldest candidate),
 * so owning thousands of shards costs no read per shard. Re-reads every TTL/2 and after the watch is
 * made again (design: Watches are hints, reads are truth). The view yielded is the same object each
 * time, updated in place. Ends (throwing) when `signal` aborts or the session is closed.
 */
export async function* observeGroup(
  ctx: SessionContext,
  name: string,
  shards: number,
  userSignal: AbortSignal,
): AsyncGenerator<ShardView, void, undefined> {
  ctx.closed.throwIfAborted();
  const { controller, dispose } = linkedController(userSignal, ctx.closed);
  const signal = controller.signal;
  let dirty = true; // read again
  let patched = false; // tell the candidates' changes
  let wake: (() => void) | undefined;
  const poke = (): void => {
    dirty = true;
    wake?.();
  };
  const state = new GroupState(name, shards);
  const apply = (e: KeyEvent): void => {
    const changed = state.apply(e);
    if (changed === "members") return poke();
    if (changed === "holders") {
      patched = true;
      wake?.();
    }
  };
  let heardDuringRead: KeyEvent[] | undefined;
  const heard = (e: KeyEvent): void => {
    if (heardDuringRead) heardDuringRead.push(e);
    else apply(e);
  };
  let watch: KeyWatch | undefined;
  const closeWatch = onAbort(signal, () => watch?.close());
  const endWithClient = (cause?: unknown): void =>
    controller.abort(new ClientClosedError("sharded group: the etcd3 client was closed", { cause }));
  const view: ShardView = {
    get revision() {
      return state.revision;
    },
    get members() {
      return state.members;
    },
    holders: state.holders,
  };
  try {
    for (;;) {
      signal.throwIfAborted();
      if (!dirty && !patched) {
        await untilWoken(signal, (w) => (wake = w));
        wake = undefined;
        continue;
      }
      if (dirty) {
        dirty = false;
        const events: KeyEvent[] = (heardDuringRead = []);
        let read: { revision: bigint; kvs: Candidate[] };
        try {
          read = await retryRead(() => readGroup(ctx, name), signal, ctx.logger);
        } finally {
          heardDuringRead = undefined;
        }
        state.reset(read.revision, read.kvs);
        // Changes after the read (an earlier one is in it: GroupState drops it) apply on top of it.
        for (const e of events) apply(e);
        signal.throwIfAborted();
        // The watch starts right after the first read, so no change after it is missed.
        watch ??= new KeyWatch(
          ctx,
          { prefix: `${name}/` },
          { startRevision: read.revision + 1n, resyncMs: ctx.resyncMs() },
          { event: heard, resync: poke, ended: (err) => endWithClient(err) },
        );
        if (dirty) continue; // a member changed meanwhile: read again before telling
      }
      patched = false;
      yield view;
    }
  } finally {
    closeWatch();
    dispose();
    watch?.close();
  }
}

/**
 * Every key under `<name>/` and the revision it was read at: the first page linearizably, the next ones
 * at that revision (one consistent snapshot, in pages of GROUP_PAGE keys). Compacted under our feet
 * (a page at a revision etcd no longer has): read again from the start.
 */
async function readGroup(ctx: SessionContext, name: string): Promise<{ revision: bigint; kvs: Candidate[] }> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await readGroupOnce(ctx, name);
    } catch (err) {
      if (!isCompacted(err) || attempt >= 3) throw err;
    }
  }
}

async function readGroupOnce(ctx: SessionContext, name: string): Promise<{ revision: bigint; kvs: Candidate[] }> {
  const end = ctx.keyspace.rangeEnd(`${name}/`);
  let key: Buffer = ctx.keyspace.full(`${name}/`);
  let revision: string | undefined;
  const kvs: Candidate[] = [];
  for (;;) {
    const res = await range(
      ctx,
      { key, range_end: end, limit: GROUP_PAGE, ...(revision !== undefined && { revision }) },
      `read the sharded group "${name}"`,
    );
    revision ??= res.header.revision;
    for (const kv of res.kvs) {
      kvs.push({
        key: ctx.keyspace.relative(kv.key),
        createRevision: BigInt(kv.create_revision),
        identity: kv.value.toString(),
      });
    }
    const last = res.kvs.at(-1);
    if (!res.more || !last) return { revision: BigInt(revision), kvs };
    key = Buffer.concat([Buffer.from(last.key), Buffer.from([0])]); // the next key after the last
  }
}
