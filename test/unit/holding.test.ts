import { describe, expect, it } from "vitest";
import { silentLogger } from "../../src/common/logger.js";
import type { SessionContext } from "../../src/session/context.js";
import { SessionLostError } from "../../src/errors.js";
import { Lock } from "../../src/lock.js";
import { LocalLine } from "../../src/queue/local-line.js";
import type { Ticket } from "../../src/queue/queue.js";
import { Term } from "../../src/term.js";

/** Just what making a hold touches: the lease's signal, the own-key watches and the logger. */
function contextWithLease(signal: AbortSignal): { ctx: SessionContext; watching: () => number } {
  let watching = 0;
  const ctx = {
    lease: { signal, check: () => !signal.aborted },
    ownKeys: {
      subscribe: () => {
        watching++;
        return () => void watching--;
      },
    },
    logger: silentLogger,
  } as unknown as SessionContext;
  return { ctx, watching: () => watching };
}

const ticket: Ticket = { name: "n", key: "n/1f", createRevision: 7n, value: Buffer.alloc(0), revision: 7n };

describe("a hold made after its session's lease was lost", () => {
  it.each([
    ["a lock", (ctx: SessionContext, leave: () => void) => Lock.of(ctx, ticket, leave)],
    ["a term", (ctx: SessionContext, leave: () => void) => Term.of(ctx, ticket, leave)],
  ])(
    "%s is never handed out: it fails with the session's typed reason and lets the next local waiter in",
    async (_, make) => {
      const lost = new SessionLostError("session lost: test");
      const { ctx, watching } = contextWithLease(AbortSignal.abort(lost));
      const line = new LocalLine(() => {});
      const leave = line.tryEnter()!;
      const next = line.enter();

      let thrown: unknown;
      try {
        make(ctx, leave);
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBe(lost);
      expect(thrown).toMatchObject({ code: "SESSION_LOST" });
      // The next local contender is let in, and the hold watches nothing.
      await expect(next).resolves.toBeTypeOf("function");
      expect(watching()).toBe(0);
    },
  );

  it("a hold made while the lease lives ends with the session, with the loss as its typed reason", () => {
    const ac = new AbortController();
    const { ctx, watching } = contextWithLease(ac.signal);
    let left = 0;
    const lock = Lock.of(ctx, ticket, () => left++);
    expect(watching()).toBe(1);
    ac.abort(new SessionLostError());
    expect(lock.signal.reason).toMatchObject({ code: "LOCK_LOST", cause: { code: "SESSION_LOST" } });
    expect(() => lock.assertHeld()).toThrow(expect.objectContaining({ code: "LOCK_LOST" }));
    expect(left).toBe(1);
    expect(watching()).toBe(0);
  });
});
