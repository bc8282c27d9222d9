import { ExponentialBackoff, type IBackoff } from "cockatiel";
import { EventEmitter } from "eventemitter3";
import { linkedController, onAbort, raceAbort, sleep } from "./common/abort.js";
import { now, timerIn, type Timer } from "./common/clock.js";
import { consoleLogger, toLogger, withFields, type Logger } from "./common/logger.js";
import {
  DEFAULT_MAX_VALUE_BYTES,
  toValueBuffer,
  validateName,
  validateSignal,
  validateCallTimeout,
  validateTtl,
} from "./common/validate.js";
import { contextOf } from "./context.js";
import { Election } from "./election.js";
import { toElectionError } from "./etcd/errors.js";
import type { EtcdClient } from "./etcd/client.js";
import { openDoor } from "./etcd/internals.js";
import {
  InvalidArgumentError,
  WorkFailedError,
  isElectionError,
  type ElectionError,
  type ElectionErrorCode,
} from "./errors.js";
import { sameLeader, type Leader } from "./leader.js";
import { Session, type SessionState } from "./session.js";
import type { Term } from "./term.js";

/** What {@link LeaderElector} campaigns for, on what, and what it runs while it leads. */
export interface LeaderElectorOptions {
  /** The user's etcd3 client: the elector makes (and remakes, after a loss) its own session on it. */
  client?: EtcdClient;
  /** Or an existing session: then a lost session ends `run()`, as only its owner can make a new one. */
  session?: Session;
  /** Election name (the key prefix). */
  name: string;
  /** This candidate's value: who it is, where to reach it. */
  identity: string;
  /** TTL of the session the elector makes (seconds, default 10). */
  ttl?: number;
  /** Deadline of each call to etcd, for the session the elector makes (ms, default 5000). */
  callTimeoutMs?: number;
  /**
   * Where the elector (and the session it makes) logs, in pino's shape. Default: warnings and errors on
   * the console; `false` silences it.
   */
  logger?: Logger | false;
  /**
   * Called once per term, when this process starts leading. Do the work until `term.signal` aborts (and
   * call `term.assertHeld()` right before acts that fencing cannot protect). The elector campaigns again
   * only once the promise it returns has settled, so one process never runs two terms' work at once.
   * If it throws, the elector resigns and campaigns again.
   */
  onStartedLeading: (term: Term) => void | Promise<void>;
  /** Called when a term of ours ends, however it ended. */
  onStoppedLeading?: () => void;
  /** Called with each new leader (or undefined when nobody leads), ours included. */
  onNewLeader?: (leader: Leader | undefined) => void;
}

/** idle: between terms (backing off, or making a session); stopping: releasing leadership after a stop. */
export type ElectorState = "idle" | "campaigning" | "leading" | "stopping" | "stopped";

/**
 * A snapshot for dashboards; JSON-safe (the token is a decimal string). Everything in it is of the current
 * (or last) `run()`: each run starts its counters, `leadingMs`, `lastFailoverMs` and `lastError` afresh.
 */
export interface ElectorMetrics {
  /** What the elector is doing now. */
  state: ElectorState;
  /** Terms this process has led. */
  termsLed: number;
  /** Sessions the elector made (more than one: it recovered from a lost session). */
  sessions: number;
  /** Failures to reach etcd (session creation or campaign) since the run started. */
  failures: number;
  /** Times the user's callbacks threw (work that throws makes the leader resign and campaign again). */
  workFailures: number;
  /** Fencing token of the current term, if leading. */
  token: string | undefined;
  /** Milliseconds since the current state began. */
  inStateMs: number;
  /** Milliseconds this process has led, all terms together (the current one included). */
  leadingMs: number;
  /**
   * For the last term this process won by taking over from a predecessor: from the moment the
   * predecessor's key was gone (resigned, or its lease expired in etcd) to the moment this process led.
   * A crash costs the TTL before the key goes; this is the part after. Undefined if none yet. A takeover
   * that only a re-read saw (the watch was made again meanwhile) has no known moment: it leaves this as it was.
   */
  lastFailoverMs: number | undefined;
  /** The session's state (undefined between sessions). */
  sessionState: SessionState | undefined;
  /** Round trip of the last acknowledged keepalive, ms. */
  keepaliveRoundTripMs: number | undefined;
  /** The last error the elector handled: its code, message and when (ISO time). */
  lastError:
    | {
        /** The error's {@link ElectionError.code | code}. */
        code: string;
        /** The error's message. */
        message: string;
        /** When it was handled, as an ISO time. */
        at: string;
      }
    | undefined;
}

