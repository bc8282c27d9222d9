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

/**
 * The group as a latest-state stream, as `observeLeader` is for one election: a linearizable read of
 * `<name>/` first, then one watch of it. A member joining or leaving reads the group again (the
 * assignment depends on it); a shard's candidate key coming or going is applied to the last read as the
 * watch tells it (each shard's holder is its oldest candidate), so owning thousands of shards costs no
 * read per shard. Re-reads every TTL/2 and after the watch is made again (design: Watches are hints,
 * reads are truth). Ends (throwing) when `signal` aborts or the session is closed.
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
  const group = membersName(name);
  const shardsPrefix = `${name}/shards/`;
  let members: GroupMember[] = [];
  let candidates: Candidate[][] = [];
  let revision = 0n;
  const apply = (e: KeyEvent): void => {
    if (inQueue(group, e.key)) return poke();
    const shard = shardOfKey(shardsPrefix, shards, e.key);
    if (shard === undefined) return;
    const list = candidates[shard]!.filter((c) => c.key !== e.key);
    if (e.type === "put") {
      list.push({ key: e.key, createRevision: e.createRevision, identity: e.value.toString() });
      list.sort((a, b) => (a.createRevision < b.createRevision ? -1 : a.createRevision > b.createRevision ? 1 : 0));
    }
    candidates[shard] = list;
    if (e.modRevision > revision) revision = e.modRevision;
    patched = true;
    wake?.();
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
  try {
    for (;;) {
      signal.throwIfAborted();
      if (!dirty && !patched) {
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
      if (dirty) {
        dirty = false;
        const events: KeyEvent[] = (heardDuringRead = []);
        let read: { revision: bigint; kvs: Candidate[] };
        try {
          read = await retryRead(() => readGroup(ctx, name), signal, ctx.logger);
        } finally {
          heardDuringRead = undefined;
        }
        revision = read.revision;
        members = [];
        candidates = Array.from({ length: shards }, () => []);
        for (const kv of read.kvs) {
          if (inQueue(group, kv.key)) {
            members.push({
              id: kv.key.slice(group.length + 1),
              identity: kv.identity,
              createRevision: kv.createRevision,
            });
            continue;
          }
          const shard = shardOfKey(shardsPrefix, shards, kv.key);
          if (shard !== undefined) candidates[shard]!.push(kv);
        }
        // Changes after the read (an earlier one is in it) apply on top of it.
        for (const e of events) if (e.modRevision > read.revision) apply(e);
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
      yield {
        revision,
        members,
        holders: candidates.map((list) => {
          const c = list[0];
          return c && { identity: c.identity, token: c.createRevision, key: c.key };
        }),
      };
    }
  } finally {
    closeWatch();
    dispose();
    watch?.close();
  }
}

/** Every key under `<name>/` (oldest first) and the revision it was read at, linearizably. */
async function readGroup(ctx: SessionContext, name: string): Promise<{ revision: bigint; kvs: Candidate[] }> {
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
  return {
    revision: BigInt(res.header.revision),
    kvs: res.kvs.map((kv: IKeyValue) => ({
      key: ctx.keyspace.relative(kv.key),
      createRevision: BigInt(kv.create_revision),
      identity: kv.value.toString(),
    })),
  };
}
