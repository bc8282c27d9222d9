import { linkedController, onAbort, untilWoken } from "../common/abort.js";
import type { SessionContext } from "../session/context.js";
import { KeyWatch, type KeyEvent } from "../etcd/key-watch.js";
import { ClientClosedError } from "../errors.js";
import { inQueue } from "../etcd/keyspace.js";
import { retryRead } from "../etcd/kv.js";
import { readLeader, sameLeader, type Leader } from "../leader.js";

/**
 * The leader of `name` as a latest-state stream. Each item is a fresh linearizable read; the watch only
 * says when to read again, and only for what can change the leader: the leader's key deleted or its
 * value changed, or a first candidate when nobody leads. Candidates joining or leaving behind the
 * leader cost nothing. A stalled or resumed watch can delay an item but never falsify one. The consumer
 * pulls: while it is busy, changes merge into the newest state.
 */
export async function* observeLeader(
  ctx: SessionContext,
  name: string,
  userSignal: AbortSignal | undefined,
): AsyncGenerator<Leader | undefined, void, undefined> {
  // It needs no lease, so it goes on through a lost session; but it ends when the session is closed,
  // so nothing of it outlives the session.
  ctx.closed.throwIfAborted();
  const { controller, dispose } = linkedController(userSignal, ctx.closed);
  const signal = controller.signal;
  let dirty = true;
  let wake: (() => void) | undefined;
  let current: Leader | undefined;
  const poke = (): void => {
    dirty = true;
    wake?.();
  };
  // A delete carries no create revision: only the leader's own key's matters. A put can only make a new
  // leader when nobody leads (or, after missed events, with a key older than the leader's).
  const mayChangeLeader = (e: KeyEvent): boolean =>
    inQueue(name, e.key) &&
    (current === undefined
      ? e.type === "put"
      : e.key === current.key || (e.type === "put" && e.createRevision < current.token));
  // Events heard while a read is in flight wait for its answer: they are judged against the leader that
  // read saw, not the one before it, and only if they came after it (an earlier one is in the read).
  let heardDuringRead: KeyEvent[] | undefined;
  const heard = (e: KeyEvent): void => {
    if (heardDuringRead) heardDuringRead.push(e);
    else if (mayChangeLeader(e)) poke();
  };
  let watch: KeyWatch | undefined;
  // A consumer may stop pulling without ending the stream (left at its yield, `finally` never runs): the
  // end of the session or of the caller's signal still removes the watch and its re-read timer.
  const closeWatch = onAbort(signal, () => watch?.close());
  // A closed client is the end too, though the session was never closed: it shows as the lease lost (or,
  // lost before, at the watch's next re-read), and nothing could be read again.
  const endWithClient = (cause?: unknown): void =>
    controller.abort(new ClientClosedError("observe: the etcd3 client was closed", { cause }));
  const undoLost = onAbort(ctx.lease.signal, (reason) => {
    if (ctx.conn.closed) endWithClient(reason);
  });
  let last: Leader | undefined;
  let emitted = false;
  try {
    for (;;) {
      signal.throwIfAborted();
      if (!dirty) {
        await untilWoken(signal, (w) => (wake = w));
        wake = undefined;
        continue;
      }
      dirty = false;
      // etcd unreachable: keep trying (never silently stop); the next read tells the truth.
      const events: KeyEvent[] = (heardDuringRead = []);
      let read: Awaited<ReturnType<typeof readLeader>>;
      try {
        read = await retryRead(() => readLeader(ctx, name), signal, ctx.logger);
      } finally {
        heardDuringRead = undefined;
      }
      current = read.leader;
      if (events.some((e) => e.modRevision > read.revision && mayChangeLeader(e))) dirty = true;
      signal.throwIfAborted();
      // The watch starts right after the first read, so no change after it is missed.
      watch ??= new KeyWatch(
        ctx,
        { prefix: `${name}/` },
        { startRevision: read.revision + 1n, resyncMs: ctx.resyncMs() },
        {
          event: heard,
          resync: poke,
          ended: (err) => endWithClient(err),
        },
      );
      const { leader } = read;
      if (emitted && (sameLeader(leader, last) || (leader && last && leader.token < last.token))) continue;
      last = leader;
      emitted = true;
      yield leader;
    }
  } finally {
    closeWatch();
    undoLost();
    dispose();
    watch?.close();
  }
}
