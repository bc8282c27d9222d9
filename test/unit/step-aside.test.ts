/**
 * A campaign that steps aside for a hand-over: a cancellation or a lost session while its key is being
 * removed rejects with their own reason, never with the step-aside's private one. The queue and the
 * watch are stood in for, so that the abort lands exactly during the removal; the step-aside itself runs
 * against etcd in test/integration/handover.test.ts.
 */
import { describe, expect, it, vi } from "vitest";
import { SessionLostError, isElectionError } from "../../src/errors.js";

vi.mock("../../src/queue/queue.js", async (importOriginal) => {
  const real = await importOriginal<typeof import("../../src/queue/queue.js")>();
  return {
    ...real,
    // The leader that asked (rev 1) still heads the queue: the request is to be obeyed.
    readQueue: () => Promise.resolve({ entries: [head], revision: 10n }),
    // Joins (our key: rev 5), waits, and on the step-aside's abort "removes the key": meanwhile the test's
    // `during` hook runs (the user's abort, or the session's loss), then it rejects with the abort's reason.
    acquire: (
      _ctx: unknown,
      _name: string,
      _value: Buffer,
      _policy: unknown,
      o: { signal: AbortSignal; waiting: (own: unknown) => void },
    ) =>
      new Promise((_resolve, reject) => {
        o.waiting({ key: "n/1", createRevision: 5n, name: "n" });
        o.signal.addEventListener("abort", () => {
          during();
          reject(o.signal.reason as Error);
        });
      }),
  };
});
vi.mock("../../src/etcd/key-watch.js", () => ({
  // Tells one put of a request, from the leader n/0, for a target behind us (rev 9): we must step aside.
  KeyWatch: class {
    constructor(_ctx: unknown, _key: unknown, _o: unknown, h: { event: (e: { type: string; value: Buffer }) => void }) {
      queueMicrotask(() =>
        h.event({
          type: "put",
          value: Buffer.from(JSON.stringify({ to: "n/2", token: "9", from: { key: "n/0", token: "1" } })),
        }),
      );
    }
    close(): void {}
  },
}));

let during: () => void = () => {};
let head = { key: "n/0", createRevision: 1n };
const { campaignOrStepAside } = await import("../../src/election/handover.js");

function context(lease: AbortController) {
  const logged: string[] = [];
  const log = (_f: object, m: string): void => void logged.push(m);
  const ctx = {
    logger: { debug: log, info: log, warn: log, error: log },
    keyspace: { full: (k: string) => k },
    resyncMs: () => 1_000,
    lease: { signal: lease.signal },
    watches: {}, // the client's shared stream: denials of the request watch are remembered per stream
  };
  return { ctx: ctx as never, logged };
}

describe("a campaign stepping aside", () => {
  it("cancelled by the user while its key is removed: rejects with the signal's reason", async () => {
    const user = new AbortController();
    const { ctx } = context(new AbortController());
    const reason = new Error("the user's reason");
    during = () => user.abort(reason);
    const err = await campaignOrStepAside(ctx, "n", Buffer.from("v"), user.signal, (m) => new Error(m)).catch(
      (e: unknown) => e,
    );
    expect(err).toBe(reason);
  });

  it("its session lost while its key is removed: rejects with SESSION_LOST", async () => {
    const lease = new AbortController();
    const { ctx } = context(lease);
    during = () => lease.abort(new SessionLostError("session lost: etcd reports the lease expired or revoked"));
    const err = await campaignOrStepAside(ctx, "n", Buffer.from("v"), undefined, (m) => new Error(m)).catch(
      (e: unknown) => e,
    );
    expect(isElectionError(err) && err.code).toBe("SESSION_LOST");
  });

  it("a request whose leader no longer heads the queue is ignored (said once), and the campaign goes on", async () => {
    head = { key: "n/3", createRevision: 3n }; // n/0 resigned; n/3 leads now
    try {
      const user = new AbortController();
      const { ctx, logged } = context(new AbortController());
      during = () => {};
      const campaign = campaignOrStepAside(ctx, "n", Buffer.from("v"), user.signal, (m) => new Error(m)).catch(
        (e: unknown) => e,
      );
      await vi.waitFor(() => expect(logged.some((m) => m.includes("no longer leads"))).toBe(true));
      const reason = new Error("stopped by the test");
      user.abort(reason);
      expect(await campaign).toBe(reason);
      expect(logged.filter((m) => m.includes("stepped aside"))).toEqual([]);
    } finally {
      head = { key: "n/0", createRevision: 1n };
    }
  });
});
