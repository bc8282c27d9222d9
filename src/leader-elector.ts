import { ExponentialBackoff, type IBackoff } from "cockatiel";
import { linkedController, onAbort, raceAbort, sleep } from "./common/abort.js";
import { assertClient, type EtcdClient } from "./common/client.js";
import { validateName, validateSignal, validateTtl } from "./common/validate.js";
import { Election } from "./election.js";
import { InvalidArgumentError } from "./errors.js";
import type { Leader } from "./leader.js";
import { assertSession, Session } from "./session.js";
import { removeKey } from "./queue.js";
import type { Term } from "./term.js";

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
  /**
   * Called once per term, when this process starts leading. Do the work until `term.signal` aborts;
   * what it returns does not end the term. If it throws, the elector resigns and campaigns again.
   */
  onStartedLeading: (term: Term) => void | Promise<void>;
  /** Called when a term of ours ends, however it ended. */
  onStoppedLeading?: () => void;
  /** Called with each new leader (or undefined when nobody leads), ours included. */
  onNewLeader?: (leader: Leader | undefined) => void;
}

/** idle: between terms (backing off, or making a session); stopping: releasing leadership after a stop. */
export type ElectorState = "idle" | "campaigning" | "leading" | "stopping" | "stopped";

export interface ElectorMetrics {
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
  token: bigint | undefined;
  /** Milliseconds since the current state began. */
  inStateMs: number;
}

/**
 * The runner a worker process uses (in the spirit of client-go's leaderelection and Curator's
 * LeaderSelector): campaign, lead until the term ends, step down, campaign again, with backoff after
 * failures and a fresh session after a lost one. `run()` resolves once its signal aborts and leadership
 * is released: resigned, or, when etcd cannot be reached, after the session's local deadline.
 */
export class LeaderElector {
  readonly name: string;
  readonly identity: string;
  readonly #options: LeaderElectorOptions;
  readonly #ttl: number;
  #state: ElectorState = "idle";
  #stateSince = Date.now();
  #term: Term | undefined;
  #session: Session | undefined;
  #running = false;
  #metrics = { termsLed: 0, sessions: 0, failures: 0, workFailures: 0 };
  /** Since when every attempt to get back in has failed (undefined: the last one worked). */
  #failingSince: number | undefined;
  #lastLeader: { leader: Leader | undefined } | undefined;

  constructor(options: LeaderElectorOptions) {
    if (options.session) assertSession(options.session);
    else assertClient(options.client);
    if (typeof options.onStartedLeading !== "function") throw new InvalidArgumentError("onStartedLeading must be a function");
    if (typeof options.identity !== "string") throw new InvalidArgumentError("identity must be a string");
    this.name = validateName(options.name, "election name");
    this.identity = options.identity;
    this.#ttl = options.session ? options.session.ttl : validateTtl(options.ttl ?? 10);
    this.#options = options;
  }

  /** True only while a term of ours holds, as far as this process can know (rule 1). */
  isLeader(): boolean {
    return this.#term !== undefined && !this.#term.signal.aborted;
  }

