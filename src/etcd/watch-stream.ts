import { Backoff, streamReopen, watchRemakeMs } from "../common/backoff.js";
import { now, timerAt, timerIn, type Timer } from "../common/clock.js";
import type { Logger } from "../common/logger.js";
import { PermissionDeniedError } from "../errors.js";
import { abandonStream, type Connection } from "./connection.js";
import { isInvalidToken, isPermissionDenied, isTransient } from "./errors.js";
import type { Endpoint, GrpcDuplex } from "./internals.js";

/** A key-value as etcd's watch reports it (full keys, the namespace included). */
export interface RawKeyValue {
  key: Buffer;
  value: Buffer;
  create_revision: string;
  mod_revision: string;
  lease: string;
}

export interface RawWatchEvent {
  /** etcd3's rpc.proto names them "Put" and "Delete". */
  type: "Put" | "Delete";
  kv: RawKeyValue;
}

export interface WatchTarget {
  key: Buffer;
  /** Watch [key, rangeEnd) instead of one key. */
  rangeEnd?: Buffer;
  /** Deliver events from this revision on (default: from now). */
  startRevision?: bigint;
  /** Deletes only: etcd leaves the puts out (its NOPUT filter). */
  deletesOnly?: boolean;
}

export interface WatchHandlers {
  /** `from`: the member whose stream delivered them (it has applied their revisions). */
  events(events: RawWatchEvent[], from: Endpoint): void;
  /**
   * The watch is in place. `first`: from its start revision, nothing goes untold. Otherwise it was made
   * again (the stream broke, or etcd canceled it for compaction) from now: events may have been missed,
   * the owner should read again.
   */
  created(first: boolean): void;
  /**
   * etcd refuses the watch even with a fresh auth token: the user may not read it. The watch is gone;
   * without this handler the owner is asked to read again (`created(false)`), and its read fails.
   */
  denied?(err: PermissionDeniedError): void;
}

interface Registration {
  /** Our id for it on the stream; a new one each time it is made again after etcd canceled it. */
  id: string;
  readonly target: WatchTarget;
  readonly handlers: WatchHandlers;
  everCreated: boolean;
  /** etcd refused it for want of auth, and the stream was re-opened with a fresh token since. */
  refusedForAuth: boolean;
  /** etcd holds it on the current stream (its create answered, not canceled since). */
  live: boolean;
  /** A re-make put off after an unexpected cancel. */
  retry: Timer | undefined;
}

/** A stream silent this long, with watches on it, is asked for progress (etcd ≥ 3.4 answers at once). */
const QUIET_MS = 2000;
/** How often a stream is looked at for silence and unanswered requests. */
const CHECK_MS = 500;
/** A check this late means the event loop was blocked: what we wrote before may not even have left. */
const BLOCK_GRACE_MS = 100;
/**
 * Progress requests left unanswered this many times in a row by a member that acknowledges our keepalives
 * meanwhile: that member does not answer them (etcd 3.5.8-3.5.12 with an unsynced watcher, etcd's gRPC
 * proxy, other etcd-compatible servers), and a silent stream there is not a stall.
 */
const PROBE_MISFIRES = 2;

/** The watch id etcd answers a refused create with (clientv3.InvalidWatchID). */
const INVALID_WATCH_ID = "-1";

interface WatchRequest {
  create_request?: { key: Buffer; range_end?: Buffer; start_revision?: string; watch_id: string; filters?: string[] };
  cancel_request?: { watch_id: string };
  progress_request?: Record<string, never>;
}

interface WatchResponse {
  watch_id: string;
  created: boolean;
  canceled: boolean;
  compact_revision: string;
  cancel_reason: string;
  events: RawWatchEvent[];
}

/**
 * One Watch stream per session, carrying every watch the session's primitives make, each under an id
 * we choose (etcd ≥ 3.4 takes client-chosen watch ids, so creates need not be serialised). The stream
 * is re-opened with backoff when it breaks, every watch made again from now and its owner told to read
 * again; a watch etcd cancels (compaction) is made again the same way. Answers for a watch we already
 * cancelled are dropped. Watches are hints: owners re-read on `created(false)` and periodically.
 */
