import { timerIn, type Timer } from "../common/clock.js";
import { ClientClosedError, type PermissionDeniedError } from "../errors.js";
import type { Endpoint } from "./internals.js";
import type { Keyspace } from "./keyspace.js";
import type { RawWatchEvent, WatchStream } from "./watch-stream.js";

/** A change of one key, as a watch tells it (the key relative to the client's namespace). */
export interface KeyEvent {
  type: "put" | "delete";
  key: string;
  createRevision: bigint;
  modRevision: bigint;
  value: Buffer;
}

export interface KeyWatchHandlers {
  /** `from`: the member that delivered it, which has applied its revision (a read at it is served there). */
  event(event: KeyEvent, from: Endpoint): void;
  /**
   * The watch may have missed events (it was made again after a break or a compaction, or the periodic
   * re-read is due): read the truth again (design: Watches are hints, reads are truth).
   */
  resync(): void;
  /** The watch is in place (the first time only): from here on, no change goes untold. */
  started?(): void;
  /**
   * The watch was made again (after a break or a compaction): events may have been missed. Without this
   * handler: `resync()` (which then also stands for the periodic re-read).
   */
  remade?(): void;
  /** etcd refuses the watch (no permission to read): it is gone. Without this handler: `resync()`. */
  denied?(err: PermissionDeniedError): void;
  /**
   * The user's client was closed: the watch stream will never open again, so the watch and its re-read
   * timer are gone (noticed at the next re-read). Without this handler: a last `resync()`, whose read fails.
   */
  ended?(err: ClientClosedError): void;
}

export interface KeyWatchOptions {
  /** Tell events from this revision on (default: from when the watch is in place). */
  startRevision?: bigint;
  /** Ask for a re-read at least this often. */
  resyncMs: number;
  /** Only deletes (etcd leaves out the puts). */
  deletesOnly?: boolean;
}

/** One watch of a key or a prefix on the session's watch stream, with its periodic re-read. */
export class KeyWatch {
  readonly #cancel: () => void;
  readonly #resyncMs: number;
  readonly #handlers: KeyWatchHandlers;
  #timer: Timer | undefined;
  #closed = false;

  readonly #conn: { readonly closed: boolean } | undefined;

  /**
   * `on`: the session's watch stream and keyspace (a SessionContext has both), and its connection, which
   * tells when the client is closed for good (otherwise the re-read timer would re-arm forever).
   */
  constructor(
    on: { watches: WatchStream; keyspace: Keyspace; conn?: { readonly closed: boolean } },
    target: { key: string } | { prefix: string },
    options: KeyWatchOptions,
    handlers: KeyWatchHandlers,
  ) {
    const { watches: stream, keyspace } = on;
    this.#conn = on.conn;
    this.#handlers = handlers;
    this.#resyncMs = options.resyncMs;
    const key = "key" in target ? target.key : target.prefix;
    this.#cancel = stream.add(
      {
        key: keyspace.full(key),
        ...("prefix" in target ? { rangeEnd: keyspace.rangeEnd(target.prefix) } : {}),
        ...(options.startRevision !== undefined ? { startRevision: options.startRevision } : {}),
        ...(options.deletesOnly ? { deletesOnly: true } : {}),
      },
      {
        events: (events, from) => {
          for (const e of events) if (!this.#closed) handlers.event(toKeyEvent(keyspace, e), from);
        },
        created: (first) => {
          if (this.#closed) return;
          if (first) handlers.started?.();
          else if (handlers.remade) handlers.remade();
          else handlers.resync();
        },
        denied: (err) => {
          if (this.#closed) return;
          if (handlers.denied) handlers.denied(err);
          else handlers.resync();
        },
      },
    );
    this.#arm();
  }

  /** Stops listening and cancels the watch and its timer. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#timer?.cancel();
    this.#cancel();
  }

  #arm(): void {
    this.#timer = timerIn(this.#resyncMs, () => {
      if (this.#closed) return;
      if (this.#conn?.closed) {
        this.close();
        if (this.#handlers.ended) this.#handlers.ended(new ClientClosedError("watch: the etcd3 client was closed"));
        else this.#handlers.resync();
        return;
      }
      this.#handlers.resync();
      this.#arm();
    });
  }
}

function toKeyEvent(keyspace: Keyspace, e: RawWatchEvent): KeyEvent {
  return {
    type: e.type === "Delete" ? "delete" : "put",
    key: keyspace.relative(e.kv.key),
    createRevision: BigInt(e.kv.create_revision),
    modRevision: BigInt(e.kv.mod_revision),
    value: e.kv.value,
  };
}