/** What an elector tells as it goes, for metrics adapters and logs (eventemitter3, typed). */
export interface ElectorEvents {
  /** This process won a term, `waitMs` after its campaign started. */
  elected: (term: Term, waitMs: number) => void;
  /** A term of ours ended (it has been resigned, or was lost). */
  steppedDown: (term: Term) => void;
  /** The leader changed; undefined: nobody leads. */
  newLeader: (leader: Leader | undefined) => void;
  /** A failure the elector handled itself: etcd unreachable, a callback that threw... */
  failure: (error: ElectionError) => void;
  /** A keepalive of the elector's session was acknowledged after `roundTripMs`. */
  renewed: (roundTripMs: number) => void;
  /** The elector's state changed. */
  state: (state: ElectorState) => void;
}

/** Errors that trying again cannot cure: `run()` rejects with them instead of retrying forever. */
const FATAL: ReadonlySet<ElectionErrorCode> = new Set([
  "INVALID_ARGUMENT",
  "INVALID_CLIENT",
  "AUTH_FAILED",
  "PERMISSION_DENIED",
  "CLIENT_CLOSED",
  "REQUEST_TOO_LARGE",
  "NAME_CONFLICT",
  "SESSION_CLOSED",
]);

/**
 * The runner a worker process uses (in the spirit of client-go's leaderelection and Curator's
 * LeaderSelector): campaign, lead until the term ends, step down, wait for the work to stop, campaign
 * again, with backoff after failures and a fresh session after a lost one. `run()` resolves once its
 * signal aborted and leadership is released, within max(TTL, 2 × callTimeoutMs) whatever etcd does.
 *
 * An event emitter (eventemitter3's `on`, `once`, `off`) of the {@link ElectorEvents}.
 */
export class LeaderElector extends EventEmitter<ElectorEvents> {
  /** The election name (the key prefix), from the options. */
  readonly name: string;
  /** This candidate's value, from the options. */
  readonly identity: string;
  readonly #options: LeaderElectorOptions;
  readonly #ttl: number;
  readonly #callTimeoutMs: number;
  readonly #logger: Logger;
  #state: ElectorState = "idle";
  #stateSince = now();
  #term: Term | undefined;
  #session: Session | undefined;
  #running = false;
  #counters = { termsLed: 0, sessions: 0, failures: 0, workFailures: 0 };
  #leadingMs = 0;
  #leadingSince: number | undefined;
  #lastFailoverMs: number | undefined;
  #lastError: ElectorMetrics["lastError"];
  #lastLeader: { leader: Leader | undefined } | undefined;
  /** The last term's work, until it settles: the next campaign waits for it. */
  #work: Promise<void> | undefined;
  /** Campaigns and releases still finishing after a stop (bounded by the stop). */
  readonly #inflight = new Set<Promise<unknown>>();

  constructor(options: LeaderElectorOptions) {
    super();
    const o = options as Partial<LeaderElectorOptions> | undefined;
    if (!o || typeof o !== "object")
      throw new InvalidArgumentError(
        "LeaderElector needs options: { client or session, name, identity, onStartedLeading }",
      );
    if (o.session && o.client) throw new InvalidArgumentError("give LeaderElector either client or session, not both");
    if (o.session) contextOf(o.session);
    else if (o.client) openDoor(o.client);
    else throw new InvalidArgumentError("LeaderElector needs a client (an etcd3 client) or a session");
    if (typeof o.onStartedLeading !== "function") throw new InvalidArgumentError("onStartedLeading must be a function");
    for (const cb of ["onStoppedLeading", "onNewLeader"] as const) {
      if (o[cb] !== undefined && typeof o[cb] !== "function")
        throw new InvalidArgumentError(`${cb} must be a function`);
    }
    if (typeof o.identity !== "string") throw new InvalidArgumentError("identity must be a string");
    toValueBuffer(o.identity, "identity", o.session ? contextOf(o.session).maxValueBytes : DEFAULT_MAX_VALUE_BYTES);
    this.name = validateName(o.name, "election name");
    this.identity = o.identity;
    if (o.session && (o.ttl !== undefined || o.callTimeoutMs !== undefined)) {
      throw new InvalidArgumentError(
        "ttl and callTimeoutMs belong to the session: set them on Session.create when you pass a session",
      );
    }
    this.#ttl = o.session ? o.session.ttl : validateTtl(o.ttl ?? 10);
    this.#callTimeoutMs = o.session
      ? contextOf(o.session).callTimeoutMs
      : (validateCallTimeout(o.callTimeoutMs) ?? 5000);
    this.#logger = withFields(toLogger(o.logger, consoleLogger), { election: this.name, identity: this.identity });
    this.#options = options;
  }

