/**
 * A hand-over to a named candidate three places back (`term.handOver({ to })`: the two ahead of it step
 * aside, then the leader resigns), against a plain resign to the next in line, side by side in one run.
 * Each has a line of five candidates in this process (a client and session each): the leader, and four
 * waiting. Timed from the call until the successor's campaign resolves (and, for the named one, until
 * `handOver()` resolves with it). The one that handed over joins the back of the line again.
 */
import { Election, Session, type Term } from "../src/index.js";
import type { BenchEnv } from "./env.js";
import { keyPrefix, waitForKeys } from "./keys.js";
import { interleave, sleep, summarize, type Summary } from "./stats.js";

export interface NamedHandoverResult {
  rounds: number;
  gapMs: number;
  /** Resign: until the next one's campaign resolved. */
  resign: Summary;
  /** handOver({ to }) three places back: until the target's campaign resolved. */
  named: Summary;
  /** The same hand-overs: until handOver() resolved with the new leader. */
  namedResolved: Summary;
}

const LINE = 5;
const PLACES_BACK = 3;

interface Candidate {
  value: string;
  /** Its key: `<name>/<lease hex>`. */
  key: string;
  election: Election;
  campaign: Promise<Term>;
}

export async function namedHandover(
  env: BenchEnv,
  sizes: { rounds: number; warmup: number; gapMs: number },
): Promise<NamedHandoverResult> {
  const prefix = env.prefix("named-handover");
  const lookup = env.client();
  const sessions: Session[] = [];
  const makeLine = async (name: string) => {
    const queue: Candidate[] = [];
    const join = async (c: Omit<Candidate, "campaign">): Promise<void> => {
      const campaign = c.election.campaign(c.value);
      campaign.catch(() => undefined); // a campaign still waiting when the run ends rejects
      queue.push({ ...c, campaign });
      await waitForKeys(lookup, keyPrefix("ours", name), queue.length, { intervalMs: 5, timeoutMs: 10_000 });
    };
    for (let i = 0; i < LINE; i++) {
      const session = await Session.create(env.client(), { ttl: 60 });
      sessions.push(session);
      const key = `${name}/${BigInt(session.leaseId).toString(16)}`;
      await join({ value: `c${i}`, key, election: new Election(session, name) });
    }
    await queue[0]!.campaign;
    await sleep(200); // everyone's watch in place
    return { queue, join };
  };
  const plain = await makeLine(`${prefix}/resign`);
  const named = await makeLine(`${prefix}/named`);
  const resolved: number[] = [];

  const { samples } = await interleave(
    {
      resign: async () => {
        const [leader, next] = plain.queue;
        await sleep(sizes.gapMs);
        const start = performance.now();
        await (await leader!.campaign).resign();
        await next!.campaign;
        const elapsed = performance.now() - start;
        plain.queue.shift();
        await plain.join(leader!);
        return elapsed;
      },
      named: async () => {
        const q = named.queue;
        const leader = q[0]!;
        const target = q[PLACES_BACK]!;
        await sleep(sizes.gapMs);
        const start = performance.now();
        let electedAt = 0;
        const elected = target.campaign.then(() => (electedAt = performance.now()));
        await (await leader.campaign).handOver({ to: target.value });
        const doneAt = performance.now();
        await elected;
        resolved.push(doneAt - start);
        // The line now, as etcd orders it (those that stepped aside joined again at once, in either order);
        // then the old leader joins the back.
        await waitForKeys(lookup, keyPrefix("ours", `${prefix}/named`), LINE - 1, { intervalMs: 5, timeoutMs: 10_000 });
        const order = await lookup.getAll().prefix(`${prefix}/named/`).sort("Create", "Ascend").keys();
        const byKey = new Map(q.map((c) => [c.key, c]));
        named.queue.splice(0, named.queue.length, ...order.map((k) => byKey.get(k)!));
        await named.join(leader);
        return electedAt - start;
      },
    },
    sizes,
  );
  await Promise.all(sessions.map((s) => s.close()));
  const warm = resolved.slice(sizes.warmup);
  return {
    rounds: sizes.rounds,
    gapMs: sizes.gapMs,
    resign: summarize(samples.get("resign")!),
    named: summarize(samples.get("named")!),
    namedResolved: summarize(warm),
  };
}
