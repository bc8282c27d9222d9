import { now, timerIn, type Timer } from "../common/clock.js";
import { KeyWatch, type KeyEvent } from "../etcd/key-watch.js";
import type { Keyspace } from "../etcd/keyspace.js";
import type { PermissionDeniedError } from "../errors.js";
import type { WatchStream } from "../etcd/watch-stream.js";

export interface OwnKeyHandlers {
  /** Only events after this store revision concern the holder. */
  fromRevision: bigint;
  event(event: KeyEvent): void;
  resync(): void;
  /** etcd refuses the watch of the key (no permission to read it): nothing will tell of it any more. */
  denied(err: PermissionDeniedError): void;
}

/** How long a watch on a session's own key outlives its last holder, ready for the next one. */
const IDLE_WATCH_MS = 30_000;

interface Entry {
  watch: KeyWatch;
  holders: Set<OwnKeyHandlers>;
  /** When (monotonic ms) the last holder left; undefined while one subscribes. */
  idleSince: number | undefined;
  /** Looks at `idleSince` when due; one at a time, so locking and unlocking arms no timer per lock. */
  timer: Timer | undefined;
  /**
   * The latest delete of the key the watch told, held or not: a holder subscribes from a revision in the
   * past (the read that confirmed its turn), so a delete told before it subscribed may still be its own.
   */
  lastDelete: KeyEvent | undefined;
  /** The watch was made again while nobody held it: what it missed meanwhile, the next holder must read. */
  remadeUnheld: boolean;
}

/**
 * One watch per key the session owns, shared by every successive holder of that key: locking a name
 * again and again through one session sets up no new watch, and no extra read, on the hot path. It
 * carries deletes only: a hold ends when its key is deleted, and a key replaced was deleted first (a
 * put keeps the create revision of the key it overwrites), so the put of every lock need not travel.
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

  /**
   * Delivers events on `key` after `holder.fromRevision`, those the running watch told before this call
   * included (its latest delete; a re-read if it was made again meanwhile), in a microtask; returns the
   * unsubscribe.
   */
  subscribe(key: string, holder: OwnKeyHandlers): () => void {
    const entry = this.#entries.get(key) ?? this.#add(key, holder.fromRevision + 1n);
    entry.idleSince = undefined;
    entry.holders.add(holder);
    // The watch may be past `fromRevision` (reused from an earlier holder): a delete it told before now,
    // or a re-make that may have missed one, is this holder's too (design: Re-check after waiting).
    const told = entry.lastDelete && entry.lastDelete.modRevision > holder.fromRevision ? entry.lastDelete : undefined;
    const remade = entry.remadeUnheld;
    entry.remadeUnheld = false;
    if (told || remade) {
      queueMicrotask(() => {
        if (!entry.holders.has(holder)) return;
        if (told) holder.event(told);
        else holder.resync();
      });
    }
    return () => {
      if (!entry.holders.delete(holder) || entry.holders.size > 0) return;
      if (this.#entries.get(key) !== entry) return; // closed meanwhile (its session ended): no timer
      entry.idleSince = now();
      if (!entry.timer) this.#arm(key, entry, IDLE_WATCH_MS);
    };
  }

  /** Cancels every watch and timer. */
  close(): void {
    for (const e of this.#entries.values()) {
      e.timer?.cancel();
      e.watch.close();
    }
    this.#entries.clear();
  }

  /** Closes the watch once it has been idle for IDLE_WATCH_MS; a holder meanwhile puts that off. */
  #arm(key: string, entry: Entry, ms: number): void {
    entry.timer = timerIn(ms, () => {
      entry.timer = undefined;
      if (entry.idleSince === undefined || this.#entries.get(key) !== entry) return; // held again: its release re-arms
      const left = entry.idleSince + IDLE_WATCH_MS - now();
      if (left > 0) return this.#arm(key, entry, left);
      this.#entries.delete(key);
      entry.watch.close();
    });
  }

  #add(key: string, startRevision: bigint): Entry {
    const holders = new Set<OwnKeyHandlers>();
    const watch = new KeyWatch(
      { watches: this.#stream, keyspace: this.#keyspace },
      { key },
      { startRevision, resyncMs: this.#resyncMs(), deletesOnly: true },
      {
        event: (e) => {
          if (e.type === "delete" && (!entry.lastDelete || e.modRevision > entry.lastDelete.modRevision)) {
            entry.lastDelete = e;
          }
          for (const l of holders) if (e.modRevision > l.fromRevision) l.event(e);
        },
        remade: () => {
          if (holders.size === 0) entry.remadeUnheld = true;
          for (const l of holders) l.resync();
        },
        resync: () => {
          for (const l of holders) l.resync();
        },
        denied: (err) => {
          // The watch is gone: a later holder of the key gets a new one.
          if (this.#entries.get(key) === entry) this.#entries.delete(key);
          entry.timer?.cancel();
          watch.close();
          for (const l of [...holders]) l.denied(err);
        },
      },
    );
    const entry: Entry = {
      watch,
      holders,
      idleSince: undefined,
      timer: undefined,
      lastDelete: undefined,
      remadeUnheld: false,
    };
    this.#entries.set(key, entry);
    return entry;
  }
}
