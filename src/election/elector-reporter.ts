import type { Logger } from "../common/logger.js";
import { toElectionError } from "../etcd/errors.js";
import { WorkFailedError, type ElectionError } from "../errors.js";
import type { ElectorState, ElectorTally } from "./elector-metrics.js";

/**
 * How a runner (LeaderElector, ShardedElector) tells its users and its metrics what happened, the same
 * way for both: a listener or a user's callback that throws is logged and counted, never breaks a
 * hand-over or a step-down (a resign skipped, a term left held); a failure is recorded, then told.
 */
export class ElectorReporter {
  readonly #emit: (event: string, ...args: unknown[]) => boolean;
  readonly #tally: ElectorTally;
  readonly #logger: Logger;
  /** Names the runner in errors made from what it catches ("leader election", "sharded election"). */
  readonly #what: string;

  constructor(emit: (event: string, ...args: unknown[]) => boolean, tally: ElectorTally, logger: Logger, what: string) {
    this.#emit = emit;
    this.#tally = tally;
    this.#logger = logger;
    this.#what = what;
  }

  /** Tells the listeners of an event; one that throws is logged, as every error the library handles is. */
  tell(event: string, ...args: unknown[]): void {
    try {
      this.#emit(event, ...args);
    } catch (err) {
      this.#logger.error({ err, event }, `a listener of "${event}" threw`);
    }
  }

  /** Runs a user's callback; one that throws must not stop the runner, nor pass for a failure of etcd. */
  call(name: string, callback: () => void): void {
    try {
      callback();
    } catch (err) {
      this.#tally.workFailed();
      this.record(new WorkFailedError(err, name));
      this.#logger.error({ err }, `${name} threw`);
    }
  }

  /** Counts a failure and tells the `failure` listeners; returns it as an ElectionError (of either build, as it is). */
  record(err: unknown): ElectionError {
    const error = toElectionError(err, this.#what);
    this.#tally.error(error);
    this.tell("failure", error);
    return error;
  }

  /** Enters `state` (once: entering the state it is in does nothing) and tells the `state` listeners. */
  setState(state: ElectorState): void {
    const from = this.#tally.state;
    if (!this.#tally.enter(state)) return;
    this.#logger.debug({ from, to: state }, "elector state");
    this.tell("state", state);
  }
}
