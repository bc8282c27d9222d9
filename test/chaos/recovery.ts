/**
 * Recovery, checked after each fault heals (design: Every outage ends in a working state), each as a
 * bounded wait on a condition that reads etcd and the workers' reports:
 * - leader-again: a live worker leads, and etcd agrees (the election's head key is that worker's), within
 *   TTL + election timeout + 0.5 s + the elector's backoff cap of the heal;
 * - mutex-again: someone takes the mutex after the heal, within the same bound;
 * - observers-agree: every live worker's last onNewLeader names etcd's head key, within the same bound;
 * - shards-balanced: every shard's election is held by a live, unpaused worker that believes it holds it
 *   (with that key), and each live sharded worker holds floor or ceil of SHARDS / their number, within the same
 *   bound plus a TTL (a dead member's key, and the leases etcd renews on a restart, take a TTL to go);
 * - dead-keys-gone: no key under our names belongs to a dead session (a killed worker's, a lost one's)
 *   once its lease could have run out: TTL + election timeout + 1 s.
 * Followers' health is checked from the workers' own samples, afterwards (checker.ts).
 */
import type { Etcd3 } from "etcd3";
import { PROBE_DEADLINE_MS, deadline } from "../support/probe.js";
import { waitFor } from "../support/wait.js";
import type { Fleet } from "./fleet.js";
import { SHARDS, mono, shardKind, type HistoryEvent, type RecoveryRule, type SessionKind } from "./history.js";

export interface RecoveryContext {
  client: Etcd3;
  fleet: Fleet;
  /** The election's, the mutex's and the sharded group's names. */
  names: Record<SessionKind, string>;
  record: (e: HistoryEvent) => void;
  ttlMs: number;
  electionTimeoutMs: number;
  recoveryBoundMs: number;
  /** Whether the workers run the sharded workload (then shards-balanced is checked). */
  sharded: boolean;
}

/** The keys under `<name>/`, oldest first, with their leases (decimal). */
async function queue(client: Etcd3, name: string): Promise<{ key: string; lease: string }[]> {
  const res = await client
    .getAll()
    .prefix(`${name}/`)
    .sort("Create", "Ascend")
    .options(deadline(PROBE_DEADLINE_MS))
    .exec();
  return res.kvs.map((kv) => ({ key: kv.key.toString(), lease: kv.lease }));
}

/**
 * Waits for `condition` (truthy: met, with a detail) until `boundMs` after `from` (monotonic ms), and
 * records the check with the time it took from `from`.
 */
async function check(
  ctx: RecoveryContext,
  n: number,
  rule: RecoveryRule,
  from: number,
  boundMs: number,
  condition: () => Promise<string | undefined>,
  describe: () => Promise<string>,
): Promise<void> {
  try {
    // At least one attempt, even when an earlier check used up the time.
    const detail = await waitFor(condition, { timeoutMs: Math.max(300, from + boundMs - mono()), description: rule });
    ctx.record({ t: mono(), e: "check", n, rule, ok: true, ms: Math.round(mono() - from), detail });
  } catch {
    const detail = await describe().catch((e: unknown) => `(could not read etcd: ${String(e)})`);
    ctx.record({
      t: mono(),
      e: "check",
      n,
      rule,
      ok: false,
      ms: Math.round(mono() - from),
      detail: `not within ${boundMs} ms: ${detail}`,
    });
  }
}

export async function checkRecovery(ctx: RecoveryContext, n: number, healedAt: number): Promise<void> {
  const { client, fleet, names } = ctx;
  const bound = ctx.recoveryBoundMs;
  const heads = async (): Promise<string> =>
    `etcd's election queue ${JSON.stringify(await queue(client, names.election))}`;

  await check(
    ctx,
    n,
    "leader-again",
    healedAt,
    bound,
    async () => {
      const head = (await queue(client, names.election))[0];
      const w = fleet.live().find((x) => !x.paused && x.holds.get("election")?.key === head?.key);
      return w && head ? `${w.id} leads (${head.key})` : undefined;
    },
    heads,
  );

  await check(
    ctx,
    n,
    "mutex-again",
    healedAt,
    bound,
    async () => {
      const w = fleet.live().find((x) => (x.lastStart.get("mutex") ?? -Infinity) >= healedAt);
      return w ? `${w.id} took the mutex` : undefined;
    },
    async () => `etcd's mutex queue ${JSON.stringify(await queue(client, names.mutex))}`,
  );

  await check(
    ctx,
    n,
    "observers-agree",
    healedAt,
    bound,
    async () => {
      const head = (await queue(client, names.election))[0]?.key ?? null;
      const all = fleet.live("election");
      return all.every((w) => w.observed?.key === head) ? `all ${all.length} observe ${head}` : undefined;
    },
    async () =>
      `${await heads()}; observed ${fleet
        .live("election")
        .map((w) => `${w.id}=${w.observed?.key}`)
        .join(" ")}`,
  );

  if (ctx.sharded)
    await check(
      ctx,
      n,
      "shards-balanced",
      healedAt,
      bound + ctx.ttlMs,
      async () => {
        const live = fleet.live("sharded").filter((w) => !w.paused);
        const counts = new Map(live.map((w) => [w.id, 0]));
        for (let s = 0; s < SHARDS; s++) {
          const head = (await queue(client, `${names.sharded}/shards/${s}`))[0];
          const w = live.find((x) => head && x.holds.get(shardKind(s))?.key === head.key);
          if (!w) return undefined;
          counts.set(w.id, counts.get(w.id)! + 1);
        }
        const lo = Math.floor(SHARDS / live.length);
        const hi = Math.ceil(SHARDS / live.length);
        const balanced = [...counts.values()].every((c) => c === lo || c === hi);
        return balanced ? `${SHARDS} shards held, ${[...counts].map(([w, c]) => `${w}=${c}`).join(" ")}` : undefined;
      },
      async () => {
        const heads: string[] = [];
        for (let s = 0; s < SHARDS; s++)
          heads.push(`${s}:${(await queue(client, `${names.sharded}/shards/${s}`))[0]?.key ?? "-"}`);
        const believed = fleet
          .live("sharded")
          .map(
            (w) =>
              `${w.id}${w.paused ? "(paused)" : ""}=[${[...w.holds.keys()].filter((k) => k.startsWith("shard/")).join(",")}]`,
          )
          .join(" ");
        return `heads ${heads.join(" ")}; believed ${believed}`;
      },
    );

  const current = (kind: SessionKind): Set<string> => new Set(fleet.live().flatMap((w) => w.leases.get(kind) ?? []));
  const strays = async (): Promise<string[]> => {
    const out: string[] = [];
    for (const kind of ["election", "mutex", "sharded"] as const) {
      const mine = current(kind);
      for (const { key, lease } of await queue(client, names[kind]))
        if (!mine.has(lease)) out.push(`${key} (lease ${lease})`);
    }
    return out;
  };
  await check(
    ctx,
    n,
    "dead-keys-gone",
    mono(),
    ctx.ttlMs + ctx.electionTimeoutMs + 1000,
    async () => ((await strays()).length === 0 ? "none" : undefined),
    async () => `keys of sessions no live worker holds: ${(await strays()).join(", ")}`,
  );
}
