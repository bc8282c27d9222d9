/** Helpers that keep AbortSignal listeners from leaking: every link returns its own undo. */
import { systemClock, timerIn, type Clock } from "./clock.js";

/**
 * One real listener per signal, fanned out to everything of ours that waits on it: 10,000 locks held
 * through one session (or waiting on one signal of yours) add one listener, not 10,000, so Node never
 * warns "Possible EventTarget memory leak detected" because of us. The listener goes when the last
 * waiter does.
 */
const fanOuts = new WeakMap<AbortSignal, { listener: () => void; waiters: Set<(reason: unknown) => void> }>();

/** Runs `onAbort` once when `signal` aborts; returns a function removing it. */
export function onAbort(signal: AbortSignal | undefined, onAbort: (reason: unknown) => void): () => void {
  if (!signal) return () => {};
  if (signal.aborted) {
    onAbort(signal.reason);
    return () => {};
  }
  let fanOut = fanOuts.get(signal);
  if (!fanOut) {
    const waiters = new Set<(reason: unknown) => void>();
    const listener = (): void => {
      fanOuts.delete(signal);
      for (const waiter of [...waiters]) waiter(signal.reason);
    };
    fanOut = { listener, waiters };
    fanOuts.set(signal, fanOut);
    signal.addEventListener("abort", listener, { once: true });
  }
  const current = fanOut;
  const waiter = (reason: unknown): void => onAbort(reason); // its own identity: one function may wait twice
  current.waiters.add(waiter);
  return () => {
    if (!current.waiters.delete(waiter) || current.waiters.size > 0 || fanOuts.get(signal) !== current) return;
    fanOuts.delete(signal);
    signal.removeEventListener("abort", current.listener);
  };
}

/**
 * A controller aborted when any of `signals` aborts (with that signal's reason).
 * Call `dispose()` when done so the parents keep no listener on it.
 */
export function linkedController(...signals: (AbortSignal | undefined)[]): {
  controller: AbortController;
  dispose: () => void;
} {
  const controller = new AbortController();
  const undo: (() => void)[] = [];
  const dispose = (): void => {
    for (const u of undo.splice(0)) u();
  };
  for (const s of signals) {
    if (controller.signal.aborted) break;
    undo.push(
      onAbort(s, (reason) => {
        dispose();
        controller.abort(reason);
      }),
    );
  }
  if (controller.signal.aborted) dispose();
  return { controller, dispose };
}

/** Rejects with the signal's reason as soon as it aborts; removes its listener when `promise` settles. */
export function raceAbort<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  return new Promise<T>((resolve, reject) => {
    const undo = onAbort(signal, reject);
    promise.then(
      (v) => {
        undo();
        resolve(v);
      },
      (e: unknown) => {
        undo();
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

/** Waits `ms` (any length), or rejects with the signal's reason, leaving no timer or listener behind. */
export function sleep(ms: number, signal?: AbortSignal, clock: Clock = systemClock): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const timer = clock.timerIn(ms, () => {
      undo();
      resolve();
    });
    const undo = onAbort(signal, (reason) => {
      timer.cancel();
      reject(reason);
    });
  });
}

/**
 * A signal that aborts with `signal`'s reason, or with `onTimeout()` after `timeoutMs`. Without a
 * timeout it is `signal` itself (or none): nothing to link, no controller, no timer.
 */
export function withTimeout(
  signal: AbortSignal | undefined,
  timeoutMs: number | undefined,
  onTimeout: () => Error,
): { signal: AbortSignal | undefined; dispose: () => void } {
  if (timeoutMs === undefined) return { signal, dispose: () => {} };
  const { controller, dispose } = linkedController(signal);
  const timer = timerIn(timeoutMs, () => controller.abort(onTimeout()));
  return {
    signal: controller.signal,
    dispose: () => {
      timer.cancel();
      dispose();
    },
  };
}

/** Resolves with the promise's value, or undefined as soon as `signal` aborts (the promise goes on). */
export function untilAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T | undefined> {
  return raceAbort(promise, signal).catch((err: unknown) => {
    if (signal.aborted) return undefined;
    throw err;
  });
}

/** Whether all of `promises` settled before `clock` reaches `by` (ms). */
export async function settledBy(
  promises: Promise<unknown>[],
  by: number,
  clock: Clock = systemClock,
): Promise<boolean> {
  if (promises.length === 0) return true;
  const controller = new AbortController();
  const timer = clock.timerIn(Math.max(0, by - clock.now()), () => controller.abort());
  try {
    return (await untilAbort(Promise.allSettled(promises), controller.signal)) !== undefined;
  } finally {
    timer.cancel();
  }
}

/** Keeps `promise` in `pending` until it settles (work a stop must wait for, within its bound). */
export function track<T>(pending: Set<Promise<unknown>>, promise: Promise<T>): Promise<T> {
  pending.add(promise);
  const done = (): void => void pending.delete(promise);
  promise.then(done, done);
  return promise;
}

/**
 * Resolves once the wake function handed to `arm` is called, or `signal` aborts (never rejects): a loop
 * that sleeps until something changed. No listener is left behind either way.
 */
export function untilWoken(signal: AbortSignal, arm: (wake: () => void) => void): Promise<void> {
  return new Promise<void>((resolve) => {
    const undo = onAbort(signal, () => resolve());
    arm(() => {
      undo();
      resolve();
    });
  });
}
