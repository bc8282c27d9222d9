import { EventEmitter } from "eventemitter3";
import { Backoff, campaignBackoff } from "./common/backoff.js";
import { linkedController, onAbort, settledBy, sleep, track, untilAbort } from "./common/abort.js";
import { systemClock, type Clock, type Timer } from "./common/clock.js";
import { consoleLogger, toLogger, withFields, type Logger } from "./common/logger.js";
import { validateElectorOptions, validateSignal, validateTimeout } from "./common/validate.js";
import {
  checkEtcdPeer,
  etcdBackend,
  nextSession,
  type ElectorBackend,
  type ElectorSession,
} from "./election/elector-backend.js";
import { ElectorTally, type ElectorMetrics, type ElectorState } from "./election/elector-metrics.js";
import { ElectorReporter } from "./election/elector-reporter.js";
import { preferLeaders } from "./election/preferred.js";
import { isIncurable } from "./etcd/errors.js";
import {
  InvalidArgumentError,
  NotLeaderError,
  WorkFailedError,
  isElectionError,
  type ElectionError,
} from "./errors.js";
import { sameLeader, type Leader } from "./leader.js";
import type { EtcdClient, Session } from "./session.js";
import type { HandOverOptions, Term } from "./term.js";

export type { ElectorMetrics, ElectorState } from "./election/elector-metrics.js";

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
  /**
   * Preferred leaders: while a waiting candidate has a higher priority than the leader's, the leader hands
   * the lead over to it (the highest; among equals the first in line). A candidate that sets none counts
   * as 0. E.g. the release's version, so that a rolling upgrade ends with the newest release leading. A
   * term is never preempted within one TTL of its start (nor of a failed hand-over), so a candidate that
   * keeps coming and going moves the lead at most once per TTL.
   */
  priority?: number;
  /**
   * How long a candidate with a higher priority must have waited before the leader hands over to it (ms,
   * default 0: as soon as the hold-down allows; the leader's work is told first, as on any resign).
   */
  preemptAfterMs?: number;
  /** Called when a term of ours ends, however it ended. */
  onStoppedLeading?: () => void;
  /** Called with each new leader (or undefined when nobody leads), ours included. */
  onNewLeader?: (leader: Leader | undefined) => void;
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

/** @internal What unit tests put in place of etcd and the system clock. */
export interface ElectorSeam {
  backend: ElectorBackend;
  clock: Clock;
}