  /**
   * For a liveness probe: false when we lead but our keepalives are failing, or when etcd has been
   * unreachable for longer than a TTL while we try to get back in.
   */
  healthy(): boolean {
    if (this.isLeader()) return (this.#session ?? this.#options.session)?.state === "connected";
    return this.#failingSince === undefined || Date.now() - this.#failingSince <= this.#ttl * 1000;
  }

  metrics(): ElectorMetrics {
    return {
      state: this.#state,
      ...this.#metrics,
      token: this.isLeader() ? this.#term?.token : undefined,
      inStateMs: Date.now() - this.#stateSince,
    };
  }

  /** Campaigns and leads until `signal` aborts, then releases leadership and resolves. */
  async run(options: { signal?: AbortSignal } = {}): Promise<void> {
    const signal = validateSignal(options.signal);
    if (this.#running) throw new InvalidArgumentError(`this elector of "${this.name}" is already running`);
    this.#running = true;
    this.#metrics = { termsLed: 0, sessions: 0, failures: 0, workFailures: 0 };
    this.#failingSince = undefined;
    this.#lastLeader = undefined;
    let backoff: IBackoff<unknown> | undefined;
    try {
      while (!signal?.aborted) {
        try {
          await this.#oneTerm(await this.#ensureSession(signal), signal);
          backoff = undefined;
        } catch (err) {
          if (signal?.aborted) break;
          if (this.#options.session?.signal.aborted) throw err; // not ours to remake
          if (!(err instanceof WorkFailed)) {
            this.#metrics.failures++;
            this.#failingSince ??= Date.now();
          }
          this.#setState("idle");
          backoff = backoff ? backoff.next(undefined) : new ExponentialBackoff({ initialDelay: 200, maxDelay: this.#ttl * 1000 }).next();
          await sleep(backoff.duration, signal).catch(() => {});
        }
      }
    } finally {
      this.#setState("stopping");
      if (!this.#options.session) await this.#session?.close();
      this.#session = undefined;
      this.#running = false;
      this.#setState("stopped");
    }
  }

  /** Our session, or a new one when there is none or it was lost. */
  async #ensureSession(signal: AbortSignal | undefined): Promise<Session> {
    const current = this.#options.session ?? this.#session;
    if (current && !current.signal.aborted) return current;
    if (this.#options.session) throw current!.signal.reason;
    await current?.close(); // a lost session of ours: let go of what it still holds locally
    const creating = Session.create(this.#options.client!, { ttl: this.#ttl });
    try {
      this.#session = await raceAbort(creating, signal); // a stop does not wait for a slow grant...
    } catch (err) {
      void creating.then((late) => late.close(), () => {}); // ...whose lease is revoked if it comes
      throw err;
    }
    this.#metrics.sessions++;
    return this.#session;
  }

  /** Campaign, lead until the term ends or we are told to stop, then step down. */
  async #oneTerm(session: Session, signal: AbortSignal | undefined): Promise<void> {
    const election = new Election(session, this.name);
    const { controller, dispose } = linkedController(signal, session.signal);
    const observing = this.#observe(election, controller.signal);
    try {
      this.#setState("campaigning");
      const term = await election.campaign(this.identity, { signal: controller.signal });
      this.#failingSince = undefined;
      // A stop that came as we won: step down without starting the work.
      if (signal?.aborted) return await this.#stepDown(term, session);
      this.#term = term;
      this.#metrics.termsLed++;
      this.#setState("leading");
      try {
        await this.#lead(term, session, signal);
      } finally {
        this.#term = undefined;
        this.#setState(signal?.aborted ? "stopping" : "idle");
        this.#call(() => this.#options.onStoppedLeading?.());
      }
    } finally {
      controller.abort();
      dispose();
      await observing;
    }
  }

  /** Runs the user's work and waits until the term ends, the run is stopped, or the work throws. */
  async #lead(term: Term, session: Session, signal: AbortSignal | undefined): Promise<void> {
    const { controller, dispose } = linkedController(term.signal, signal);
    let failure: WorkFailed | undefined;
    void Promise.resolve()
      .then(() => this.#options.onStartedLeading(term))
      .catch((err: unknown) => {
        this.#metrics.workFailures++;
        failure = new WorkFailed(err);
        controller.abort(failure);
      });
    await new Promise<void>((resolve) => onAbort(controller.signal, () => resolve()));
    dispose();
    if (signal?.aborted) this.#setState("stopping");
    await this.#stepDown(term, session);
    if (failure) throw failure;
  }

  /**
   * Resigns, unless the term already ended. Until etcd confirms the delete, retries it; if the session
   * is lost first, its local deadline has passed and the lease goes with it: either way nobody is left
   * waiting behind a leader key that nobody acts on.
   */
  async #stepDown(term: Term, session: Session): Promise<void> {
    if (term.signal.aborted || (await term.released())) return;
    let backoff = new ExponentialBackoff({ initialDelay: 100, maxDelay: 1000 }).next();
    while (!session.signal.aborted) {
      await sleep(Math.min(backoff.duration, session.remainingMs() + 1));
      if (session.signal.aborted) return;
      try {
        await removeKey(session, term.key, term.token);
        session.takeStale(term.key);
        return;
      } catch {
        backoff = backoff.next(undefined);
      }
    }
  }

  async #observe(election: Election, signal: AbortSignal): Promise<void> {
    const onNewLeader = this.#options.onNewLeader;
    if (!onNewLeader) return;
    try {
      for await (const leader of election.observe({ signal })) {
        // Each term observes afresh: tell only of changes since the last report.
        const last = this.#lastLeader?.leader;
        const same = this.#lastLeader && leader?.token === last?.token && (!leader || leader.value.equals(last!.value));
        if (same) continue;
        this.#lastLeader = { leader };
        this.#call(() => onNewLeader(leader));
      }
    } catch {
      // Ends with the term's controller; the next term observes again.
    }
  }

  /** A callback that throws must not stop the elector, nor pass for a failure of etcd. */
  #call(callback: () => void): void {
    try {
      callback();
    } catch {
      this.#metrics.workFailures++;
    }
  }

  #setState(state: ElectorState): void {
    if (this.#state === state) return;
    this.#state = state;
    this.#stateSince = Date.now();
  }
}

/** The user's work threw: the elector resigns and campaigns again; not a failure to reach etcd. */
class WorkFailed extends Error {
  constructor(cause: unknown) {
    super("onStartedLeading threw", { cause });
  }
}
