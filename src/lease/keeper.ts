import { Backoff, keepaliveRetry } from "../common/backoff.js";
import { now, stamp, timerIn, type Stamp, type Timer } from "../common/clock.js";
import type { Logger } from "../common/logger.js";
import type { Connection } from "../etcd/connection.js";
import { SessionLostError } from "../errors.js";
import { KeepAliveStream } from "./keepalive-stream.js";
import { revokeLease } from "./grant.js";
import { ackTimeoutMs, elapsedMs, leaseRemainingMs, renewIntervalMs, safetyMarginMs } from "./timing.js";

export type LeaseState = "connected" | "suspended" | "lost" | "stopped";

export interface LeaseHandlers {
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
  /** When the grant was sent: the deadline counts from there until the first ack. */
  sentAt: Stamp;
  minMarginMs: number;
  callTimeoutMs: number;
  logger: Logger;
}

/** How often one process-wide timer checks every live lease: a suspend is noticed within this of the resume. */
const SUSPEND_CHECK_MS = 250;

/**
 * Timers run on the monotonic clock, which stands still while the system is suspended: after a resume,
 * the deadline timer would still wait out what it had left. One unreferenced timer for all live leases
 * checks them (on both clocks) meanwhile, so a signal in a user's hands flips soon after a resume.
 */
const live = new Set<LeaseKeeper>();
let suspendCheck: NodeJS.Timeout | undefined;
let checkingAll = false;

/**
 * Checks every live lease now. Each on its own: one keeper's failure must neither skip the others nor
 * escape to the caller (a timer).
 */
function checkAll(): void {
  if (checkingAll) return; // a check that finds its lease lost calls this again
  checkingAll = true;
  try {
    for (const k of [...live]) {
      try {
        k.check();
      } catch (err) {
        k.logger.error({ err, leaseId: k.leaseId }, "checking a lease's deadline failed");
      }
    }
  } finally {
    checkingAll = false;
  }
}

function checkAfterSuspends(keeper: LeaseKeeper): void {
  live.add(keeper);
  if (suspendCheck) return;
  suspendCheck = setInterval(checkAll, SUSPEND_CHECK_MS);
  suspendCheck.unref();
}

function stopCheckingAfterSuspends(keeper: LeaseKeeper): void {
  live.delete(keeper);
  if (live.size > 0 || !suspendCheck) return;
  clearInterval(suspendCheck);
  suspendCheck = undefined;
}

/**
 * Keeps one lease alive and knows until when it surely holds.
 *
 * The deadline counts from when the last acknowledged keepalive was *sent*: the etcd leader renewed the
 * lease after that moment, so it cannot expire it before sent + TTL. We give up `marginMs` earlier and
 * abort `signal` then, by whichever of the monotonic and the wall clock ran further (design: Step down
 * first). Loss is final: no more renewals, and a best-effort revoke so etcd keeps no key that nobody
 * acts on.
 */
export class LeaseKeeper {
  readonly leaseId: string;
  readonly #conn: Connection;
  readonly #handlers: LeaseHandlers;
  readonly #logger: Logger;
  readonly #minMarginMs: number;
  readonly #callTimeoutMs: number;
  readonly #controller = new AbortController();
  readonly #stream: KeepAliveStream;
  #ttl: number;
  #state: LeaseState = "connected";
  /** When the last acknowledged keepalive (or the grant) was sent. */
  #ackedSentAt: Stamp;
  #lastRoundTripMs: number | undefined;
  #deadlineTimer: Timer | undefined;
  #tickTimer: Timer | undefined;
  /** Set while keepalives fail: the delays between them until one is acknowledged. */
  #backoff: Backoff | undefined;

  constructor(conn: Connection, options: LeaseKeeperOptions, handlers: LeaseHandlers) {
    this.#conn = conn;
    this.#handlers = handlers;
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
    checkAfterSuspends(this);
    // The deadline counts from when the grant was first sent (that attempt may have made the lease), so
    // a grant answered only after retries can leave less than TTL/3: renew before half of it is gone.
    this.#scheduleTick(Math.min(this.#intervalMs(), Math.max(0, this.#remaining() / 2)));
  }

  /** Where this lease logs (the process-wide check logs a failure of this keeper there). */
  get logger(): Logger {
    return this.#logger;
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

  /** Milliseconds since the last acknowledged keepalive was sent (by whichever clock ran further). */
  get sinceRenewalMs(): number {
    return elapsedMs(this.#ackedSentAt, stamp());
  }

  /** Round trip of the last acknowledged keepalive, in ms. */
  get roundTripMs(): number | undefined {
    return this.#lastRoundTripMs;
  }

  /** Conservative time left before etcd could expire the lease; 0 once lost or stopped. */
  remainingMs(): number {
    if (!this.check()) return 0;
    return Math.max(0, this.#remaining());
  }

  /** Notices a passed deadline now (the first tick after a pause, whatever asks); false once lost or stopped. */
  check(): boolean {
    if (this.#state === "lost" || this.#state === "stopped") return false;
    if (this.#remaining() > 0) return true;
    try {
      this.#lose(
        new SessionLostError(
          `session lost: no keepalive acknowledged within the ${this.#ttl}s TTL less a ${this.marginMs} ms margin`,
        ),
      );
    } finally {
      // A passed deadline most likely means the process was paused: the other leases in it were too, and
      // each must end its holds now, not when its own timer gets its turn (on a busy machine, much later).
      checkAll();
    }
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

  /** Time left before the deadline, on both clocks (the shorter counts). */
  #remaining(): number {
    return leaseRemainingMs(this.#ackedSentAt, stamp(), this.#ttl, this.marginMs);
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
    this.#scheduleTick(this.#backoff ? this.#backoff.current : this.#intervalMs());
  }

  #onAck(sentAt: Stamp, ttl: number): void {
    if (!this.check()) return;
    if (ttl <= 0) {
      this.#lose(new SessionLostError("session lost: etcd reports the lease expired or revoked"));
      return;
    }
    this.#ttl = ttl;
    this.#lastRoundTripMs = now() - sentAt.mono;
    // Both clocks as they read at that send: a wall clock stepped back since then never lengthens the
    // deadline, as the monotonic count still ends it.
    if (sentAt.mono > this.#ackedSentAt.mono) this.#ackedSentAt = sentAt;
    this.#armDeadline();
    this.#handlers.renewed(this.#lastRoundTripMs);
    if (this.#backoff) {
      this.#backoff = undefined;
      this.#scheduleTick(this.#intervalMs());
    }
    if (this.#state === "suspended") {
      this.#state = "connected";
      this.#logger.info({ leaseId: this.leaseId }, "session reconnected: keepalives acknowledged again");
      this.#handlers.reconnected();
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
    this.#backoff ??= new Backoff(keepaliveRetry(this.#intervalMs()));
    this.#scheduleTick(this.#backoff.next());
    if (this.#state === "connected") {
      this.#state = "suspended";
      this.#logger.warn(
        { leaseId: this.leaseId, remainingMs: Math.round(this.#remaining()) },
        "session suspended: keepalives failing",
      );
      this.#handlers.suspended();
    }
  }

  #armDeadline(): void {
    this.#deadlineTimer?.cancel();
    this.#deadlineTimer = timerIn(Math.max(0, this.#remaining()), () => this.check());
  }

  #halt(): void {
    stopCheckingAfterSuspends(this);
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
    this.#handlers.lost(reason);
  }
}
