import { ExponentialBackoff, type IBackoff } from "cockatiel";
import { now, timerAt, timerIn, type Timer } from "../common/clock.js";
import type { Logger } from "../common/logger.js";
import type { Connection } from "../etcd/connection.js";
import { SessionLostError } from "../errors.js";
import { KeepAliveStream } from "./keepalive-stream.js";
import { revokeLease } from "./grant.js";
import { ackTimeoutMs, leaseDeadline, renewIntervalMs, safetyMarginMs } from "./timing.js";

export type LeaseState = "connected" | "suspended" | "lost" | "stopped";

export interface LeaseListener {
  /** A keepalive was acknowledged after `roundTripMs`. */
  renewed(roundTripMs: number): void;
  suspended(): void;
  reconnected(): void;
  lost(reason: SessionLostError): void;
}

export interface LeaseKeeperOptions {
  leaseId: string;
  /** TTL etcd granted, seconds. */
  ttl: number;
  /** Monotonic time the grant was sent: the deadline counts from there until the first ack. */
  sentAt: number;
  minMarginMs: number;
  callTimeoutMs: number;
  logger: Logger;
}

/**
 * Keeps one lease alive and knows, on the monotonic clock, until when it surely holds.
 *
 * The deadline counts from when the last acknowledged keepalive was *sent*: the etcd leader renewed the
 * lease after that moment, so it cannot expire it before sent + TTL. We give up `marginMs` earlier and
 * abort `signal` then (design: Step down first). Loss is final: no more renewals, and a
 * best-effort revoke so etcd keeps no key that nobody acts on.
 */
export class LeaseKeeper {
  readonly leaseId: string;
  readonly #conn: Connection;
  readonly #listener: LeaseListener;
  readonly #logger: Logger;
  readonly #minMarginMs: number;
  readonly #callTimeoutMs: number;
  readonly #controller = new AbortController();
  readonly #stream: KeepAliveStream;
  #ttl: number;
  #state: LeaseState = "connected";
  /** Monotonic time the last acknowledged keepalive (or the grant) was sent. */
  #ackedSentAt: number;
  #lastRoundTripMs: number | undefined;
  #deadlineTimer: Timer | undefined;
  #tickTimer: Timer | undefined;
  #backoff: IBackoff<unknown> | undefined;

