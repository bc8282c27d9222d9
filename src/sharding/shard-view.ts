import type { IKeyValue } from "etcd3";
import { linkedController, onAbort } from "../common/abort.js";
import { KeyWatch, type KeyEvent } from "../etcd/key-watch.js";
import { inQueue } from "../etcd/keyspace.js";
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

/** Makes a view of the keys under `<name>/` (sorted by create revision, oldest first). */
export function toView(
  name: string,
  shards: number,
  kvs: readonly { key: string; createRevision: bigint; value: Buffer }[],
  revision: bigint,
): ShardView {
  const members: GroupMember[] = [];
  const holders: (ShardHolder | undefined)[] = new Array<ShardHolder | undefined>(shards).fill(undefined);
  const group = membersName(name);
  const shardsPrefix = `${name}/shards/`;
  for (const kv of kvs) {
    if (inQueue(group, kv.key)) {
      members.push({
        id: kv.key.slice(group.length + 1),
        identity: kv.value.toString(),
        createRevision: kv.createRevision,
      });
    } else if (kv.key.startsWith(shardsPrefix)) {
      const m = SHARD_KEY.exec(kv.key.slice(shardsPrefix.length));
      const shard = m ? Number(m[1]) : shards;
      if (shard < shards && !holders[shard]) {
        holders[shard] = { identity: kv.value.toString(), token: kv.createRevision, key: kv.key };
      }
    }
  }
  return { revision, members, holders };
}

/** Reads the group linearizably: one range of `<name>/` (members, shard candidates), oldest first. */
export async function readView(ctx: SessionContext, name: string, shards: number): Promise<ShardView> {
  const res = await range(
    ctx,
    {
      key: ctx.keyspace.full(`${name}/`),
      range_end: ctx.keyspace.rangeEnd(`${name}/`),
      sort_order: "Ascend",
      sort_target: "Create",
    },
    `read the sharded group "${name}"`,
  );
  const kvs = res.kvs.map((kv: IKeyValue) => ({
    key: ctx.keyspace.relative(kv.key),
    createRevision: BigInt(kv.create_revision),
    value: kv.value,
  }));
  return toView(name, shards, kvs, BigInt(res.header.revision));
}

/**
 * The group as a latest-state stream, as `observeLeader` is for one election: each item is a fresh
 * linearizable read; one watch of `<name>/` says when to read again, and only for what changes the
 * view (a member joining or leaving, a shard's holder going or changing, a first candidate of a shard
 * nobody holds). Candidates queueing behind a holder cost no read. Re-reads every TTL/2 and after the
 * watch is made again (design: Watches are hints, reads are truth). Ends (throwing) when `signal` aborts
 * or the session is closed.
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
  let dirty = true;
  let wake: (() => void) | undefined;
  let current: ShardView | undefined;
  const poke = (): void => {
    dirty = true;
    wake?.();
  };
  const group = membersName(name);
  const shardsPrefix = `${name}/shards/`;
  const matters = (e: KeyEvent): boolean => {
    if (inQueue(group, e.key)) return true;
    if (!e.key.startsWith(shardsPrefix)) return false;
    const m = SHARD_KEY.exec(e.key.slice(shardsPrefix.length));
    const shard = m ? Number(m[1]) : shards;
    if (shard >= shards) return false;
    const holder = current?.holders[shard];
    return holder === undefined
      ? e.type === "put"
      : e.key === holder.key || (e.type === "put" && e.createRevision < holder.token);
  };
  let heardDuringRead: KeyEvent[] | undefined;
  const heard = (e: KeyEvent): void => {
    if (heardDuringRead) heardDuringRead.push(e);
    else if (matters(e)) poke();
  };
  let watch: KeyWatch | undefined;
  const closeWatch = onAbort(signal, () => watch?.close());
  const endWithClient = (cause?: unknown): void =>
    controller.abort(new ClientClosedError("sharded group: the etcd3 client was closed", { cause }));
  try {
    for (;;) {
      signal.throwIfAborted();
      if (!dirty) {
        await new Promise<void>((resolve) => {
          const undo = onAbort(signal, () => resolve());
          wake = () => {
            undo();
            resolve();
          };
        });
        wake = undefined;
        continue;
      }
      dirty = false;
      const events: KeyEvent[] = (heardDuringRead = []);
      let view: ShardView;
      try {
        view = await retryRead(() => readView(ctx, name, shards), signal, ctx.logger);
      } finally {
        heardDuringRead = undefined;
      }
      current = view;
      if (events.some((e) => e.modRevision > view.revision && matters(e))) dirty = true;
      signal.throwIfAborted();
      watch ??= new KeyWatch(
        ctx,
        { prefix: `${name}/` },
        { startRevision: view.revision + 1n, resyncMs: ctx.resyncMs() },
        { event: heard, resync: poke, ended: (err) => endWithClient(err) },
      );
      yield view;
    }
  } finally {
    closeWatch();
    dispose();
    watch?.close();
  }
}
