/** Monotonic milliseconds: never jumps with wall-clock changes, but stands still while the system is suspended. */
export const now = (): number => globalThis.performance.now();

/** Wall-clock milliseconds: keeps counting through a system suspend (or a frozen VM), but may be stepped. */
const wallNow = (): number => Date.now();

/** One moment on both clocks: the lease's deadline counts on each (design: Step down first). */
export interface Stamp {
  mono: number;
  wall: number;
}

export const stamp = (): Stamp => ({ mono: now(), wall: wallNow() });

/** setTimeout fires at once for delays over 2^31-1 ms; longer waits are re-armed in steps. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

export interface Timer {
  cancel(): void;
}

/**
 * Calls `fn` once the monotonic clock reaches `dueAt` (ms), however far away that is.
 * A timer that fires late (paused process, busy loop) still fires once, as soon as it can.
 */
export function timerAt(dueAt: number, fn: () => void): Timer {
  let handle: NodeJS.Timeout | undefined;
  const arm = (): void => {
    const wait = Math.min(Math.max(dueAt - now(), 0), MAX_TIMER_MS);
    handle = setTimeout(() => {
      if (now() >= dueAt) fn();
      else arm();
    }, Math.ceil(wait));
  };
  arm();
  return {
    cancel() {
      clearTimeout(handle);
    },
  };
}

export const timerIn = (ms: number, fn: () => void): Timer => timerAt(now() + ms, fn);

/**
 * Time as a component sees it, injected so its rules can be unit-tested on a fake clock (the elector's
 * backoff, settle deadlines and stop bound): monotonic `now()` and a timer on that clock.
 */
export interface Clock {
  now(): number;
  timerIn(ms: number, fn: () => void): Timer;
}

export const systemClock: Clock = { now, timerIn };
