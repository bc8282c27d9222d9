import type { IKeyValue } from "etcd3";
import type { EtcdClient } from "./common/client.js";
import { timerIn, type Timer } from "./common/clock.js";
import { KeyWatch } from "./common/watch.js";

export interface KeyListener {
  /** Only events after this store revision concern the listener. */
  fromRevision: bigint;
  event(type: "put" | "delete", kv: IKeyValue): void;
  resync(): void;
}

/** How long a watch on a session's own key outlives its last holder, ready for the next one. */
export const IDLE_WATCH_MS = 30_000;

/**
 * One watch per key the session owns, shared by every successive holder of that key: locking a name
 * again and again through one session sets up no new watch, and no extra read, on the hot path.
 * (Creating and cancelling a watch per lock also makes etcd3 tear down and re-dial its shared watch
 * stream whenever the last watcher goes, with a growing backoff.)
 */
export class KeyWatches {
  readonly #client: EtcdClient;
  readonly #resyncMs: () => number;
  readonly #entries = new Map<string, { watch: KeyWatch; listeners: Set<KeyListener>; idle: Timer | undefined }>();

  readonly #cancelTimeoutMs: number;

  constructor(client: EtcdClient, resyncMs: () => number, cancelTimeoutMs: number) {
    this.#client = client;
    this.#resyncMs = resyncMs;
    this.#cancelTimeoutMs = cancelTimeoutMs;
  }

  /** Delivers events on `key` after `listener.fromRevision`; returns the unsubscribe. */
  subscribe(key: string, listener: KeyListener): () => void {
    let entry = this.#entries.get(key);
    if (!entry) {
      const listeners = new Set<KeyListener>();
      const watch = new KeyWatch(this.#client, { key }, listener.fromRevision + 1n, this.#resyncMs(), this.#cancelTimeoutMs, {
        event: (type, kv) => {
          for (const l of listeners) if (BigInt(kv.mod_revision) > l.fromRevision) l.event(type, kv);
        },
        resync: () => {
          for (const l of listeners) l.resync();
        },
      });
      entry = { watch, listeners, idle: undefined };
      this.#entries.set(key, entry);
    }
    const current = entry;
    current.idle?.cancel();
    current.idle = undefined;
    current.listeners.add(listener);
    return () => {
      if (!current.listeners.delete(listener) || current.listeners.size > 0) return;
      if (this.#entries.get(key) !== current) return; // closed meanwhile (its session ended): no timer
      current.idle = timerIn(IDLE_WATCH_MS, () => {
        if (current.listeners.size > 0 || this.#entries.get(key) !== current) return;
        this.#entries.delete(key);
        void current.watch.close();
      });
    };
  }

  /** Cancels every watch and timer. */
  async close(): Promise<void> {
    const entries = [...this.#entries.values()];
    this.#entries.clear();
    for (const e of entries) e.idle?.cancel();
    await Promise.all(entries.map((e) => e.watch.close()));
  }
}
