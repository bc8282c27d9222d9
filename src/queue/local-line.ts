import { onAbort } from "../common/abort.js";

/**
 * An in-process FIFO for one name on one session (design: One key per name per session): the session holds at most one key under a
 * name, so local contenders wait here, behind whoever uses that key, instead of adding keys to etcd.
 */
export class LocalLine {
  #busy = false;
  readonly #waiters: { grant: () => void }[] = [];
  readonly #onIdle: () => void;

  constructor(onIdle: () => void) {
    this.#onIdle = onIdle;
  }

  /** Takes the line now, or returns undefined when someone in this process has it. */
  tryEnter(): (() => void) | undefined {
    if (this.#busy) return undefined;
    this.#busy = true;
    return this.#leaver();
  }

  /** Waits for the line; rejects with the signal's reason (and leaves the queue) on abort. */
  enter(signal?: AbortSignal): Promise<() => void> {
    const now = this.tryEnter();
    if (now) return Promise.resolve(now);
    return new Promise((resolve, reject) => {
      const waiter = {
        grant: () => {
          undo();
          resolve(this.#leaver());
        },
      };
      const undo = onAbort(signal, (reason) => {
        const i = this.#waiters.indexOf(waiter);
        if (i >= 0) this.#waiters.splice(i, 1);
        if (!this.#busy && this.#waiters.length === 0) this.#onIdle();
        reject(reason);
      });
      if (!signal?.aborted) this.#waiters.push(waiter);
    });
  }

  #leaver(): () => void {
    let left = false;
    return () => {
      if (left) return;
      left = true;
      const next = this.#waiters.shift();
      if (next) next.grant();
      else {
        this.#busy = false;
        this.#onIdle();
      }
    };
  }
}
