/**
 * What an operation costs this process's event loop: callbacks the loop ran for it (I/O, timers,
 * immediates: each a turn of the loop, or part of one), promises it made (each settled promise is a
 * microtask hop at least), timers it armed, and the time the loop was busy (not waiting for I/O).
 * Measured in a pass of its own: async hooks slow everything down, so no latency is taken meanwhile.
 */
import { createHook } from "node:async_hooks";
import { performance } from "node:perf_hooks";

export interface LoopCost {
  /** Macrotask callbacks run (async hooks' `before`, promises excluded), per operation. */
  callbacks: number;
  /** Promises created, per operation. */
  promises: number;
  /** Timers (setTimeout/setInterval) created, per operation. */
  timers: number;
  /** Milliseconds the loop was busy, per operation (event loop utilisation, active part). */
  busyMs: number;
}

export async function loopCost(times: number, op: (i: number) => Promise<void>): Promise<LoopCost> {
  const promiseIds = new Set<number>();
  let callbacks = 0;
  let promises = 0;
  let timers = 0;
  const hook = createHook({
    init(id, type) {
      if (type === "PROMISE") {
        promises++;
        promiseIds.add(id);
      } else if (type === "Timeout") timers++;
    },
    before(id) {
      if (!promiseIds.has(id)) callbacks++;
    },
    destroy(id) {
      promiseIds.delete(id);
    },
    promiseResolve() {},
  });
  // Busy time without hooks (they would inflate it), then the counts with them.
  const elu = performance.eventLoopUtilization();
  for (let i = 0; i < times; i++) await op(i);
  const busy = performance.eventLoopUtilization(elu).active;
  hook.enable();
  try {
    for (let i = 0; i < times; i++) await op(i);
  } finally {
    hook.disable();
  }
  return { callbacks: callbacks / times, promises: promises / times, timers: timers / times, busyMs: busy / times };
}