let injected: ElectorSeam | undefined;

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
  readonly #backend: ElectorBackend;
  readonly #clock: Clock;
  readonly #tally: ElectorTally;
  readonly #reporter: ElectorReporter;
  /** The term's end was seen: its resign may still be on its way. */
  #stepping = false;
  #term: Term | undefined;
  #session: ElectorSession | undefined;
  #running = false;
  #lastLeader: { leader: Leader | undefined } | undefined;
  /** The last term's work, until it settles: the next campaign waits for it. */
  #work: Promise<void> | undefined;
  /** Campaigns and releases still finishing after a stop (bounded by the stop). */
  readonly #inflight = new Set<Promise<unknown>>();
  /** The session our priority was published on, and the key's create revision. */
  #published: { session: ElectorSession; createRevision: bigint } | undefined;

  constructor(options: LeaderElectorOptions) {
    super();
    const seam = injected;
    const settings = validateElectorOptions(options, seam ? () => {} : checkEtcdPeer);
    ({ name: this.name, identity: this.identity, ttl: this.#ttl, callTimeoutMs: this.#callTimeoutMs } = settings);
    this.#logger = withFields(toLogger(options.logger, consoleLogger), {
      election: this.name,
      identity: this.identity,
    });
    this.#options = options;
    this.#clock = seam?.clock ?? systemClock;
    this.#backend =
      seam?.backend ??
      etcdBackend({ ...options, ttl: this.#ttl, callTimeoutMs: this.#callTimeoutMs, logger: this.#logger });
    this.#tally = new ElectorTally(this.#clock);
    this.#reporter = new ElectorReporter(
      this.emit.bind(this) as (event: string, ...args: unknown[]) => boolean,
      this.#tally,
      this.#logger,
      "leader election",
    );
    if (options.priority !== undefined && (typeof options.priority !== "number" || !Number.isFinite(options.priority)))
      throw new InvalidArgumentError(`priority must be a finite number, got ${String(options.priority)}`);
    validateTimeout(options.preemptAfterMs, "preemptAfterMs");
  }

  /**
   * Hands the lead to the waiting candidate whose identity is `identity` (see {@link Term.handOver}):
   * resolves with the new leader, read from etcd once this elector's key is gone. Rejects with
   * INVALID_ARGUMENT for bad options (checked first), NOT_LEADER when this elector does not lead, and
   * with HANDOVER_FAILED, still leading, when the hand-over cannot be done. The elector then campaigns
   * again, behind the new leader.
   */
  async handOver(identity: string, options: Pick<HandOverOptions, "timeoutMs" | "signal"> = {}): Promise<Leader> {
    if (typeof identity !== "string") throw new InvalidArgumentError("identity must be a string");
    validateTimeout(options.timeoutMs, "timeoutMs");
    validateSignal(options.signal);
    const term = this.#term;
    if (!term || term.signal.aborted)
      throw new NotLeaderError(`not the leader of "${this.name}": nothing to hand over`);
    return term.handOver({ ...options, to: identity });
  }

  /** @internal An elector on `seam` instead of etcd and the system clock (unit tests). */
  static withSeam(options: LeaderElectorOptions, seam: ElectorSeam): LeaderElector {
    injected = seam;
    try {
      return new LeaderElector(options);
    } finally {
      injected = undefined;
    }
  }

  /** True only while a term of ours holds, as far as this process can know (its deadline is read now). */
  isLeader(): boolean {
    return this.#term !== undefined && !this.#term.signal.aborted;
  }

  /**
   * For a liveness probe, as client-go's: false only while this process holds a term it has not yet seen
   * end (it still acts as leader) and no keepalive has been acknowledged for longer than 2 × TTL (by the
   * clock that ran further): a wedged leader. Followers are healthy whatever etcd does, and so is a leader
   * whose term has ended and that is stepping down: restarting them cannot help.
   */
  healthy(): boolean {
    const session = this.#currentSession();
    return !this.#term || this.#stepping || !session || session.sinceRenewalMs <= 2 * this.#ttl * 1000;
  }

  /** Whether `run()` is running and not stopping (for a readiness probe). */
  ready(): boolean {
    return this.#running && this.#tally.state !== "stopping" && this.#tally.state !== "stopped";
  }

  /** A snapshot of what the elector did and is doing; see {@link ElectorMetrics}. */
  metrics(): ElectorMetrics {
    const session = this.#currentSession();
    return this.#tally.snapshot({
      token: this.isLeader() ? this.#term?.token : undefined,
      sessionState: session?.state,
      roundTripMs: session?.roundTripMs,
    });
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
    this.#tally.reset(); // metrics() tells of this run only
    this.#lastLeader = undefined;
    this.#setState("idle");
    let stoppedAt: number | undefined;
    const undo = onAbort(stop, () => (stoppedAt = this.#clock.now()));
    const unlisten = this.#backend.given?.onRenewed((ms) => this.#tell("renewed", ms));
    try {
      await this.#loop(stop);
    } finally {
      undo();
      unlisten?.();
      await this.#shutdown(stoppedAt ?? this.#clock.now());
    }
  }

  async #loop(stop: AbortSignal): Promise<void> {
    // Between failures: from 200 ms, growing (with jitter) up to the TTL; a term won starts it over.
    const backoff = new Backoff(campaignBackoff(this.#ttl));
    while (!stop.aborted) {
      try {
        await this.#settleWork(stop);
        if (stop.aborted) return;
        await this.#oneTerm(await this.#ensureSession(stop), stop);
        backoff.reset();
      } catch (err) {
        if (stop.aborted) return;
        if (!isElectionError(err, "WORK_FAILED")) {
          const error = this.#record(err);
          this.#tally.failed();
          if (isIncurable(error) || this.#backend.given?.signal.aborted) {
            this.#logger.error({ err: error }, "leader election stopped: this error does not go away by trying again");
            throw error;
          }
          this.#logger.warn({ err: error }, "leader election failed; trying again");
        }
        this.#setState("idle");
        await sleep(backoff.next(), stop, this.#clock).catch(() => {});
      }
    }
  }

  /** Our session, or a new one when there is none or it was lost. */
  async #ensureSession(stop: AbortSignal): Promise<ElectorSession> {
    const { session, made } = await nextSession(
      this.#backend,
      this.#currentSession(),
      this.#inflight,
      stop,
      () => (this.#session = undefined),
    );
    if (!made) return session;
    this.#session = session;
    this.#tally.sessionMade();
    session.onRenewed((ms) => this.#tell("renewed", ms));
    return session;
  }

  /** Campaign, lead until the term ends or we are told to stop, then step down. */
  async #oneTerm(session: ElectorSession, stop: AbortSignal): Promise<void> {
    const { controller, dispose } = linkedController(stop, session.signal);
    const observing = this.#observe(session, controller.signal);
    try {
      this.#setState("campaigning");
      const campaignedAt = this.#clock.now();
      const priority = this.#options.priority;
      if (priority !== undefined && this.#published?.session !== session && session.publishPriority) {
        const publishing = session.publishPriority(this.name, priority);
        const createRevision = await untilAbort(publishing, stop);
        if (createRevision !== undefined) this.#published = { session, createRevision };
        // Stopped first: a put that lands later would outlive run() on the user's session; withdraw it then.
        else if (session === this.#backend.given)
          void track(
            this.#inflight,
            publishing.then(
              (late) => session.withdrawPriority?.(this.name, late),
              (err: unknown) => this.#logger.debug({ err }, "publishing our priority failed after the stop"),
            ),
          );
      }
      const campaign = session.campaign(this.name, this.identity, controller.signal);
      const term = await untilAbort(campaign, stop);
      if (!term) {
        // Stopped while campaigning: the campaign removes its key (confirmed) before it settles; a
        // term won in the meantime is resigned at once.
        void track(
          this.#inflight,
          campaign.then(
            (late) => late.resign(),
            () => {},
          ),
        );
        return;
      }
      this.#term = term;
      this.#tally.termStarted(term.predecessorGoneAt);
      this.#setState("leading");
      this.#logger.info({ token: term.token.toString(), key: term.key }, "started leading");
      this.#tell("elected", term, this.#clock.now() - campaignedAt);
      try {
        await this.#lead(term, stop, session);
      } finally {
        this.#tally.termEnded();
        this.#term = undefined;
        this.#stepping = false;
        this.#setState(stop.aborted ? "stopping" : "idle");
        this.#tell("steppedDown", term);
        this.#call("onStoppedLeading", () => this.#options.onStoppedLeading?.());
      }
    } finally {
      controller.abort();
      dispose();
      await observing;
    }
  }

  /** Runs the user's work and waits until the term ends, the run is stopped, or the work throws. */
  async #lead(term: Term, stop: AbortSignal, session: ElectorSession): Promise<void> {
    const { controller, dispose } = linkedController(term.signal, stop);
    const preferring = preferLeaders({
      candidates: session.waitingCandidates?.(this.name, this.#options.priority ?? 0, controller.signal),
      term,
      signal: controller.signal,
      clock: this.#clock,
      logger: this.#logger,
      rules: {
        priority: this.#options.priority ?? 0,
        preemptAfterMs: this.#options.preemptAfterMs ?? 0,
        holdDownMs: this.#ttl * 1000,
      },
      timeoutMs: Math.max(this.#ttl * 1000, 2 * this.#callTimeoutMs),
      failed: (err) => {
        this.#logger.warn({ err: this.#record(err) }, "handing over to a preferred candidate failed; still leading");
      },
    });
    let failure: WorkFailedError | undefined;
    const work = Promise.resolve()
      .then(() => this.#options.onStartedLeading(term))
      .catch((err: unknown) => {
        this.#tally.workFailed();
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
    await preferring;
    this.#stepping = true; // seen to end: no longer acting as leader (healthy() stops judging it)
    if (stop.aborted) this.#setState("stopping");
    else if (term.handedOver) this.#logger.info({ token: term.token.toString() }, "handed the lead over");
    else if (!failure)
      this.#logger.warn(
        { token: term.token.toString(), err: term.signal.reason as unknown },
        "stopped leading: the term ended",
      );
    // Step down: resign (confirmed by etcd, or the session ends). A stop bounds it, even one that comes
    // while it retries (keepalives may get through while every write times out): #shutdown waits for it
    // until its deadline, then closes the session, which revokes the lease.
    const resigning = track(this.#inflight, term.resign());
    if (!stop.aborted) await untilAbort(resigning, stop);
    if (failure) throw failure;
  }

  /** The previous term's work must settle before we campaign again (design: Work never overlaps). */
  async #settleWork(stop: AbortSignal): Promise<void> {
    const work = this.#work;
    if (!work) return;
    let timer: Timer | undefined;
    const since = this.#clock.now();
    const warn = (): void => {
      timer = this.#clock.timerIn(this.#ttl * 1000, () => {
        this.#logger.warn(
          { waitingMs: Math.round(this.#clock.now() - since) },
          "the last term's onStartedLeading has not returned after its term ended; not campaigning until it does",
        );
        warn();
      });
    };
    warn();
    try {
      await untilAbort(work, stop);
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
    const own = this.#backend.given ? undefined : this.#session;
    const releaseBy = own ? deadline - this.#callTimeoutMs : deadline;
    if (!(await settledBy([...this.#inflight], releaseBy, this.#clock))) {
      this.#logger[own ? "warn" : "error"](
        {},
        own
          ? "resign not confirmed in time; closing the session revokes the lease"
          : "resign not confirmed in time; our key stays until the session ends",
      );
    }
    if (this.#work && !(await settledBy([this.#work], releaseBy, this.#clock))) {
      this.#logger.warn(
        {},
        "onStartedLeading has not returned after the stop; run() resolves anyway (its term has ended)",
      );
    }
    // On the user's session the lease lives on, and so would our priority key: remove it.
    const published = this.#published;
    this.#published = undefined;
    const given = this.#backend.given;
    if (published && given && published.session === given && !given.signal.aborted)
      await given.withdrawPriority?.(this.name, published.createRevision);
    if (own) await own.close();
    this.#session = undefined;
    this.#running = false;
    this.#setState("stopped");
  }

  async #observe(session: ElectorSession, signal: AbortSignal): Promise<void> {
    try {
      for await (const leader of session.observe(this.name, signal)) {
        // Each term observes afresh: tell only of changes since the last report.
        const last = this.#lastLeader;
        if (last && sameLeader(leader, last.leader)) continue;
        this.#lastLeader = { leader };
        this.#logger.debug({ leader: leader?.value.toString(), token: leader?.token.toString() }, "leader observed");
        this.#tell("newLeader", leader);
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
    this.#reporter.call(name, callback);
  }

  #record(err: unknown): ElectionError {
    return this.#reporter.record(err);
  }

  #currentSession(): ElectorSession | undefined {
    return this.#backend.given ?? this.#session;
  }

  /** Tells the listeners of an event; one that throws is logged, never breaks a hand-over or a step-down. */
  #tell<E extends keyof ElectorEvents>(event: E, ...args: Parameters<ElectorEvents[E]>): void {
    this.#reporter.tell(event, ...args);
  }

  #setState(state: ElectorState): void {
    this.#reporter.setState(state);
  }
}
