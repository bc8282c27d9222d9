import { onAbort } from "../common/abort.js";
import type { Clock, Timer } from "../common/clock.js";

/**
 * Paces a member's campaigns: at most `limit` at a time in their first `holdMs` (their join and first
 * reads), so owning thousands of shards at once does not send thousands of transactions in one burst and
 * starve the session's keepalives (seen: 1,000 shards at TTL 3 s on a loaded machine lost the session,
 * again and again). A campaign gives its place back when it settles or `holdMs` after it began, whichever
 * comes first: one that waits behind a slow hand-over holds nobody up for long.
 */
export class CampaignPacer {
  readonly #limit: number;
  readonly #holdMs: number;
  readonly #clock: Clock;
  #running = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(limit: number, holdMs: number, clock: Clock) {
    this.#limit = limit;
    this.#holdMs = holdMs;
    this.#clock = clock;
  }

  /** Runs `start` once a place is free (or never, if `signal` aborts first: then rejects with its reason). */
  async run<T>(signal: AbortSignal, start: () => Promise<T>): Promise<T> {
    await this.#enter(signal);
    let left = false;
    const leave = (): void => {
      if (left) return;
      left = true;
      timer.cancel();
      this.#running--;
      this.#waiting.shift()?.();
    };
    const timer: Timer = this.#clock.timerIn(this.#holdMs, leave);
    try {
      return await start();
    } finally {
      leave();
    }
  }

  #enter(signal: AbortSignal): Promise<void> {
    signal.throwIfAborted();
    if (this.#running < this.#limit) {
      this.#running++;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const go = (): void => {
        undo();
        this.#running++;
        resolve();
      };
      const undo = onAbort(signal, (reason) => {
        const i = this.#waiting.indexOf(go);
        if (i >= 0) this.#waiting.splice(i, 1);
        reject(reason);
      });
      this.#waiting.push(go);
    });
  }
}