  constructor(conn: Connection, options: LeaseKeeperOptions, listener: LeaseListener) {
    this.#conn = conn;
    this.#listener = listener;
    this.#logger = options.logger;
    this.leaseId = options.leaseId;
    this.#ttl = options.ttl;
    this.#ackedSentAt = options.sentAt;
    this.#minMarginMs = options.minMarginMs;
    this.#callTimeoutMs = options.callTimeoutMs;
    this.#stream = new KeepAliveStream(
      conn,
      this.leaseId,
      options.callTimeoutMs,
      {
        ack: (sentAt, ttl) => this.#onAck(sentAt, ttl),
        failed: () => this.#onStreamFailed(),
      },
      options.logger,
    );
    this.#armDeadline();
    // The deadline counts from when the grant was first sent (that attempt may have made the lease), so
    // a grant answered only after retries can leave less than TTL/3: renew before half of it is gone.
    this.#scheduleTick(Math.min(this.#intervalMs(), Math.max(0, (this.#deadline() - now()) / 2)));
  }

  get ttl(): number {
    return this.#ttl;
  }

  /** Aborted once the lease may have expired (lost) or keeping it stopped; the reason says which. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  get state(): LeaseState {
    this.check();
    return this.#state;
  }

  /** Safety margin subtracted from the TTL: the larger of 5% of it (clock-rate drift) and `minMarginMs`. */
  get marginMs(): number {
    return safetyMarginMs(this.#ttl, this.#minMarginMs);
  }

  /** Milliseconds since the last acknowledged keepalive was sent (monotonic). */
  get sinceRenewalMs(): number {
    return now() - this.#ackedSentAt;
  }

  /** Round trip of the last acknowledged keepalive, in ms. */
  get roundTripMs(): number | undefined {
    return this.#lastRoundTripMs;
  }

  /** The endpoint serving the keepalive stream now, when one is open. */
  get endpoint(): string | undefined {
    return this.#stream.endpoint;
  }

  /** Conservative time left before etcd could expire the lease; 0 once lost or stopped. */
  remainingMs(): number {
    if (!this.check()) return 0;
    return Math.max(0, this.#deadline() - now());
  }

  /** Notices a passed deadline now (the first tick after a pause, whatever asks); false once lost or stopped. */
  check(): boolean {
    if (this.#state === "lost" || this.#state === "stopped") return false;
    if (now() < this.#deadline()) return true;
    this.#lose(
      new SessionLostError(
        `session lost: no keepalive acknowledged within the ${this.#ttl}s TTL less a ${this.marginMs} ms margin`,
      ),
    );
    return false;
  }

  /** Ends keeping the lease (the owner revokes it, or it was lost already); aborts `signal` with `reason`. */
  stop(reason: Error): void {
    if (this.#state !== "lost") this.#state = "stopped";
    this.#halt();
    if (!this.#controller.signal.aborted) this.#controller.abort(reason);
  }

  /** Loses the lease now (etcd told us it is gone, or the client was closed). */
  lose(reason: SessionLostError): void {
    if (this.#state === "lost" || this.#state === "stopped") return;
    this.#lose(reason);
  }

  #deadline(): number {
    return leaseDeadline(this.#ackedSentAt, this.#ttl, this.marginMs);
  }

  #intervalMs(): number {
    return renewIntervalMs(this.#ttl);
  }

  #ackTimeoutMs(): number {
    return ackTimeoutMs(this.#ttl);
  }

  #scheduleTick(delayMs: number): void {
    this.#tickTimer?.cancel();
    this.#tickTimer = timerIn(delayMs, () => this.#tick());
  }

  #tick(): void {
    if (!this.check()) return;
    if (this.#conn.closed) {
      this.#lose(new SessionLostError("session lost: its etcd3 client was closed; the lease is left to expire"));
      return;
    }
    this.#stream.send(this.#ackTimeoutMs(), () => this.#onStall());
    this.#scheduleTick(this.#backoff ? this.#backoff.duration : this.#intervalMs());
  }

  #onAck(sentAt: number, ttl: number): void {
    if (!this.check()) return;
    if (ttl <= 0) {
      this.#lose(new SessionLostError("session lost: etcd reports the lease expired or revoked"));
      return;
    }
    this.#ttl = ttl;
    this.#lastRoundTripMs = now() - sentAt;
    this.#ackedSentAt = Math.max(this.#ackedSentAt, sentAt);
    this.#armDeadline();
    this.#listener.renewed(this.#lastRoundTripMs);
    if (this.#backoff) {
      this.#backoff = undefined;
      this.#scheduleTick(this.#intervalMs());
    }
    if (this.#state === "suspended") {
      this.#state = "connected";
      this.#logger.info({ leaseId: this.leaseId }, "session reconnected: keepalives acknowledged again");
      this.#listener.reconnected();
    }
  }

  #onStall(): void {
    // The stream is open but silent: replace it (and our connection), preferring another endpoint.
    this.#logger.warn(
      { leaseId: this.leaseId, endpoint: this.#stream.endpoint, ackTimeoutMs: this.#ackTimeoutMs() },
      "keepalive stream stalled; replacing it",
    );
    this.#stream.replace();
    this.#onStreamFailed();
  }

  #onStreamFailed(): void {
    if (!this.check()) return;
    const factory = new ExponentialBackoff({ initialDelay: 50, maxDelay: Math.min(1000, this.#intervalMs() / 2) });
    this.#backoff = this.#backoff ? this.#backoff.next(undefined) : factory.next();
    this.#scheduleTick(this.#backoff.duration);
    if (this.#state === "connected") {
      this.#state = "suspended";
      this.#logger.warn(
        { leaseId: this.leaseId, remainingMs: Math.round(this.#deadline() - now()) },
        "session suspended: keepalives failing",
      );
      this.#listener.suspended();
    }
  }

  #armDeadline(): void {
    this.#deadlineTimer?.cancel();
    this.#deadlineTimer = timerAt(this.#deadline(), () => this.check());
  }

  #halt(): void {
    this.#deadlineTimer?.cancel();
    this.#tickTimer?.cancel();
    this.#stream.close();
  }

  #lose(reason: SessionLostError): void {
    this.#state = "lost";
    this.#halt();
    this.#controller.abort(reason);
    this.#logger.error({ leaseId: this.leaseId, err: reason }, "session lost");
    // Best effort: etcd should not keep a leader key nobody acts on.
    revokeLease(this.#conn, this.leaseId, this.#callTimeoutMs).catch((err: unknown) =>
      this.#logger.debug({ leaseId: this.leaseId, err }, "revoke of the lost lease failed; it expires on its own"),
    );
    this.#listener.lost(reason);
  }
}
