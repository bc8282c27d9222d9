import { timerIn, type Timer } from "../common/clock.js";
import { KeyWatch, type KeyEvent } from "../etcd/key-watch.js";
import type { Keyspace } from "../etcd/keyspace.js";
import type { WatchStream } from "../etcd/watch-stream.js";

export interface KeyListener {
  /** Only events after this store revision concern the listener. */
  fromRevision: bigint;
  event(event: KeyEvent): void;
  resync(): void;
}

/** How long a watch on a session's own key outlives its last holder, ready for the next one. */
const IDLE_WATCH_MS = 30_000;

interface Entry {
  watch: KeyWatch;
  listeners: Set<KeyListener>;
  idle: Timer | undefined;
}

/**
 * One watch per key the session owns, shared by every successive holder of that key: locking a name
 * again and again through one session sets up no new watch, and no extra read, on the hot path.
 */
export class OwnKeyWatches {
  readonly #stream: WatchStream;
  readonly #keyspace: Keyspace;
  readonly #resyncMs: () => number;
  readonly #entries = new Map<string, Entry>();

  constructor(stream: WatchStream, keyspace: Keyspace, resyncMs: () => number) {
    this.#stream = stream;
    this.#keyspace = keyspace;
    this.#resyncMs = resyncMs;
  }

  /** Delivers events on `key` after `listener.fromRevision`; returns the unsubscribe. */
  subscribe(key: string, listener: KeyListener): () => void {
    const entry = this.#entries.get(key) ?? this.#add(key, listener.fromRevision + 1n);
    entry.idle?.cancel();
    entry.idle = undefined;
    entry.listeners.add(listener);
    return () => {
      if (!entry.listeners.delete(listener) || entry.listeners.size > 0) return;
      if (this.#entries.get(key) !== entry) return; // closed meanwhile (its session ended): no timer
      entry.idle = timerIn(IDLE_WATCH_MS, () => {
        if (entry.listeners.size > 0 || this.#entries.get(key) !== entry) return;
        this.#entries.delete(key);
        entry.watch.close();
      });
    };
  }

  /** Cancels every watch and timer. */
  close(): void {
    for (const e of this.#entries.values()) {
      e.idle?.cancel();
      e.watch.close();
    }
    this.#entries.clear();
  }

  #add(key: string, startRevision: bigint): Entry {
    const listeners = new Set<KeyListener>();
    const watch = new KeyWatch({ watches: this.#stream, keyspace: this.#keyspace }, { key }, { startRevision, resyncMs: this.#resyncMs() }, {
      event: (e) => {
        for (const l of listeners) if (e.modRevision > l.fromRevision) l.event(e);
      },
      resync: () => {
        for (const l of listeners) l.resync();
      },
    });
    const entry: Entry = { watch, listeners, idle: undefined };
    this.#entries.set(key, entry);
    return entry;
  }
}
