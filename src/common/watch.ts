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
  /** The watch is in place (the first time only): from here on, no change goes untold. */
  started?(): void;
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
  readonly #cancelTimeoutMs: number;

  constructor(
    client: EtcdClient,
    target: { key: string } | { prefix: string },
    startRevision: bigint | undefined,
    resyncMs: number,
    cancelTimeoutMs: number,
    handlers: KeyWatchHandlers,
  ) {
    this.#client = client;
    this.#target = target;
    this.#handlers = handlers;
    this.#resyncMs = resyncMs;
    this.#cancelTimeoutMs = cancelTimeoutMs;
    tolerateLateCancels(client);
    this.#attach(startRevision);
    this.#armResync();
  }

  /**
   * Stops listening and cancels the watch and its timer. It does not wait for etcd to answer the cancel
   * (an unreachable etcd must not hold a caller up); the cancel itself gives up after `cancelTimeoutMs`.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#resyncTimer?.cancel();
    void this.#detach();
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
      else this.#handlers.started?.();
      connectedBefore = true;
    });
    watcher.on("error", () => this.#restart(watcher));
  }

  /** Cancels the current watcher, waiting for etcd's answer no longer than `cancelTimeoutMs`. */
  async #detach(): Promise<void> {
    const watcher = this.#watcher;
    this.#watcher = undefined;
    if (!watcher) return;
    quiet(watcher);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      watcher.cancel().catch(() => {}),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, this.#cancelTimeoutMs))),
    ]);
    clearTimeout(timer);
  }

  /**
   * etcd canceled the watch (its start revision was compacted, or the server gave up on it) and etcd3
   * has already dropped it, so there is nothing to cancel (cancelling it again would make etcd3 throw
   * on etcd's answer). Watch again from now, and re-read once the new watch is in place.
   */
  #restart(canceled: Watcher): void {
    if (this.#closed || this.#watcher !== canceled) return;
    quiet(canceled);
    this.#attach(undefined, true);
  }

  #armResync(): void {
    if (this.#closed) return;
    this.#resyncTimer = timerIn(this.#resyncMs, () => {
      this.#handlers.resync();
      this.#armResync();
    });
  }
}

/** Stops listening to a watcher; a late error from it goes nowhere. */
function quiet(watcher: Watcher): void {
  watcher.removeAllListeners();
  watcher.on("error", () => {});
}

const PATCHED = Symbol.for("etcd-election.tolerates-late-cancels");

/**
 * etcd3 1.1 throws from its watch stream's data handler (an uncaught error that ends the process) when a
 * "canceled" answer names a watch it no longer has. That happens when we cancel a watch while etcd's own
 * cancel of it (for compaction) is on its way: etcd answers both. Such an answer concerns nobody, so the
 * client's watch manager is taught, once, to drop it.
 */
function tolerateLateCancels(client: EtcdClient): void {
  type Manager = { handleResponse?: (res: { canceled?: boolean; watch_id?: string }) => void; watchers?: { id: string | null }[] };
  const manager = (client as unknown as { watchManager?: Manager & { [PATCHED]?: true } }).watchManager;
  if (!manager || typeof manager.handleResponse !== "function" || !Array.isArray(manager.watchers) || manager[PATCHED]) return;
  const original = manager.handleResponse.bind(manager);
  manager.handleResponse = (res) => {
    if (res.canceled && !manager.watchers!.some((w) => w.id === res.watch_id)) return;
    original(res);
  };
  manager[PATCHED] = true;
}
