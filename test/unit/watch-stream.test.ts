import { EventEmitter } from "node:events";
import { afterEach, describe, expect, it, vi } from "vitest";
import { silentLogger } from "../../src/common/logger.js";
import type { Connection } from "../../src/etcd/connection.js";
import type { Endpoint } from "../../src/etcd/internals.js";
import { WatchStream, type WatchHandlers } from "../../src/etcd/watch-stream.js";
import { KeyWatch } from "../../src/etcd/key-watch.js";
import { Keyspace } from "../../src/etcd/keyspace.js";

interface Sent {
  create_request?: { watch_id: string; key: Buffer };
  cancel_request?: { watch_id: string };
  progress_request?: object;
}

/** A Watch stream etcd would answer: the test writes the answers. */
class FakeStream extends EventEmitter {
  readonly sent: Sent[] = [];
  cancelled = false;
  write(req: Sent): boolean {
    this.sent.push(req);
    return true;
  }
  cancel(): void {
    this.cancelled = true;
  }
  end(): void {}
  answer(res: Partial<{ watch_id: string; created: boolean; canceled: boolean; cancel_reason: string }>): void {
    this.emit("data", {
      watch_id: "0",
      created: false,
      canceled: false,
      compact_revision: "0",
      cancel_reason: "",
      events: [],
      ...res,
    });
  }
  creates(): string[] {
    return this.sent.flatMap((r) => (r.create_request ? [r.create_request.key.toString()] : []));
  }
}

/**
 * A connection whose every stream is a FakeStream, on one endpoint. `keepalivesAcked`: a keepalive was
 * just acknowledged through it, whenever asked.
 */
function fakeConn({ keepalivesAcked = false } = {}): {
  conn: Connection & { closed: boolean };
  streams: FakeStream[];
  refreshes: () => number;
  resets: string[];
} {
  const streams: FakeStream[] = [];
  const resets: string[] = [];
  let refreshes = 0;
  const endpoint = { address: "e0" } as Endpoint;
  const conn = {
    closed: false,
    endpoint,
    ackedAt: () => (keepalivesAcked ? performance.now() : undefined),
    stream: () => {
      const stream = new FakeStream();
      streams.push(stream);
      return Promise.resolve({ stream, endpoint });
    },
    failed: (e: Endpoint, options?: { reset?: boolean }) => void (options?.reset && resets.push(e.address)),
    refreshToken: () => void refreshes++,
  };
  return { conn: conn as unknown as Connection & { closed: boolean }, streams, refreshes: () => refreshes, resets };
}

const handlers = (seen: string[], label: string): WatchHandlers => ({
  events: () => seen.push(`${label}:events`),
  created: (first) => seen.push(`${label}:created:${first}`),
});

const busyWait = (ms: number): void => {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // block the event loop, as a user's synchronous callback does
  }
};

/** Opens `watches` with one watch etcd holds; returns its stream. */
async function oneLiveWatch(watches: WatchStream, streams: FakeStream[], seen: string[] = []): Promise<FakeStream> {
  const n = streams.length;
  watches.add({ key: Buffer.from("k") }, handlers(seen, "k"));
  await until(() => streams[n]?.creates().length === 1);
  const stream = streams[n]!;
  stream.answer({ watch_id: stream.sent[0]!.create_request!.watch_id, created: true });
  return stream;
}

/** Waits for `check` to hold, up to `ms`. */
const until = async (check: () => boolean, ms = 3000): Promise<void> => {
  const end = Date.now() + ms;
  while (!check() && Date.now() < end) await new Promise((resolve) => setTimeout(resolve, 5));
  expect(check()).toBe(true);
};