  /** True only while a term of ours holds, as far as this process can know (its deadline is read now). */
  isLeader(): boolean {
    return this.#term !== undefined && !this.#term.signal.aborted;
  }

  /**
   * For a liveness probe, as client-go's: false only while this process holds a term (leads, or is still
   * stepping down from one) and no keepalive has been acknowledged for longer than 2 × TTL (by the
   * clock that ran further). Followers are healthy whatever etcd does: restarting them cannot help.
   */
  healthy(): boolean {
    if (!this.#term) return true;
    const session = this.#currentSession();
    if (!session) return true;
    return contextOf(session).lease.sinceRenewalMs <= 2 * this.#ttl * 1000;
  }

  /** Whether `run()` is running and not stopping (for a readiness probe). */
  ready(): boolean {
    return this.#running && this.#state !== "stopping" && this.#state !== "stopped";
  }

  /** A snapshot of what the elector did and is doing; see {@link ElectorMetrics}. */
  metrics(): ElectorMetrics {
    const session = this.#currentSession();
    const lease = session && contextOf(session).lease;
    const leading = this.#leadingSince === undefined ? 0 : now() - this.#leadingSince;
    return {
      state: this.#state,
      ...this.#counters,
      token: this.isLeader() ? this.#term?.token.toString() : undefined,
      inStateMs: Math.round(now() - this.#stateSince),
      leadingMs: Math.round(this.#leadingMs + leading),
      lastFailoverMs: this.#lastFailoverMs,
      sessionState: session?.state,
      keepaliveRoundTripMs: lease?.roundTripMs === undefined ? undefined : Math.round(lease.roundTripMs * 10) / 10,
      lastError: this.#lastError,
    };
  }

  /**
   * Campaigns and leads until `signal` aborts, then releases leadership and resolves, within
   * max(TTL, 2 × callTimeoutMs). Rejects on errors that retrying cannot cure (bad credentials, no
   * permission, a closed client, a lost session that is not the elector's own); retries the rest.
   */
  async run(options: { signal?: AbortSignal } = {}): Promise<void> {
    const stop = validateSignal(options.signal) ?? new AbortController().signal;
    if (this.#running) throw new InvalidArgumentError(`this elector of "${this.name}" is already running`);
    this.#running = true;
    // metrics() tells of this run only.
    this.#counters = { termsLed: 0, sessions: 0, failures: 0, workFailures: 0 };
    this.#leadingMs = 0;
    this.#lastFailoverMs = undefined;
    this.#lastError = undefined;
    this.#lastLeader = undefined;
    this.#setState("idle");
    let stoppedAt: number | undefined;
    const undo = onAbort(stop, () => (stoppedAt = now()));
    const renewed = (ms: number): void => void this.emit("renewed", ms);
    this.#options.session?.on("renewed", renewed);
    try {
      await this.#loop(stop);
    } finally {
      undo();
      this.#options.session?.off("renewed", renewed);
      await this.#shutdown(stoppedAt ?? now());
    }
  }

  async #loop(stop: AbortSignal): Promise<void> {
    let backoff: IBackoff<unknown> | undefined;
    while (!stop.aborted) {
      try {
        await this.#settleWork(stop);
        if (stop.aborted) return;
        await this.#oneTerm(await this.#ensureSession(stop), stop);
        backoff = undefined;
      } catch (err) {
        if (stop.aborted) return;
        if (!isElectionError(err, "WORK_FAILED")) {
          const error = this.#record(err);
          this.#counters.failures++;
          if (FATAL.has(error.code) || (this.#options.session && this.#options.session.signal.aborted)) {
            this.#logger.error({ err: error }, "leader election stopped: this error does not go away by trying again");
            throw error;
          }
          this.#logger.warn({ err: error }, "leader election failed; trying again");
        }
        this.#setState("idle");
        backoff = backoff
          ? backoff.next(undefined)
          : new ExponentialBackoff({ initialDelay: 200, maxDelay: this.#ttl * 1000 }).next();
        await sleep(backoff.duration, stop).catch(() => {});
      }
    }
  }

  /** Our session, or a new one when there is none or it was lost. */
  async #ensureSession(stop: AbortSignal): Promise<Session> {
    const current = this.#currentSession();
    if (current && !current.signal.aborted) return current;
    if (this.#options.session) throw this.#options.session.signal.reason;
    if (current) void this.#track(current.close()); // a lost session of ours: let go of what it still holds locally
    this.#session = undefined;
    const creating = Session.create(this.#options.client!, {
      ttl: this.#ttl,
      callTimeoutMs: this.#callTimeoutMs,
      logger: this.#logger,
    });
    const session = await this.#untilStop(creating, stop);
    if (!session) {
      void creating.then(
        (late) => late.close(),
        () => {},
      ); // a grant that comes after the stop is revoked
      throw stop.reason;
    }
    this.#session = session;
    this.#counters.sessions++;
    session.on("renewed", (ms) => this.emit("renewed", ms));
    return session;
  }

  /** Campaign, lead until the term ends or we are told to stop, then step down. */
  async #oneTerm(session: Session, stop: AbortSignal): Promise<void> {
    const election = new Election(session, this.name);
    const { controller, dispose } = linkedController(stop, session.signal);
    const observing = this.#observe(election, controller.signal);
    try {
      this.#setState("campaigning");
      const campaignedAt = now();
      const campaign = election.campaign(this.identity, { signal: controller.signal });
      const term = await this.#untilStop(campaign, stop);
      if (!term) {
        // Stopped while campaigning: the campaign removes its key (confirmed) before it settles; a
        // term won in the meantime is resigned at once.
        void this.#track(
          campaign.then(
            (late) => late.resign(),
            () => {},
          ),
        );
        return;
      }
      this.#won(term);
      this.emit("elected", term, now() - campaignedAt);
      try {
        await this.#lead(term, stop);
      } finally {
        this.#leadingMs += now() - (this.#leadingSince ?? now());
        this.#leadingSince = undefined;
        this.#term = undefined;
        this.#setState(stop.aborted ? "stopping" : "idle");
        this.emit("steppedDown", term);
        this.#call("onStoppedLeading", () => this.#options.onStoppedLeading?.());
      }
    } finally {
      controller.abort();
      dispose();
      await observing;
    }
  }

  #won(term: Term): void {
    this.#term = term;
    this.#counters.termsLed++;
    this.#leadingSince = now();
    if (term.predecessorGoneAt !== undefined)
      this.#lastFailoverMs = Math.round((now() - term.predecessorGoneAt) * 10) / 10;
    this.#setState("leading");
    this.#logger.info({ token: term.token.toString(), key: term.key }, "started leading");
  }

  /** Runs the user's work and waits until the term ends, the run is stopped, or the work throws. */
  async #lead(term: Term, stop: AbortSignal): Promise<void> {
    const { controller, dispose } = linkedController(term.signal, stop);
    let failure: WorkFailedError | undefined;
    const work = Promise.resolve()
      .then(() => this.#options.onStartedLeading(term))
      .catch((err: unknown) => {
        this.#counters.workFailures++;
        failure = new WorkFailedError(err);
        this.#record(failure);
        this.#logger.error(
          { err, token: term.token.toString() },
          "onStartedLeading threw; resigning, then campaigning again",
        );
        controller.abort(failure);
      });
    this.#work = work;
    await new Promise<void>((resolve) => onAbort(controller.signal, () => resolve()));
    dispose();
    if (stop.aborted) this.#setState("stopping");
    else if (!failure)
      this.#logger.warn(
        { token: term.token.toString(), err: term.signal.reason as unknown },
        "stopped leading: the term ended",
      );
    // Step down: resign (confirmed by etcd, or the session ends). A stop bounds it, even one that comes
    // while it retries (keepalives may get through while every write times out): #shutdown waits for it
    // until its deadline, then closes the session, which revokes the lease.
    const resigning = this.#track(term.resign());
    if (!stop.aborted) await this.#untilStop(resigning, stop);
    if (failure) throw failure;
  }

