import { ExponentialBackoff, type IBackoff } from "cockatiel";
import { linkedController, onAbort, sleep } from "./common/abort.js";
import { assertClient, type EtcdClient } from "./common/client.js";
import { validateName, validateSignal, validateTtl } from "./common/validate.js";
import { Election } from "./election.js";
import { InvalidArgumentError } from "./errors.js";
import type { Leader } from "./leader.js";
import { assertSession, Session } from "./session.js";
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

export type ElectorState = "idle" | "campaigning" | "leading" | "stopping" | "stopped";

export interface ElectorMetrics {
  state: ElectorState;
  /** Terms this process has led. */
  termsLed: number;
  /** Sessions the elector made (more than one: it recovered from a lost session). */
  sessions: number;
  /** Failures to reach etcd (session creation or campaign) since the run started. */
  failures: number;
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
  #metrics = { termsLed: 0, sessions: 0, failures: 0 };
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
    this.#ttl = validateTtl(options.ttl ?? 10);
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
    let backoff: IBackoff<unknown> | undefined;
    try {
      while (!signal?.aborted) {
        try {
          const session = await this.#ensureSession(signal);
          this.#failingSince = undefined;
          await this.#oneTerm(session, signal);
          backoff = undefined;
        } catch (err) {
          if (signal?.aborted) break;
          if (this.#options.session && this.#options.session.signal.aborted) throw err; // not ours to remake
          this.#metrics.failures++;
          this.#failingSince ??= Date.now();
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
    signal?.throwIfAborted();
    const session = await Session.create(this.#options.client!, { ttl: this.#ttl });
    this.#metrics.sessions++;
    this.#session = session;
    return session;
  }

  /** Campaign, lead until the term ends or we are told to stop, then step down. */
  async #oneTerm(session: Session, signal: AbortSignal | undefined): Promise<void> {
    const election = new Election(session, this.name);
    const { controller, dispose } = linkedController(signal, session.signal);
    const observing = this.#observe(election, controller.signal);
    try {
      this.#setState("campaigning");
      const term = await election.campaign(this.identity, { signal: controller.signal });
      this.#term = term;
      this.#metrics.termsLed++;
      this.#setState("leading");
      try {
        await this.#lead(term, signal);
      } finally {
        this.#term = undefined;
        this.#options.onStoppedLeading?.();
      }
    } finally {
      controller.abort();
      dispose();
      await observing;
    }
  }

  /**
   * Runs the user's work and waits until the term ends, the run is stopped, or the work throws. Unless
   * the term already ended, resigns; if etcd cannot confirm that, waits out the session's local deadline
   * so that nobody else can lead while we might still be taken for the leader.
   */
  async #lead(term: Term, signal: AbortSignal | undefined): Promise<void> {
    const { controller, dispose } = linkedController(term.signal, signal);
    let failure: Error | undefined;
    void Promise.resolve()
      .then(() => this.#options.onStartedLeading(term))
      .catch((err: unknown) => {
        failure = err instanceof Error ? err : new Error(`onStartedLeading failed: ${String(err)}`);
        controller.abort(failure);
      });
    await new Promise<void>((resolve) => onAbort(controller.signal, () => resolve()));
    dispose();
    if (!term.signal.aborted && !(await term.released())) {
      const session = this.#session ?? this.#options.session;
      await sleep((session?.remainingMs() ?? 0) + 1);
    }
    if (failure) throw failure;
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
        onNewLeader(leader);
      }
    } catch {
      // Ends with the term's controller; the next term observes again.
    }
  }

  #setState(state: ElectorState): void {
    if (this.#state === state) return;
    this.#state = state;
    this.#stateSince = Date.now();
  }
}
