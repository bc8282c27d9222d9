import { describe, expect, it } from "vitest";
import type { Endpoint } from "../../src/etcd/internals.js";
import { Keyspace } from "../../src/etcd/keyspace.js";
import type { KeyEvent } from "../../src/etcd/key-watch.js";
import type { WatchHandlers, WatchStream, WatchTarget } from "../../src/etcd/watch-stream.js";
import { OwnKeyWatches, type OwnKeyHandlers } from "../../src/session/own-key-watches.js";

/** A watch stream whose watches the test drives: it tells events and re-makes as etcd would. */
function fakeStream(): { stream: WatchStream; watches: { target: WatchTarget; handlers: WatchHandlers }[] } {
  const watches: { target: WatchTarget; handlers: WatchHandlers }[] = [];
  const stream = {
    add(target: WatchTarget, handlers: WatchHandlers) {
      const w = { target, handlers };
      watches.push(w);
      return () => void watches.splice(watches.indexOf(w), 1);
    },
  } as unknown as WatchStream;
  return { stream, watches };
}

const keyspace = new Keyspace(Buffer.from("ns/"));
const from = {} as Endpoint;
const deleteAt = (revision: bigint): Parameters<WatchHandlers["events"]>[0] => [
  {
    type: "Delete",
    kv: { key: Buffer.from("ns/m/1"), create_revision: "0", mod_revision: String(revision), value: Buffer.alloc(0) },
  } as never,
];

function holder(fromRevision: bigint): OwnKeyHandlers & { events: KeyEvent[]; resyncs: number } {
  const h = {
    fromRevision,
    events: [] as KeyEvent[],
    resyncs: 0,
    event: (e: KeyEvent) => void h.events.push(e),
    resync: () => void h.resyncs++,
    denied: () => {},
  };
  return h;
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

describe("a session's shared watch of its own key", () => {
  it("a holder subscribing from a revision the running watch is past gets a delete it told before, once", async () => {
    const { stream, watches } = fakeStream();
    const own = new OwnKeyWatches(stream, keyspace, () => 60_000);
    const first = holder(5n);
    own.subscribe("m/1", first)();
    expect(watches).toHaveLength(1);
    watches[0]!.handlers.created(true);
    watches[0]!.handlers.events(deleteAt(12n), from); // told to nobody: no holder
    const late = holder(10n); // its turn was confirmed at 10: the delete at 12 is its own
    own.subscribe("m/1", late);
    expect(late.events).toEqual([]); // in a microtask, not inside subscribe
    await turn();
    expect(late.events.map((e) => [e.type, e.modRevision])).toEqual([["delete", 12n]]);
    const after = holder(12n); // confirmed at or after the delete: not its
    own.subscribe("m/1", after);
    await turn();
    expect(after.events).toEqual([]);
    own.close();
  });

  it("a re-make while nobody held the watch makes the next holder read again, and only that one", async () => {
    const { stream, watches } = fakeStream();
    const own = new OwnKeyWatches(stream, keyspace, () => 60_000);
    own.subscribe("m/1", holder(5n))();
    watches[0]!.handlers.created(true);
    watches[0]!.handlers.created(false); // the stream broke (or a compaction): made again from now
    const next = holder(10n);
    const unsubscribe = own.subscribe("m/1", next);
    await turn();
    expect(next.resyncs).toBe(1);
    unsubscribe();
    const later = holder(20n); // the re-make was told to the holder before it
    own.subscribe("m/1", later);
    await turn();
    expect(later.resyncs).toBe(0);
    own.close();
  });
});
