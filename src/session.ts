import { randomBytes } from "node:crypto";
import { ExponentialBackoff, type IBackoff } from "cockatiel";
import { EventEmitter } from "eventemitter3";
import { onAbort } from "./common/abort.js";
import { assertClient, deadlineIn, Keyspace, type EtcdClient } from "./common/client.js";
import { now, timerAt, timerIn, type Timer } from "./common/clock.js";
import { validateSignal, validateTimeout, validateTtl } from "./common/validate.js";
import { LocalLine } from "./common/local-line.js";
import { KeyWatches } from "./key-watches.js";
import { KeepAliveChannel } from "./keepalive.js";
import { InvalidArgumentError, NameConflictError, SessionClosedError, SessionLostError } from "./errors.js";

export type SessionState = "connected" | "suspended" | "lost" | "closed";

export interface SessionEvents {
  /** Keepalives are failing; the lease still holds until the local deadline. Pause risky work. */
  suspended: () => void;
  /** A keepalive was acknowledged again after `suspended`. */
  reconnected: () => void;
  /** The lease may have expired in etcd. Final: a new session is the way back. */
  lost: (reason: SessionLostError) => void;
  /** `close()` was called (or the `signal` option aborted). */
  closed: () => void;
}

export interface SessionOptions {
  /** Lease TTL in whole seconds (default 10). etcd may raise it to its minimum; see `session.ttl`. */
  ttl?: number;
  /** Aborting it closes the session (and rejects `create` while it is still granting). */
  signal?: AbortSignal;
  /** Deadline for each RPC the library makes for this session (default 5000 ms). */
  callTimeoutMs?: number;
  /**
   * Smallest safety margin in ms (default 250): the session gives up this long before etcd could
   * expire the lease. The margin used is the larger of this and 5% of the TTL.
   */
  marginMs?: number;
}

/** Share of the TTL kept back for clock-rate drift between us and the etcd leader. */
export const DRIFT_RATIO = 0.05;
/** Default smallest safety margin, for scheduling jitter on short TTLs. */
export const MIN_MARGIN_MS = 250;

/**
 * One lease, kept alive by our own keepalive loop, shared by every election and lock made from it.
 *
 * The local deadline counts from when the last acknowledged keepalive was *sent*: the leader renewed
 * the lease after that moment, so etcd cannot expire it before sent + TTL. We give up `margin` earlier
 * and abort `signal` then, so holders stop acting before anyone else can be granted what they held.
 */
export class Session extends EventEmitter<SessionEvents> {
  /** Lease id as a decimal string, as etcd3 prints it. */
  readonly leaseId: string;
  /** The lease id in lowercase hex: the last segment of every key this session creates. */
  readonly leaseHex: string;
  /** @internal */ readonly client: EtcdClient;
  /** @internal */ readonly keyspace: Keyspace;
  /** @internal */ readonly callTimeoutMs: number;
  /** @internal Watches of the keys this session owns, shared by their successive holders. */
  readonly keyWatches: KeyWatches;
  readonly #minMarginMs: number;

  #ttl: number;
  #state: SessionState = "connected";
  readonly #controller = new AbortController();
  /** Monotonic time the last acknowledged keepalive (or the grant) was sent. */
  #ackedSentAt: number;
  #deadlineTimer: Timer | undefined;
  #tickTimer: Timer | undefined;
  #channel: KeepAliveChannel;
  #backoff: IBackoff<unknown> | undefined;
  #closing: Promise<void> | undefined;
  #undoSignal: () => void = () => {};
  readonly #names = new Map<string, { kind: string; line: LocalLine }>();
  readonly #stale = new Map<string, { createRevision: bigint | undefined }>();

