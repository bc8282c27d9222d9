import type { Clock } from "../common/clock.js";
import type { ElectionError } from "../errors.js";
import type { SessionState } from "../session.js";

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

/**
 * An elector's tally (as client-go keeps its leader metrics beside the elector): state and how long in
 * it, counters, time led, the last failover and the last error, of one `run()` at a time.
 */
export class ElectorTally {
  readonly #clock: Clock;
  #state: ElectorState = "idle";
  #stateSince: number;
  #counters = { termsLed: 0, sessions: 0, failures: 0, workFailures: 0 };
  #leadingMs = 0;
  #leadingSince: number | undefined;
  /** Terms held now: one at most for a LeaderElector, one per shard for a ShardedElector. */
  #held = 0;
  #lastFailoverMs: number | undefined;
  #lastError: ElectorMetrics["lastError"];

  constructor(clock: Clock) {
    this.#clock = clock;
    this.#stateSince = clock.now();
  }

  get state(): ElectorState {
    return this.#state;
  }

  /** A run starts: everything but the state afresh (metrics() tells of this run only). */
  reset(): void {
    this.#counters = { termsLed: 0, sessions: 0, failures: 0, workFailures: 0 };
    this.#leadingMs = 0;
    this.#lastFailoverMs = undefined;
    this.#lastError = undefined;
  }

  /** False if it was in `state` already. */
  enter(state: ElectorState): boolean {
    if (this.#state === state) return false;
    this.#state = state;
    this.#stateSince = this.#clock.now();
    return true;
  }

  sessionMade(): void {
    this.#counters.sessions++;
  }

  /** A failure to reach etcd (recorded with `error()` too). */
  failed(): void {
    this.#counters.failures++;
  }

  /** A callback of the user's threw (recorded with `error()` too). */
  workFailed(): void {
    this.#counters.workFailures++;
  }

  error(error: ElectionError): void {
    this.#lastError = { code: error.code, message: error.message, at: new Date().toISOString() };
  }

  /**
   * A term won; `predecessorGoneAt`: when (clock ms) the predecessor's key went, if it waited on one.
   * Terms may overlap (shards): time led counts while at least one holds.
   */
  termStarted(predecessorGoneAt: number | undefined): void {
    const at = this.#clock.now();
    this.#counters.termsLed++;
    if (this.#held++ === 0) this.#leadingSince = at;
    if (predecessorGoneAt !== undefined) this.#lastFailoverMs = Math.round((at - predecessorGoneAt) * 10) / 10;
  }

  termEnded(): void {
    if (this.#held === 0 || --this.#held > 0) return;
    const at = this.#clock.now();
    this.#leadingMs += at - (this.#leadingSince ?? at);
    this.#leadingSince = undefined;
  }

  snapshot(now: {
    token: bigint | undefined;
    sessionState: SessionState | undefined;
    roundTripMs: number | undefined;
  }): ElectorMetrics {
    const at = this.#clock.now();
    const leading = this.#leadingSince === undefined ? 0 : at - this.#leadingSince;
    return {
      state: this.#state,
      ...this.#counters,
      token: now.token?.toString(),
      inStateMs: Math.round(at - this.#stateSince),
      leadingMs: Math.round(this.#leadingMs + leading),
      lastFailoverMs: this.#lastFailoverMs,
      sessionState: now.sessionState,
      keepaliveRoundTripMs: now.roundTripMs === undefined ? undefined : Math.round(now.roundTripMs * 10) / 10,
      lastError: this.#lastError,
    };
  }
}
