/**
 * A fake clock and a fake campaign/observe side for the elector's unit tests (as client-go tests its
 * leaderelection against a fake Clientset): time moves only when a test says, etcd answers only when a
 * test says.
 */
import { onAbort } from "../../src/common/abort.js";
import type { Clock, Timer } from "../../src/common/clock.js";
import type { ElectorBackend, ElectorSession } from "../../src/election/elector-backend.js";
import { SessionLostError } from "../../src/errors.js";
import type { Leader } from "../../src/leader.js";
import type { SessionState } from "../../src/session.js";
import type { Term } from "../../src/term.js";

/** Lets every promise chain that can run now run (the microtask queue drains before a macrotask). */
export const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export class FakeClock implements Clock {
  #now = 1_000;
  #timers: { dueAt: number; fn: () => void; seq: number }[] = [];
  #seq = 0;

  now(): number {
    return this.#now;
  }

  timerIn(ms: number, fn: () => void): Timer {
    const timer = { dueAt: this.#now + Math.max(0, ms), fn, seq: this.#seq++ };
    this.#timers.push(timer);
    return { cancel: () => void (this.#timers = this.#timers.filter((t) => t !== timer)) };
  }

  /** Timers still armed. */
  get pending(): number {
    return this.#timers.length;
  }

  /** Moves time on by `ms`, firing each timer due on the way at its own moment, in order. */
  async advance(ms: number): Promise<void> {
    const target = this.#now + ms;
    await flush();
    for (;;) {
      const next = [...this.#timers].sort((a, b) => a.dueAt - b.dueAt || a.seq - b.seq)[0];
      if (!next || next.dueAt > target) break;
      this.#timers = this.#timers.filter((t) => t !== next);
      this.#now = Math.max(this.#now, next.dueAt);
      next.fn();
      await flush();
    }
    this.#now = target;
    await flush();
  }

  /** Advances in `stepMs` steps until `cond()` holds; fails after `withinMs`. */
  async until(cond: () => boolean, withinMs: number, stepMs = 10): Promise<void> {
    const end = this.#now + withinMs;
    await flush();
    while (!cond()) {
      if (this.#now >= end) throw new Error(`condition not met within ${withinMs} ms of fake time`);
      await this.advance(stepMs);
    }
  }
}

/** A campaign the test decides: win it, or fail it. */
export interface FakeCampaign {
  readonly value: string;
  readonly signal: AbortSignal;
  readonly startedAt: number;
  /** `resign`: what the term's resign does: settle at once, hang, or settle with the promise given. */
  win(options?: { resign?: "settles" | "hangs" | Promise<void>; predecessorGoneAt?: number }): FakeTerm;
  fail(err: unknown): void;
}

export interface FakeTerm {
  readonly term: Term;
  /** Ends the term as etcd would (key gone, session lost). */
  lose(reason?: unknown): void;
  readonly resigned: boolean;
}

export class FakeSession implements ElectorSession {
  readonly #clock: FakeClock;
  readonly #controller = new AbortController();
  readonly #renewed = new Set<(ms: number) => void>();
  #renewedAt: number;
  #closed = false;
  readonly campaigns: FakeCampaign[] = [];
  #token = 100n;
  roundTripMs: number | undefined;

  constructor(clock: FakeClock) {
    this.#clock = clock;
    this.#renewedAt = clock.now();
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  get state(): SessionState {
    return this.#closed ? "closed" : this.#controller.signal.aborted ? "lost" : "connected";
  }

  get closed(): boolean {
    return this.#closed;
  }

  get sinceRenewalMs(): number {
    return this.#clock.now() - this.#renewedAt;
  }

  /** A keepalive acknowledged now. */
  renew(roundTripMs = 3): void {
    this.#renewedAt = this.#clock.now();
    this.roundTripMs = roundTripMs;
    for (const listener of this.#renewed) listener(roundTripMs);
  }

  lose(): void {
    this.#controller.abort(new SessionLostError("session lost: fake"));
  }

  onRenewed(listener: (roundTripMs: number) => void): () => void {
    this.#renewed.add(listener);
    return () => void this.#renewed.delete(listener);
  }

  campaign(name: string, value: string, signal: AbortSignal): Promise<Term> {
    return new Promise<Term>((resolve, reject) => {
      let settled = false;
      const undo = onAbort(signal, (reason) => {
        if (settled) return;
        settled = true;
        reject(reason instanceof Error ? reason : new Error(String(reason)));
      });
      const token = ++this.#token;
      this.campaigns.push({
        value,
        signal,
        startedAt: this.#clock.now(),
        win: (options = {}) => {
          const controller = new AbortController();
          let resigned = false;
          const term = {
            key: `${name}/${token}`,
            token,
            signal: controller.signal,
            predecessorGoneAt: options.predecessorGoneAt,
            endLocally: (why: string): void => {
              if (!controller.signal.aborted) controller.abort(new Error(why));
            },
            resign: (): Promise<void> => {
              resigned = true;
              if (!controller.signal.aborted) controller.abort(new Error("resigned"));
              if (options.resign instanceof Promise) return options.resign;
              return options.resign === "hangs" ? new Promise<void>(() => {}) : Promise.resolve();
            },
          } as unknown as Term;
          settled = true;
          undo();
          resolve(term);
          return {
            term,
            lose: (reason = new Error("term lost: fake")) => controller.abort(reason),
            get resigned() {
              return resigned;
            },
          };
        },
        fail: (err) => {
          settled = true;
          undo();
          reject(err instanceof Error ? err : new Error(String(err)));
        },
      });
    });
  }

  async *observe(_name: string, signal: AbortSignal): AsyncGenerator<Leader | undefined> {
    yield undefined;
    await new Promise((_resolve, reject) => onAbort(signal, reject));
  }

  close(): Promise<void> {
    this.#closed = true;
    if (!this.#controller.signal.aborted) this.#controller.abort(new Error("closed"));
    return Promise.resolve();
  }
}

/** Sessions the elector makes; `refuse(err)` makes the next creations fail with `err`. */
export class FakeBackend implements ElectorBackend {
  readonly given: ElectorSession | undefined;
  readonly sessions: FakeSession[] = [];
  /** When each session creation was asked for (fake ms), failed ones included. */
  readonly attempts: number[] = [];
  readonly #clock: FakeClock;
  #refusal: (() => unknown) | undefined;

  constructor(clock: FakeClock, given?: FakeSession) {
    this.#clock = clock;
    this.given = given;
  }

  refuse(error: (() => unknown) | undefined): void {
    this.#refusal = error;
  }

  newSession(): Promise<ElectorSession> {
    this.attempts.push(this.#clock.now());
    if (this.#refusal) return Promise.reject(this.#refusal());
    const session = new FakeSession(this.#clock);
    this.sessions.push(session);
    return Promise.resolve(session);
  }

  /** The latest campaign of any session. */
  get campaigns(): FakeCampaign[] {
    return [...(this.given ? [this.given as FakeSession] : []), ...this.sessions].flatMap((s) => s.campaigns);
  }
}