  private constructor(client: EtcdClient, leaseId: bigint, ttl: number, sentAt: number, callTimeoutMs: number, minMarginMs: number) {
    super();
    this.client = client;
    this.keyspace = new Keyspace(client.prefix);
    this.leaseId = leaseId.toString();
    this.leaseHex = leaseId.toString(16);
    this.callTimeoutMs = callTimeoutMs;
    this.#minMarginMs = minMarginMs;
    this.#ttl = ttl;
    this.#ackedSentAt = sentAt;
    this.keyWatches = new KeyWatches(client, () => this.resyncMs, callTimeoutMs);
    this.#channel = new KeepAliveChannel(client, this.leaseId, {
      ack: (sentAt, ttl) => this.#onAck(sentAt, ttl),
      failed: () => this.#onStreamFailed(),
    });
  }

  /** Grants a lease and starts keeping it alive. */
  static async create(client: EtcdClient, options: SessionOptions = {}): Promise<Session> {
    assertClient(client);
    const ttl = validateTtl(options.ttl ?? 10);
    const signal = validateSignal(options.signal);
    const callTimeoutMs = validateTimeout(options.callTimeoutMs, "callTimeoutMs") ?? 5000;
    const marginMs = validateTimeout(options.marginMs, "marginMs") ?? MIN_MARGIN_MS;
    if (marginMs >= ttl * 1000) {
      throw new InvalidArgumentError(`marginMs (${marginMs}) must be shorter than the TTL (${ttl * 1000} ms)`);
    }
    signal?.throwIfAborted();

    // A client-chosen random id: if etcd3 retries a grant whose answer was lost, the retry fails with
    // "lease already exists" instead of leaking a second lease, and we adopt the one we made.
    const id = randomLeaseId();
    const sentAt = now();
    let granted: number;
    try {
      const res = await client.leaseClient.leaseGrant({ TTL: ttl, ID: id.toString() }, deadlineIn(callTimeoutMs));
      granted = Number(res.TTL);
    } catch (err) {
      if (!/lease already exists/i.test(String((err as Error).message))) throw err;
      const info = await client.leaseClient.leaseTimeToLive({ ID: id.toString() }, deadlineIn(callTimeoutMs));
      granted = Number(info.grantedTTL);
    }
    const session = new Session(client, id, granted, sentAt, callTimeoutMs, marginMs);
    if (signal?.aborted) {
      await session.close();
      throw signal.reason;
    }
    session.#start(signal);
    return session;
  }

  /** Granted TTL in seconds, as etcd reported it (etcd raises small TTLs to its minimum). */
  get ttl(): number {
    return this.#ttl;
  }

  get state(): SessionState {
    this.#checkDeadline();
    return this.#state;
  }

  /** Aborted once the session is lost or closed; the reason is a SessionLostError or SessionClosedError. */
  get signal(): AbortSignal {
    this.#checkDeadline();
    return this.#controller.signal;
  }

  /** @internal Rule 8: how often waiters, holders and observers re-read what their watches tell them (TTL/2). */
  get resyncMs(): number {
    return Math.max(250, (this.#ttl * 1000) / 2);
  }

  /** Safety margin subtracted from the TTL for clock-rate drift. */
  get marginMs(): number {
    return Math.max(this.#minMarginMs, Math.ceil(this.#ttl * 1000 * DRIFT_RATIO));
  }

  /** Conservative time left before the lease could expire in etcd; 0 once lost or closed. */
  remainingMs(): number {
    this.#checkDeadline();
    if (this.#state === "lost" || this.#state === "closed") return 0;
    return Math.max(0, this.#deadline() - now());
  }

  /** Stops keepalives and revokes the lease, releasing everything it held. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** @internal The endpoint serving the keepalive stream now, when known (for diagnostics and tests). */
  get keepAliveEndpoint(): string | undefined {
    return this.#channel.endpoint;
  }

  /** @internal Notices a passed deadline now (the first tick after a pause, whatever its source). */
  checkDeadline(): void {
    this.#checkDeadline();
  }

  /** @internal Throws unless the session can still be used to create keys. */
  assertUsable(): void {
    this.#checkDeadline();
    if (this.#controller.signal.aborted) throw this.#controller.signal.reason;
  }

  /**
   * @internal Rule 6: the in-process line for `name`. A name is used through a session by one kind of
   * primitive only; the entry goes away once its line is idle.
   */
  line(name: string, kind: string): LocalLine {
    const entry = this.#names.get(name);
    if (entry && entry.kind !== kind) {
      throw new NameConflictError(`"${name}" is already used as a ${entry.kind} through this session; it cannot also be a ${kind}`);
    }
    if (entry) return entry.line;
    const line: LocalLine = new LocalLine(() => {
      if (this.#names.get(name)?.line === line) this.#names.delete(name);
    });
    this.#names.set(name, { kind, line });
    return line;
  }

  /**
   * @internal A key of ours that may still be in etcd though nobody holds it (a delete that did not get
   * through, or a put whose answer was lost): deleted before the name is used again.
   */
  markStale(key: string, createRevision: bigint | undefined): void {
    this.#stale.set(key, { createRevision });
  }

  /** @internal Takes the stale mark of `key`, if any. */
  takeStale(key: string): { createRevision: bigint | undefined } | undefined {
    const stale = this.#stale.get(key);
    this.#stale.delete(key);
    return stale;
  }

  /** @internal The key this session owns under `name`. */
  keyFor(name: string): string {
    return `${name}/${this.leaseHex}`;
  }

  #deadline(): number {
    return this.#ackedSentAt + this.#ttl * 1000 - this.marginMs;
  }

  #start(signal: AbortSignal | undefined): void {
    this.#undoSignal = onAbort(signal, () => void this.close());
    this.#armDeadline();
    this.#scheduleTick(this.#intervalMs());
  }

  /** Go's client renews every TTL/3: two renewals can fail before the lease runs short. */
  #intervalMs(): number {
    return Math.max(100, (this.#ttl * 1000) / 3);
  }

  /** How long an open stream may leave a keepalive unanswered before we replace it. */
  #ackTimeoutMs(): number {
    return Math.min(5000, Math.max(500, (this.#ttl * 1000) / 6));
  }

  #scheduleTick(delayMs: number): void {
    this.#tickTimer?.cancel();
    this.#tickTimer = timerIn(delayMs, () => this.#tick());
  }

  #tick(): void {
    if (!this.#checkDeadline() || this.#state === "closed") return;
    if (this.#channel.clientClosed) {
      this.#lose(new SessionLostError("session lost: its etcd3 client was closed; the lease is left to expire"));
      return;
    }
    this.#channel.send(this.#ackTimeoutMs(), () => this.#onStall());
    this.#scheduleTick(this.#backoff ? this.#backoff.duration : this.#intervalMs());
  }

  #onAck(sentAt: number, ttl: number): void {
    if (!this.#checkDeadline()) return;
    if (ttl <= 0) {
      this.#lose(new SessionLostError("session lost: etcd reports the lease expired or revoked"));
      return;
    }
    this.#ttl = ttl;
    this.#ackedSentAt = Math.max(this.#ackedSentAt, sentAt);
    this.#armDeadline();
    if (this.#backoff) {
      this.#backoff = undefined;
      this.#scheduleTick(this.#intervalMs());
    }
    if (this.#state === "suspended") {
      this.#state = "connected";
      this.emit("reconnected");
    }
  }

  #onStall(): void {
    // The stream is open but silent: replace it, preferring another endpoint.
    this.#channel.replace(true);
    this.#onStreamFailed();
  }

  #onStreamFailed(): void {
    if (!this.#checkDeadline() || this.#state === "closed") return;
    const factory = new ExponentialBackoff({ initialDelay: 50, maxDelay: Math.min(1000, this.#intervalMs() / 2) });
    this.#backoff = this.#backoff ? this.#backoff.next(undefined) : factory.next();
    this.#scheduleTick(this.#backoff.duration);
    if (this.#state === "connected") {
      this.#state = "suspended";
      this.emit("suspended");
    }
  }

  #armDeadline(): void {
    this.#deadlineTimer?.cancel();
    this.#deadlineTimer = timerAt(this.#deadline(), () => this.#checkDeadline());
  }

  /** Every entry point asks first: after a pause, the first tick notices the passed deadline. */
  #checkDeadline(): boolean {
    if (this.#state === "lost" || this.#state === "closed") return false;
    if (now() < this.#deadline()) return true;
    this.#lose(new SessionLostError(`session lost: no keepalive acknowledged within the ${this.#ttl}s TTL less a ${this.marginMs} ms margin`));
    return false;
  }

  #stop(): Promise<void> {
    this.#deadlineTimer?.cancel();
    this.#tickTimer?.cancel();
    this.#channel.close();
    this.#undoSignal();
    return this.keyWatches.close();
  }

  #lose(reason: SessionLostError): void {
    this.#state = "lost";
    void this.#stop();
    this.#controller.abort(reason);
    // Best effort: etcd should not keep a leader key nobody acts on.
    this.#revoke().catch(() => {});
    this.emit("lost", reason);
  }

  async #close(): Promise<void> {
    const wasLost = this.#state === "lost";
    this.#state = "closed";
    const watchesClosed = this.#stop();
    if (!this.#controller.signal.aborted) this.#controller.abort(new SessionClosedError());
    this.emit("closed");
    if (!wasLost) await this.#revoke().catch(() => {});
    await watchesClosed;
    this.removeAllListeners();
  }

  #revoke(): Promise<unknown> {
    return this.client.leaseClient.leaseRevoke({ ID: this.leaseId }, deadlineIn(this.callTimeoutMs));
  }
}

/** Recognises a Session by shape, so a session made by the other build (ESM/CJS) works too. */
export function assertSession(session: unknown): asserts session is Session {
  const s = session as Partial<Session> | null;
  if (!s || typeof s !== "object" || typeof s.leaseHex !== "string" || typeof s.line !== "function" || !s.keyspace) {
    throw new InvalidArgumentError("expected a Session (await Session.create(client, { ttl }))");
  }
}

/** A random positive 63-bit lease id (etcd ids are int64; 0 means "let etcd choose"). */
function randomLeaseId(): bigint {
  const id = randomBytes(8).readBigUInt64BE() & 0x7fff_ffff_ffff_ffffn;
  return id === 0n ? 1n : id;
}