export class WatchStream {
  readonly #conn: Connection;
  readonly #logger: Logger;
  readonly #openTimeoutMs: number;
  readonly #regs = new Map<string, Registration>();
  #stream: GrpcDuplex<WatchRequest, WatchResponse> | undefined;
  #endpoint: Endpoint | undefined;
  /**
   * Ids of the creates sent on this stream and not answered yet, in the order sent (etcd answers them in
   * that order; a refused one under id -1). A watch cancelled meanwhile stays until its answer comes.
   */
  #unanswered = new Set<string>();
  #opening = false;
  #retry: Timer | undefined;
  readonly #reopen = new Backoff(streamReopen);
  #nextId = 1;
  #closed = false;
  /** When (monotonic) the stream last said anything. */
  #heardAt = 0;
  /** When the oldest request still awaiting an answer (a create, a progress request) was sent. */
  #awaitingSince: number | undefined;
  #check: Timer | undefined;
  readonly #answerMs: number;
  /** Registrations etcd holds on the current stream (`live`), counted rather than walked every check. */
  #liveCount = 0;
  /** The request awaiting an answer is a progress request alone (no create). */
  #probing = false;
  /** Progress requests in a row left unanswered by each member whose keepalives were acknowledged. */
  readonly #misfires = new Map<Endpoint, number>();
  /** Members not sent progress requests any more (they do not answer them). */
  readonly #noProbe = new Set<Endpoint>();

  constructor(conn: Connection, logger: Logger, openTimeoutMs: number) {
    this.#conn = conn;
    this.#logger = logger;
    this.#openTimeoutMs = openTimeoutMs;
    this.#answerMs = Math.min(5000, Math.max(1000, openTimeoutMs / 2));
  }

  /** Number of watches in place or being made (for tests and metrics). */
  get size(): number {
    return this.#regs.size;
  }

