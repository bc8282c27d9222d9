import { linkedController, onAbort } from "./common/abort.js";
import { retryUntilAborted } from "./common/retry.js";
import { KeyWatch } from "./common/watch.js";
import { readLeader, type Leader } from "./leader.js";
import { SessionClosedError } from "./errors.js";
import type { Session } from "./session.js";

const same = (a: Leader | undefined, b: Leader | undefined): boolean =>
  a === b || (!!a && !!b && a.key === b.key && a.token === b.token && a.value.equals(b.value));

/**
 * The leader of `name` as a latest-state stream. Watch events only mark the state dirty; each item is
 * a fresh linearizable read, so a stalled or resumed watch can delay an item but never falsify one.
 * The consumer pulls: while it is busy, changes merge into the newest state.
 */
export async function* observeLeader(
  session: Session,
  name: string,
  userSignal: AbortSignal | undefined,
): AsyncGenerator<Leader | undefined, void, undefined> {
  // It needs no lease, so it goes on through a lost session; but it ends when the session is closed,
  // so nothing of it outlives the session (rule 9).
  if (session.state === "closed") throw new SessionClosedError();
  const { controller, dispose } = linkedController(userSignal);
  const signal = controller.signal;
  const onClosed = (): void => controller.abort(new SessionClosedError());
  session.once("closed", onClosed);
  let dirty = true;
  let wake: (() => void) | undefined;
  const poke = (): void => {
    dirty = true;
    wake?.();
  };
  let watch: KeyWatch | undefined;
  let last: Leader | undefined;
  let emitted = false;
  try {
    for (;;) {
      signal.throwIfAborted();
      if (!dirty) {
        await new Promise<void>((resolve) => {
          const undo = onAbort(signal, () => resolve());
          wake = () => {
            undo();
            resolve();
          };
        });
        wake = undefined;
        continue;
      }
      dirty = false;
      // etcd unreachable: keep trying (never silently stop); the next read tells the truth.
      const read = await retryUntilAborted(() => readLeader(session, name), signal);
      // The watch starts right after the first read, so no change after it is missed.
      watch ??= new KeyWatch(session.client, { prefix: `${name}/` }, read.revision + 1n, session.resyncMs, session.callTimeoutMs, {
        event: poke,
        resync: poke,
      });
      const { leader } = read;
      if (emitted && (same(leader, last) || (leader && last && leader.token < last.token))) continue;
      last = leader;
      emitted = true;
      yield leader;
    }
  } finally {
    session.off("closed", onClosed);
    dispose();
    await watch?.close();
  }
}
