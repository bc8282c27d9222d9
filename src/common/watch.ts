import type { IKeyValue, Watcher } from "etcd3";
import type { EtcdClient } from "./client.js";
import { timerIn, type Timer } from "./clock.js";

export interface KeyWatchHandlers {
  /** A put or delete under the watched key or prefix (keys relative to the client's namespace). */
  event(type: "put" | "delete", kv: IKeyValue): void;
  /**
   * The watch may have missed events (it reconnected, was compacted or canceled, or the periodic
   * re-read is due): read the truth again. Rule 8: watches are hints, reads are truth.
   */
  resync(): void;
}

/**
 * One watch on etcd3's multiplexed stream, kept alive across reconnects and compaction, that asks its
 * owner to re-read whenever it may have missed something, and at least every `resyncMs`.
 */
export class KeyWatch {
  readonly #client: EtcdClient;
  readonly #target: { key: string } | { prefix: string };
  readonly #handlers: KeyWatchHandlers;
  readonly #resyncMs: number;
  #watcher: Watcher | undefined;
  #resyncTimer: Timer | undefined;
  #closed = false;
  #restarting = false;

  constructor(
    client: EtcdClient,
    target: { key: string } | { prefix: string },
    startRevision: bigint | undefined,
    resyncMs: number,
    handlers: KeyWatchHandlers,
  ) {
    this.#client = client;
    this.#target = target;
    this.#handlers = handlers;
    this.#resyncMs = resyncMs;
    this.#attach(startRevision);
    this.#armResync();
  }

  /** Cancels the watch and its timer. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#resyncTimer?.cancel();
    await this.#detach();
  }

  #attach(startRevision: bigint | undefined, resyncOnConnect = false): void {
    let builder = this.#client.watch();
    builder = "key" in this.#target ? builder.key(this.#target.key) : builder.prefix(this.#target.prefix);
    if (startRevision !== undefined) builder = builder.startRevision(startRevision.toString());
    const watcher = builder.watcher();
    this.#watcher = watcher;
    let connectedBefore = resyncOnConnect;
    watcher.on("put", (kv) => this.#handlers.event("put", kv));
    watcher.on("delete", (kv) => this.#handlers.event("delete", kv));
    watcher.on("connected", () => {
      // The first connect starts from startRevision; a later one resumes after a dropped stream.
      if (connectedBefore) this.#handlers.resync();
      connectedBefore = true;
    });
    watcher.on("error", () => void this.#restart());
  }

  async #detach(): Promise<void> {
    const watcher = this.#watcher;
    this.#watcher = undefined;
    if (!watcher) return;
    watcher.removeAllListeners();
    watcher.on("error", () => {});
    await watcher.cancel().catch(() => {});
  }

  /** After compaction or cancel: watch again from now, and re-read once that watch is in place. */
  async #restart(): Promise<void> {
    if (this.#closed || this.#restarting) return;
    this.#restarting = true;
    try {
      await this.#detach();
      if (this.#closed) return;
      this.#attach(undefined, true);
    } finally {
      this.#restarting = false;
    }
  }

  #armResync(): void {
    if (this.#closed) return;
    this.#resyncTimer = timerIn(this.#resyncMs, () => {
      this.#handlers.resync();
      this.#armResync();
    });
  }
}
