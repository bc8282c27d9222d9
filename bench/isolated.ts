/**
 * A graceful hand-over while the member carrying the waiter's watch stream is cut off from its peers (a
 * 3-member cluster from the test harness, whose peer proxies can isolate a member). The waiter's watch
 * stream moves off the isolated member (its watch there goes quiet; the stream is replaced), the waiter
 * reads again and waits on the moved watch; then the leader resigns. Timed from resign() to the waiter's
 * campaign resolving: milliseconds, where a waiter left on the isolated member would wait for its TTL/2
 * re-read. Each round isolates a member anew and heals it after.
 */
import { Election, Session } from "../src/index.js";
import { decisionCounts } from "../src/queue/decide.js";
import { contextOf } from "../src/session/context.js";
import globalSetup from "../test/support/global-setup.js";
import { startCluster } from "../test/support/etcd.js";
import { countCalls, watchEndpoint } from "../test/support/internals.js";
import { waitFor } from "../test/support/wait.js";
import { summarize, type Summary } from "./stats.js";

export interface IsolatedResult {
  rounds: number;
  ttl: number;
  summary: Summary;
  /** Hand-overs decided by a serializable read on the event's member (the rest linearizably). */
  decidedAtEvent: number;
}

/** The waiter's TTL: its periodic re-read (TTL/2) is far off, so a quick hand-over is its watch's doing. */
const TTL = 20;

export async function isolatedHandover(log: (m: string) => void, rounds: number): Promise<IsolatedResult> {
  const teardown = await globalSetup();
  const etcd = await startCluster(3);
  const samples: number[] = [];
  let decidedAtEvent = 0;
  try {
    for (let round = 0; round < rounds; round++) {
      const leader = await etcd.leader();
      const member = etcd.members.find((m) => m !== leader)!;
      const others = etcd.members.filter((m) => m !== member).map((m) => m.clientUrl);
      const name = `${etcd.prefix("isolated")}election`;
      const a = await Session.create(etcd.client({}, others), { ttl: TTL });
      // The waiter's calls and streams start at the member to be isolated (a session picks a member at random).
      let b: Session | undefined;
      for (let i = 0; i < 30 && !b; i++) {
        const s = await Session.create(etcd.client({}, [member.clientUrl, ...others]), { ttl: TTL });
        if (contextOf(s).conn.endpoint.address === member.clientUrl) b = s;
        else await s.close();
      }
      if (!b) throw new Error("isolated: no session started at the member to isolate");
      const waiter = b;
      try {
        const term = await new Election(a, name).campaign("a");
        const waiting = new Election(waiter, name).campaign("b");
        waiting.catch(() => undefined); // awaited below
        await waitFor(() => watchEndpoint(waiter) === member.clientUrl, {
          description: "the waiter watching on the member",
        });
        const calls = countCalls(waiter);
        await member.isolate();
        await waitFor(() => watchEndpoint(waiter) !== undefined && watchEndpoint(waiter) !== member.clientUrl, {
          timeoutMs: 30_000,
          description: "the watch stream off the isolated member",
        });
        // The moved watch asks the waiter to read again; it waits again, its new watch in place once it has
        // read that the leader's key is still there (its second range since the isolation).
        await waitFor(() => calls().filter((c) => c === "KV.range").length >= 2, {
          timeoutMs: 30_000,
          description: "the waiter settled on its moved watch",
        });
        const before = decisionCounts(contextOf(waiter)).decidedSerializable;
        const start = performance.now();
        await term.resign();
        const next = await waiting;
        samples.push(performance.now() - start);
        decidedAtEvent += decisionCounts(contextOf(waiter)).decidedSerializable - before;
        await next.resign();
      } finally {
        await member.heal();
        await Promise.all([a.close(), b.close()]);
        await etcd.waitHealthy();
      }
      log(`isolated: round ${round + 1}/${rounds}: ${samples.at(-1)?.toFixed(1)} ms`);
    }
  } finally {
    await etcd.close();
    await teardown();
  }
  return { rounds, ttl: TTL, summary: summarize(samples), decidedAtEvent };
}