  /** The previous term's work must settle before we campaign again (design: Work never overlaps). */
  async #settleWork(stop: AbortSignal): Promise<void> {
    const work = this.#work;
    if (!work) return;
    let timer: Timer | undefined;
    const since = now();
    const warn = (): void => {
      timer = timerIn(this.#ttl * 1000, () => {
        this.#logger.warn(
          { waitingMs: Math.round(now() - since) },
          "the last term's onStartedLeading has not returned after its term ended; not campaigning until it does",
        );
        warn();
      });
    };
    warn();
    try {
      await this.#untilStop(work, stop);
      if (this.#work === work) this.#work = undefined;
    } finally {
      timer?.cancel();
    }
  }

  /**
   * After a stop: waits (within max(TTL, 2 × callTimeoutMs) from the stop) for the resign or the
   * campaign's removal of its key, and for the work to return; then closes the session we made, which
   * revokes the lease if a delete did not get through.
   */
  async #shutdown(stoppedAt: number): Promise<void> {
    this.#setState("stopping");
    const deadline = stoppedAt + Math.max(this.#ttl * 1000, 2 * this.#callTimeoutMs);
    const own = this.#options.session ? undefined : this.#session;
    const releaseBy = own ? deadline - this.#callTimeoutMs : deadline;
    if (!(await this.#settleBy([...this.#inflight], releaseBy))) {
      this.#logger[own ? "warn" : "error"](
        {},
        own
          ? "resign not confirmed in time; closing the session revokes the lease"
          : "resign not confirmed in time; our key stays until the session ends",
      );
    }
    if (this.#work && !(await this.#settleBy([this.#work], releaseBy))) {
      this.#logger.warn(
        {},
        "onStartedLeading has not returned after the stop; run() resolves anyway (its term has ended)",
      );
    }
    if (own) await own.close();
    this.#session = undefined;
    this.#running = false;
    this.#setState("stopped");
  }

  /** Whether all of `promises` settled before the monotonic time `by`. */
  async #settleBy(promises: Promise<unknown>[], by: number): Promise<boolean> {
    if (promises.length === 0) return true;
    const controller = new AbortController();
    const timer = timerIn(Math.max(0, by - now()), () => controller.abort());
    try {
      return (await this.#untilStop(Promise.allSettled(promises), controller.signal)) !== undefined;
    } finally {
      timer.cancel();
    }
  }

  /** Resolves with the promise's value, or undefined as soon as `stop` aborts (the promise goes on). */
  #untilStop<T>(promise: Promise<T>, stop: AbortSignal): Promise<T | undefined> {
    return raceAbort(promise, stop).catch((err: unknown) => {
      if (stop.aborted) return undefined;
      throw err;
    });
  }

  #track<T>(promise: Promise<T>): Promise<T> {
    this.#inflight.add(promise);
    const done = (): void => void this.#inflight.delete(promise);
    promise.then(done, done);
    return promise;
  }

  async #observe(election: Election, signal: AbortSignal): Promise<void> {
    try {
      for await (const leader of election.observe({ signal })) {
        // Each term observes afresh: tell only of changes since the last report.
        const last = this.#lastLeader;
        if (last && sameLeader(leader, last.leader)) continue;
        this.#lastLeader = { leader };
        this.#logger.debug({ leader: leader?.value.toString(), token: leader?.token.toString() }, "leader observed");
        this.emit("newLeader", leader);
        const onNewLeader = this.#options.onNewLeader;
        if (onNewLeader) this.#call("onNewLeader", () => onNewLeader(leader));
      }
    } catch (err) {
      // Ends with the term's controller; the next term observes again.
      if (!signal.aborted) this.#logger.warn({ err }, "observing the leader failed; the next campaign observes again");
    }
  }

  /** A callback that throws must not stop the elector, nor pass for a failure of etcd. */
  #call(name: string, callback: () => void): void {
    try {
      callback();
    } catch (err) {
      this.#counters.workFailures++;
      this.#record(new WorkFailedError(err, name));
      this.#logger.error({ err }, `${name} threw`);
    }
  }

  #record(err: unknown): ElectionError {
    const error = toElectionError(err, "leader election"); // an ElectionError of either build as it is
    this.#lastError = { code: error.code, message: error.message, at: new Date().toISOString() };
    this.emit("failure", error);
    return error;
  }

  #currentSession(): Session | undefined {
    return this.#options.session ?? this.#session;
  }

  #setState(state: ElectorState): void {
    if (this.#state === state) return;
    this.#logger.debug({ from: this.#state, to: state }, "elector state");
    this.#state = state;
    this.#stateSince = now();
    this.emit("state", state);
  }
}