  /** Starts watching; returns the cancel. */
  add(target: WatchTarget, handlers: WatchHandlers): () => void {
    if (this.#closed) return () => {};
    const reg: Registration = {
      id: String(this.#nextId++),
      target,
      handlers,
      everCreated: false,
      refusedForAuth: false,
      live: false,
      retry: undefined,
    };
    this.#regs.set(reg.id, reg);
    if (this.#stream) this.#create(reg);
    else this.#open();
    return () => this.#cancel(reg);
  }

  /** Ends the stream and every watch on it, and cancels the reconnect timer. */
  close(): void {
    this.#closed = true;
    for (const reg of this.#regs.values()) reg.retry?.cancel();
    this.#regs.clear();
    this.#retry?.cancel();
    this.#drop();
  }

  #cancel(reg: Registration): void {
    if (this.#regs.get(reg.id) !== reg) return;
    this.#regs.delete(reg.id);
    this.#setLive(reg, false);
    reg.retry?.cancel();
    // etcd answers the cancel (and maybe a compaction cancel crossing it); answers for unknown ids are dropped.
    if (this.#stream) this.#stream.write({ cancel_request: { watch_id: reg.id } });
  }

  #open(): void {
    if (this.#closed || this.#stream || this.#opening || this.#retry || this.#regs.size === 0) return;
    this.#opening = true;
    this.#conn.stream<WatchRequest, WatchResponse>("Watch", "watch", this.#openTimeoutMs, { requireLeader: true }).then(
      ({ stream, endpoint }) => {
        this.#opening = false;
        if (this.#closed || this.#regs.size === 0) return abandonStream(stream); // nothing to watch any more
        this.#stream = stream;
        this.#endpoint = endpoint;
        this.#heardAt = now();
        this.#awaitingSince = undefined;
        this.#armCheck(stream, endpoint);
        stream.on("data", (res) => this.#onResponse(res));
        stream.on("error", (err) => this.#broken(stream, endpoint, err));
        stream.on("end", () => this.#broken(stream, endpoint, undefined));
        for (const reg of this.#regs.values()) {
          reg.retry?.cancel();
          reg.retry = undefined;
          this.#create(reg);
        }
      },
      (err: unknown) => {
        this.#opening = false;
        this.#logger.warn({ err }, "watch stream could not be opened; retrying");
        this.#scheduleOpen();
      },
    );
  }

  #create(reg: Registration): void {
    if (!this.#stream) return;
    this.#unanswered.add(reg.id);
    this.#awaitingSince ??= now();
    this.#probing = false;
    const start = reg.everCreated ? undefined : reg.target.startRevision;
    this.#stream.write({
      create_request: {
        key: reg.target.key,
        ...(reg.target.rangeEnd ? { range_end: reg.target.rangeEnd } : {}),
        ...(start !== undefined ? { start_revision: start.toString() } : {}),
        ...(reg.target.deletesOnly ? { filters: ["Noput"] } : {}),
        watch_id: reg.id,
      },
    });
  }

  #onResponse(res: WatchResponse): void {
    this.#heardAt = now();
    this.#awaitingSince = undefined;
    if (this.#probing && this.#endpoint) this.#misfires.delete(this.#endpoint); // it answers progress requests
    this.#probing = false;
    // A create etcd refused before making the watch (no permission, an expired token) comes back under
    // id -1: it answers the oldest create still unanswered, which may be one we cancelled meanwhile.
    let id = String(res.watch_id);
    if (res.created) {
      if (id === INVALID_WATCH_ID && res.canceled) id = this.#unanswered.values().next().value ?? id;
      this.#unanswered.delete(id);
    }
    // Creates still unanswered: the clock for their answers starts again now.
    if (this.#unanswered.size > 0) this.#awaitingSince = this.#heardAt;
    const reg = this.#regs.get(id);
    if (!reg) return; // cancelled by us meanwhile (or a progress notification)
    if (res.canceled) return this.#canceledByEtcd(reg, res);
    if (res.created) {
      this.#reopen.reset();
      const first = !reg.everCreated;
      reg.everCreated = true;
      reg.refusedForAuth = false;
      this.#setLive(reg, true);
      reg.handlers.created(first);
    }
    if (res.events.length > 0 && this.#endpoint) reg.handlers.events(res.events, this.#endpoint);
  }

  /**
   * etcd canceled the watch: its start revision was compacted, or it refused or gave up on it. Make it
   * again from now under a new id (etcd may still hold the old one), and let the owner read again.
   */
  #canceledByEtcd(reg: Registration, res: WatchResponse): void {
    const compacted = res.compact_revision !== "0" && res.compact_revision !== "";
    this.#logger.debug(
      { watchId: reg.id, reason: res.cancel_reason, compactRevision: res.compact_revision },
      "etcd canceled a watch; watching again from now",
    );
    this.#regs.delete(reg.id);
    this.#stream?.write({ cancel_request: { watch_id: reg.id } });
    this.#setLive(reg, false);
    reg.id = String(this.#nextId++);
    reg.everCreated = true;
    this.#regs.set(reg.id, reg);
    if (isPermissionDenied(res.cancel_reason) || isInvalidToken(res.cancel_reason)) {
      // The token the stream was opened with may have expired (etcd 3.4 says "permission denied" for that
      // too): once per watch, open the stream again with a fresh one.
      if (!reg.refusedForAuth) {
        reg.refusedForAuth = true;
        return this.#reauthenticate();
      }
      // Refused again with a fresh token: the user may not read it. Retrying would authenticate again and
      // again (a bcrypt on etcd each time); the owner is told instead.
      if (isPermissionDenied(res.cancel_reason)) return this.#denied(reg, res.cancel_reason);
    }
    if (compacted) return this.#create(reg);
    // Anything else: not at once, so a watch etcd keeps refusing cannot spin.
    this.#logger.warn({ reason: res.cancel_reason }, "etcd canceled a watch; making it again in a second");
    reg.retry?.cancel();
    reg.retry = timerIn(watchRemakeMs, () => {
      reg.retry = undefined;
      if (this.#regs.get(reg.id) === reg && this.#stream) this.#create(reg);
    });
  }

  #denied(reg: Registration, reason: string): void {
    this.#regs.delete(reg.id);
    reg.retry?.cancel();
    const key = reg.target.key.toString();
    const err = new PermissionDeniedError(`watch of ${key}: permission denied by etcd (${reason})`);
    this.#logger.error({ err, key }, "etcd refuses a watch: no permission to read the key; the watch is given up");
    if (reg.handlers.denied) reg.handlers.denied(err);
    else reg.handlers.created(false);
  }

  /**
   * etcd checks a watch against the token the stream was opened with, and that token may have expired (or
   * gone stale, the auth store having changed) since: open the stream again with a fresh one.
   */
  #reauthenticate(): void {
    const stream = this.#stream;
    if (!stream) return;
    this.#conn.refreshToken();
    this.#broken(stream, this.#conn.endpoint, undefined, true);
  }

  /** `deliberate`: we end it ourselves, to open it with a fresh token (no failure: said at info). */
  #broken(stream: GrpcDuplex<WatchRequest, WatchResponse>, endpoint: Endpoint, err: unknown, deliberate = false): void {
    if (this.#stream !== stream) return;
    this.#drop();
    if (this.#closed) return;
    if (err !== undefined && isTransient(err)) this.#conn.failed(endpoint);
    if (deliberate)
      this.#logger.info(
        { endpoint: endpoint.address },
        "etcd refused a watch: re-opening the watch stream with a fresh auth token (watchers read again)",
      );
    else
      this.#logger.warn({ err, endpoint: endpoint.address }, "watch stream broke; re-opening it (watchers read again)");
    this.#scheduleOpen();
  }

  #scheduleOpen(): void {
    if (this.#closed || this.#retry) return;
    // The user closed the client: nothing will ever open again, and no timer of ours may keep the
    // process alive for it.
    if (this.#conn.closed) return this.close();
    if (this.#regs.size === 0) return; // nothing to watch: the next add opens a stream
    this.#retry = timerIn(this.#reopen.next(), () => {
      this.#retry = undefined;
      this.#open();
    });
  }

  /**
   * A stream can stay open and say nothing: its member black-holed, or cut off from its peers while
   * etcd's require-leader has not yet noticed. Quiet is not dead (nothing changed), so a stream silent for
   * QUIET_MS while etcd holds watches of ours is asked for progress, which etcd answers at once; a
   * request (that one, or a create) unanswered for `#answerMs` is a stall, and the stream opens again.
   * Our channel to its member is reset (preferring another member) only when no keepalive was acknowledged
   * there since about then: otherwise the member answers us, and a reset would suspend every session's
   * keepalives on it for nothing. A member that leaves progress requests unanswered PROBE_MISFIRES times
   * while acknowledging keepalives is not asked any more (require-leader and the owners' TTL/2 re-reads
   * remain). A blocked event loop is not a stall: the decision waits two turns of I/O, and a check that
   * fired late starts the answer window again (design: A blocked event loop is not a stall).
   *
   * The check also ends what nothing else would: once the user closed the client (a lost session's keeper
   * reads `conn.closed` no more), the stream closes; with nothing to watch, the stream and this timer go.
   */
  #armCheck(stream: GrpcDuplex<WatchRequest, WatchResponse>, endpoint: Endpoint): void {
    this.#check?.cancel();
    const due = now() + CHECK_MS;
    this.#check = timerAt(due, () => {
      if (this.#stream !== stream) return;
      if (this.#conn.closed) return this.close();
      if (this.#regs.size === 0) return this.#drop();
      if (now() - due > BLOCK_GRACE_MS && this.#awaitingSince !== undefined) {
        this.#awaitingSince = now();
        return this.#armCheck(stream, endpoint);
      }
      const since = this.#awaitingSince;
      if (since !== undefined && now() - since >= this.#answerMs) {
        return setImmediate(() =>
          setImmediate(() => {
            if (this.#stream !== stream) return;
            if (this.#awaitingSince !== since) return this.#armCheck(stream, endpoint);
            this.#stalled(stream, endpoint, since);
          }),
        );
      }
      if (
        since === undefined &&
        now() - this.#heardAt >= QUIET_MS &&
        this.#liveCount > 0 &&
        !this.#noProbe.has(endpoint)
      ) {
        this.#awaitingSince = now();
        this.#probing = true;
        stream.write({ progress_request: {} });
      }
      this.#armCheck(stream, endpoint);
    });
  }

  #stalled(stream: GrpcDuplex<WatchRequest, WatchResponse>, endpoint: Endpoint, since: number): void {
    const ackedAt = this.#conn.ackedAt(endpoint);
    if (ackedAt === undefined || ackedAt < since - this.#answerMs) {
      this.#logger.warn(
        { endpoint: endpoint.address, answerMs: this.#answerMs },
        "watch stream stalled (no answer) and no keepalive acknowledged there; replacing it and our channel there (watchers read again)",
      );
      this.#conn.failed(endpoint, { reset: true });
      return this.#broken(stream, endpoint, undefined);
    }
    if (this.#probing) {
      const misfires = (this.#misfires.get(endpoint) ?? 0) + 1;
      this.#misfires.set(endpoint, misfires);
      if (misfires >= PROBE_MISFIRES) {
        this.#noProbe.add(endpoint);
        this.#misfires.delete(endpoint);
        this.#awaitingSince = undefined;
        this.#probing = false;
        this.#logger.warn(
          { endpoint: endpoint.address, misfires },
          "this etcd member leaves progress requests unanswered while it acknowledges keepalives; no longer probing the watch stream there",
        );
        return this.#armCheck(stream, endpoint);
      }
    }
    this.#logger.warn(
      { endpoint: endpoint.address, answerMs: this.#answerMs },
      "watch stream stalled (no answer) while keepalives are acknowledged there; replacing the watch stream only (watchers read again)",
    );
    this.#drop();
    this.#scheduleOpen();
  }

  #setLive(reg: Registration, live: boolean): void {
    if (reg.live === live) return;
    reg.live = live;
    this.#liveCount += live ? 1 : -1;
  }

  #drop(): void {
    const stream = this.#stream;
    this.#stream = undefined;
    this.#check?.cancel();
    this.#check = undefined;
    for (const reg of this.#regs.values()) reg.live = false;
    this.#liveCount = 0;
    this.#probing = false;
    this.#unanswered.clear();
    if (stream) abandonStream(stream);
  }
}