describe("the session's watch stream", () => {
  let watches: WatchStream | undefined;
  afterEach(() => watches?.close());

  it("a watch cancelled before etcd answered its create does not take the blame for a later refused create: the refused watch is made again", async () => {
    const { conn, streams } = fakeConn();
    watches = new WatchStream(conn, silentLogger, 5000);
    const seen: string[] = [];
    const cancelA = watches.add({ key: Buffer.from("a") }, handlers(seen, "a"));
    await until(() => streams[0]?.creates().length === 1);
    const stream = streams[0]!;
    const idA = stream.sent[0]!.create_request!.watch_id;
    cancelA(); // before etcd answered the create
    stream.answer({ watch_id: idA, created: true });
    stream.answer({ watch_id: idA, canceled: true });
    watches.add({ key: Buffer.from("b") }, handlers(seen, "b"));
    // etcd refuses b's create (as it does a duplicate id): answered under id -1, it can only be b's.
    stream.answer({ watch_id: "-1", created: true, canceled: true, cancel_reason: "mvcc: duplicate watch ID" });
    await until(() => stream.creates().filter((k) => k === "b").length === 2 || streams.length > 1);
    const id = [...stream.sent].reverse().find((r) => r.create_request)!.create_request!.watch_id;
    stream.answer({ watch_id: id, created: true });
    await until(() => seen.includes("b:created:false"));
    expect(seen).not.toContain("a:created:true");
  });

  it("a quiet stream is asked for progress and kept while it answers; one that stops answering is replaced, its channel reset", async () => {
    const { conn, streams, resets } = fakeConn();
    watches = new WatchStream(conn, silentLogger, 2000); // progress answers due within 1 s
    const seen: string[] = [];
    watches.add({ key: Buffer.from("k") }, handlers(seen, "k"));
    await until(() => streams[0]?.creates().length === 1);
    const stream = streams[0]!;
    stream.answer({ watch_id: stream.sent[0]!.create_request!.watch_id, created: true });
    const progress = (): number => stream.sent.filter((r) => r.progress_request).length;
    await until(() => progress() === 1, 5000);
    stream.answer({ watch_id: "-1" }); // etcd's progress notification
    await until(() => progress() === 2, 5000);
    expect(stream.cancelled).toBe(false);
    // Now it goes silent: replaced, and the watch made again on the new stream.
    await until(() => streams.length === 2, 5000);
    expect(stream.cancelled).toBe(true);
    expect(resets).toEqual(["e0"]);
    await until(() => streams[1]!.creates().length === 1);
  }, 15_000);

  it("with nothing left to watch, the stream and its check timer go; the next watch opens a stream again", async () => {
    const { conn, streams } = fakeConn();
    watches = new WatchStream(conn, silentLogger, 5000);
    const cancel = watches.add({ key: Buffer.from("k") }, handlers([], "k"));
    await until(() => streams[0]?.creates().length === 1);
    streams[0]!.answer({ watch_id: streams[0]!.sent[0]!.create_request!.watch_id, created: true });
    cancel();
    await until(() => streams[0]!.cancelled);
    expect(streams).toHaveLength(1); // none open in its place
    await oneLiveWatch(watches, streams);
    expect(streams).toHaveLength(2);
  });

  it("once the user closed the client, the stream closes by itself, with watches on it and nobody else asking", async () => {
    const { conn, streams } = fakeConn();
    watches = new WatchStream(conn, silentLogger, 5000);
    const stream = await oneLiveWatch(watches, streams);
    conn.closed = true;
    await until(() => stream.cancelled);
    expect(watches.size).toBe(0);
    watches.add({ key: Buffer.from("j") }, handlers([], "j"));
    await new Promise((resolve) => setImmediate(resolve));
    expect(streams).toHaveLength(1);
  });

  it("an unanswered request while keepalives are acknowledged through the member replaces only the watch stream; progress requests that member keeps leaving unanswered stop being sent, the stream kept", async () => {
    const { conn, streams, resets } = fakeConn({ keepalivesAcked: true });
    watches = new WatchStream(conn, silentLogger, 2000); // progress answers due within 1 s
    const first = await oneLiveWatch(watches, streams);
    const progress = (s: FakeStream): number => s.sent.filter((r) => r.progress_request).length;
    await until(() => progress(first) === 1, 5000);
    // Unanswered (as etcd 3.5.8-3.5.12 may leave it): the watch stream is replaced, our channel is not.
    await until(() => streams.length === 2, 5000);
    expect(first.cancelled).toBe(true);
    const second = streams[1]!;
    await until(() => second.creates().length === 1);
    second.answer({
      watch_id: [...second.sent].reverse().find((r) => r.create_request)!.create_request!.watch_id,
      created: true,
    });
    await until(() => progress(second) === 1, 5000);
    // Unanswered again: that member does not answer progress requests. The stream stays, unprobed.
    const quietFor = Date.now() + 5000;
    while (Date.now() < quietFor) await new Promise((resolve) => setTimeout(resolve, 100)); // observing a span
    expect(streams).toHaveLength(2);
    expect(second.cancelled).toBe(false);
    expect(progress(second)).toBe(1);
    expect(resets).toEqual([]);
  }, 20_000);

  it("a check that fires late, the event loop blocked past the answer window right after a progress request was written, is not a stall", async () => {
    const { conn, streams, resets } = fakeConn();
    watches = new WatchStream(conn, silentLogger, 2000); // progress answers due within 1 s
    const stream = await oneLiveWatch(watches, streams);
    const write = stream.write.bind(stream);
    let probes = 0;
    stream.write = (req: Sent): boolean => {
      const ok = write(req);
      if (req.progress_request && probes++ === 0) {
        // A user's callback blocks the loop before the request leaves; etcd answers a round trip after.
        setImmediate(() => {
          busyWait(1500);
          setTimeout(() => stream.answer({ watch_id: "-1" }), 20);
        });
      }
      return ok;
    };
    await until(() => probes === 1, 5000);
    await until(() => probes === 2, 5000); // answered: quiet again, so asked again
    expect(stream.cancelled).toBe(false);
    expect(streams).toHaveLength(1);
    expect(resets).toEqual([]);
  }, 15_000);
});

describe("a key watch", () => {
  it("whose stream never answers still asks for a re-read every resyncMs, and never after close (design: Watches are hints, reads are truth)", () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    try {
      // A stream that takes the watch and never says a word: not created, no event, no break.
      let cancelled = 0;
      const stream = { add: () => () => void cancelled++ } as unknown as WatchStream;
      let resyncs = 0;
      const watch = new KeyWatch(
        { watches: stream, keyspace: new Keyspace(Buffer.alloc(0)), conn: { closed: false } },
        { key: "n/1" },
        { resyncMs: 15_000 },
        { event: () => {}, resync: () => void resyncs++ },
      );
      vi.advanceTimersByTime(14_999);
      expect(resyncs).toBe(0);
      vi.advanceTimersByTime(1);
      expect(resyncs).toBe(1);
      vi.advanceTimersByTime(15_000 * 4);
      expect(resyncs).toBe(5);
      watch.close();
      vi.advanceTimersByTime(15_000 * 4);
      expect(resyncs).toBe(5);
      expect(cancelled).toBe(1);
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });
});
