import type { Namespace } from "etcd3";
import { EventEmitter } from "eventemitter3";
import { onAbort, raceAbort } from "./common/abort.js";
import { silentLogger, toLogger, withFields } from "./common/logger.js";
import {
  validateByteLimit,
  validateCallTimeout,
  validateSignal,
  validateTimeout,
  validateTtl,
} from "./common/validate.js";
import { attachContext, type SessionContext } from "./session/context.js";
import type { Logger } from "./common/logger.js";
import { isIncurable } from "./etcd/errors.js";
import { etcd3Internals } from "./etcd/internals.js";
import { Keyspace } from "./etcd/keyspace.js";
import { acquireChannels, type Channels } from "./etcd/channel-pool.js";
import { InvalidArgumentError, SessionClosedError, type SessionLostError } from "./errors.js";
import { grantLease, randomLeaseId, revokeLease, type Grant } from "./lease/grant.js";
import { LeaseKeeper } from "./lease/keeper.js";
import { SessionNames } from "./queue/names.js";
import { OwnKeyWatches } from "./session/own-key-watches.js";

/**
 * connected: keepalives are acknowledged; suspended: they are failing, the lease still holds until the
 * local deadline; lost: the lease may have expired in etcd (final); closed: closed by its owner (final).
 */
export type SessionState = "connected" | "suspended" | "lost" | "closed";

/** The user's etcd3 client, or a namespace of it (`client.namespace("app/")`). */
export type EtcdClient = Namespace;

/** The events a {@link Session} emits (eventemitter3, typed): `session.on("lost", (reason) => ...)`. */
export interface SessionEvents {
  /** A keepalive was acknowledged, `roundTripMs` after it was sent. */
  renewed: (roundTripMs: number) => void;
  /** Keepalives are failing; the lease still holds until the local deadline. Pause risky work. */
  suspended: () => void;
  /** A keepalive was acknowledged again after `suspended`. */
  reconnected: () => void;
  /** The lease may have expired in etcd. Final: a new session is the way back. */
  lost: (reason: SessionLostError) => void;
  /** `close()` was called (or the `signal` option aborted). */
  closed: () => void;
}

/** How {@link Session.create} makes a session. */
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
  /**
   * The largest candidate value or proclaim a key may carry, in bytes. Default: etcd's default request
   * limit (1.5 MiB) less 8 KiB; set it to your etcd's --max-request-bytes less 8 KiB if you changed it.
   */
  maxValueBytes?: number;
  /** Where the session and everything made from it log (pino's shape); silent by default. */
  logger?: Logger | false;
}

/**
 * One lease, kept alive, shared by every election and lock made from it. `signal` aborts before etcd
 * could expire the lease; closing revokes it, releasing everything it held at once.
 *
 * An event emitter (eventemitter3's `on`, `once`, `off`) of the {@link SessionEvents}.
 */
export class Session extends EventEmitter<SessionEvents> {
  /** Lease id as a decimal string, as etcd3 prints it. */
  readonly leaseId: string;
  readonly #ctx: SessionContext;
  readonly #closed: AbortController;
  readonly #releaseChannels: () => void;
  #closing: Promise<void> | undefined;
  #undoSignal: () => void = () => {};

  private constructor(
    client: EtcdClient,
    channels: Channels,
    granted: Grant,
    options: { callTimeoutMs: number; marginMs: number; maxValueBytes: number; logger: Logger },
  ) {
    super();
    const { callTimeoutMs, logger } = options;
    const { conn, watches } = channels;
    this.#releaseChannels = channels.release;
    const keyspace = new Keyspace(etcd3Internals(client).prefix);
    const lease = new LeaseKeeper(
      conn,
      {
        leaseId: granted.id.toString(),
        ttl: granted.ttl,
        sentAt: granted.sentAt,
        minMarginMs: options.marginMs,
        callTimeoutMs,
        logger,
      },
      {
        renewed: (roundTripMs) => this.#tell(logger, "renewed", () => this.emit("renewed", roundTripMs)),
        suspended: () => this.#tell(logger, "suspended", () => this.emit("suspended")),
        reconnected: () => this.#tell(logger, "reconnected", () => this.emit("reconnected")),
        lost: (reason) => {
          this.#ctx.ownKeys.close(); // no key of ours can hold any more: nothing to watch for
          this.#tell(logger, "lost", () => this.emit("lost", reason));
        },
      },
    );
    const resyncMs = (): number => Math.max(250, (lease.ttl * 1000) / 2);
    this.#closed = new AbortController();
    this.#ctx = {
      client,
      conn,
      watches,
      ownKeys: new OwnKeyWatches(watches, keyspace, resyncMs),
      keyspace,
      names: new SessionNames(),
      lease,
      leaseHex: granted.id.toString(16),
      callTimeoutMs,
      maxValueBytes: options.maxValueBytes,
      logger,
      resyncMs,
      closed: this.#closed.signal,
    };
    this.leaseId = lease.leaseId;
    attachContext(this, this.#ctx);
  }

  /**
   * Emits to the user's listeners, which run inside our timers and getters: a listener that throws is
   * logged, never thrown into a keepalive, the process-wide check, or a `state` read.
   */
  #tell(logger: Logger, event: keyof SessionEvents, emit: () => void): void {
    try {
      emit();
    } catch (err) {
      logger.error({ err, event }, `a session "${event}" listener threw; ignored`);
    }
  }

  /** Grants a lease and starts keeping it alive. */
  static async create(client: EtcdClient, options: SessionOptions = {}): Promise<Session> {
    const etcd3 = etcd3Internals(client);
    const ttl = validateTtl(options.ttl ?? 10);
    const signal = validateSignal(options.signal);
    const callTimeoutMs = validateCallTimeout(options.callTimeoutMs) ?? 5000;
    const marginMs = validateTimeout(options.marginMs, "marginMs") ?? 250;
    const maxValueBytes = validateByteLimit(options.maxValueBytes);
    if (marginMs >= ttl * 1000)
      throw new InvalidArgumentError(`marginMs (${marginMs}) must be shorter than the TTL (${ttl * 1000} ms)`);
    const baseLogger = toLogger(options.logger, silentLogger);
    signal?.throwIfAborted();

    const channels = acquireChannels(etcd3, options.logger, baseLogger, callTimeoutMs);
    const leaseId = randomLeaseId();
    const granting = grantLease(channels.conn, ttl, callTimeoutMs, leaseId);
    let granted: Grant;
    try {
      granted = await raceAbort(granting, signal);
    } catch (err) {
      if (signal?.aborted) {
        // Reject at once; the grant on its way may still make the lease (with its answer lost, too):
        // once it settled, revoke it by the id we chose, so it does not live on for its TTL. A grant that
        // refused (bad credentials, no permission, a closed client: incurable) made no lease: nothing to revoke.
        void granting
          .then(
            () => true,
            (grantErr: unknown) => {
              if (!isIncurable(grantErr)) return true; // a timeout, say: it may have been applied
              baseLogger.debug({ err: grantErr }, "aborted create: the grant failed, no lease to revoke");
              return false;
            },
          )
          .then((mayExist) => (mayExist ? revokeLease(channels.conn, leaseId.toString(), callTimeoutMs) : undefined))
          .catch((revokeErr: unknown) =>
            baseLogger.warn({ err: revokeErr }, "revoke after an aborted create failed; the lease expires on its own"),
          )
          .finally(() => channels.release());
        throw signal.reason;
      }
      channels.release();
      baseLogger.warn({ err }, "session not created: the lease grant failed");
      throw err;
    }
    const logger = withFields(baseLogger, { lease: granted.id.toString(16) });
    const session = new Session(client, channels, granted, { callTimeoutMs, marginMs, maxValueBytes, logger });
    logger.info({ leaseId: session.leaseId, ttl: session.ttl }, "session created");
    if (signal?.aborted) {
      await session.close();
      throw signal.reason;
    }
    session.#undoSignal = onAbort(signal, () => void session.close());
    return session;
  }

  /** Granted TTL in seconds, as etcd reported it (etcd raises small TTLs to its minimum). */
  get ttl(): number {
    return this.#ctx.lease.ttl;
  }

  /** Where the session is in its life; see {@link SessionState}. */
  get state(): SessionState {
    if (this.#closed.signal.aborted) return "closed";
    const state = this.#ctx.lease.state;
    return state === "stopped" ? "closed" : state;
  }

  /** Aborted once the session is lost or closed; the reason is a SessionLostError or SessionClosedError. */
  get signal(): AbortSignal {
    this.#ctx.lease.check();
    return this.#ctx.lease.signal;
  }

  /** Safety margin subtracted from the TTL for clock-rate drift and scheduling jitter, in ms. */
  get marginMs(): number {
    return this.#ctx.lease.marginMs;
  }

  /** Deadline of each RPC the library makes for this session, ms (the `callTimeoutMs` option). */
  get callTimeoutMs(): number {
    return this.#ctx.callTimeoutMs;
  }

  /** The largest candidate value or proclaimed value a key of this session may carry, in bytes. */
  get maxValueBytes(): number {
    return this.#ctx.maxValueBytes;
  }

  /** Milliseconds since the last acknowledged keepalive (or the grant) was sent: the lease's age. */
  get sinceRenewalMs(): number {
    return this.#ctx.lease.sinceRenewalMs;
  }

  /** Round trip of the last acknowledged keepalive, ms; undefined before the first. */
  get roundTripMs(): number | undefined {
    return this.#ctx.lease.roundTripMs;
  }

  /** Conservative time left before the lease could expire in etcd; 0 once lost or closed. */
  remainingMs(): number {
    return this.#ctx.lease.remainingMs();
  }

  /** Stops keepalives and revokes the lease, releasing everything it held. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  /** `await using session = await Session.create(...)` closes it at the end of the scope, as {@link close}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #close(): Promise<void> {
    const ctx = this.#ctx;
    const wasLost = ctx.lease.signal.aborted;
    ctx.lease.stop(new SessionClosedError());
    this.#closed.abort(new SessionClosedError());
    this.#undoSignal();
    this.#tell(ctx.logger, "closed", () => this.emit("closed")); // a throwing listener must not skip the revoke
    ctx.logger.info({}, "session closing: revoking the lease");
    if (!wasLost) {
      await revokeLease(ctx.conn, this.leaseId, ctx.callTimeoutMs).catch((err: unknown) =>
        ctx.logger.warn({ err }, "lease revoke failed on close; the lease expires on its own within its TTL"),
      );
    }
    ctx.ownKeys.close();
    this.#releaseChannels(); // the last session of the client to go closes them
    this.removeAllListeners();
  }
}
