/**
 * Side-by-side latency of the uncontended paths, against the same etcd in the same process:
 * - the floor: a put and a delete of one key (what any lock must at least cost);
 * - our Mutex lock+unlock (one session, reused) vs etcd3's own Lock acquire+release (a lease each time);
 * - our Election campaign+resign vs etcd3's own Election campaign+wait+resign;
 * plus our contended hand-over (etcd3's Lock cannot wait for a holder, so it has no peer here).
 *
 *   npm run bench                                  # throwaway etcd from the local binary
 *   ETCD_ENDPOINTS=127.0.0.1:2379 npm run bench    # or yours; BENCH_N=1000 for more rounds
 */
import { Etcd3 } from "etcd3";
import { Election, Mutex, Session } from "../src/index.js";
import { startLocalEtcd } from "../examples/local-etcd.js";

const N = Number(process.env.BENCH_N ?? 300);
const rows: { what: string; n: number; p50: number; p99: number; perSec: number }[] = [];

async function measure(what: string, once: (i: number) => Promise<void>): Promise<void> {
  for (let i = 0; i < Math.min(20, N); i++) await once(-1 - i); // warm up
  const times: number[] = [];
  const start = performance.now();
  for (let i = 0; i < N; i++) {
    const t = performance.now();
    await once(i);
    times.push(performance.now() - t);
  }
  const total = performance.now() - start;
  times.sort((a, b) => a - b);
  const at = (q: number): number => times[Math.min(times.length - 1, Math.floor(q * times.length))]!;
  rows.push({ what, n: N, p50: at(0.5), p99: at(0.99), perSec: (N / total) * 1000 });
}

async function main(): Promise<void> {
  const log = (m: string): void => console.error(m);
  const etcd = process.env.ETCD_ENDPOINTS ? undefined : await startLocalEtcd(log);
  const hosts = process.env.ETCD_ENDPOINTS?.split(",") ?? [etcd!.endpoint];
  const client = new Etcd3({ hosts });
  const prefix = `bench/${Date.now().toString(36)}`;
  const session = await Session.create(client, { ttl: 10 });
  try {
    await measure("floor: put + delete", async () => {
      await client.put(`${prefix}/floor`).value("x");
      await client.delete().key(`${prefix}/floor`);
    });
    const mutex = new Mutex(session, `${prefix}/ours`);
    await measure("etcd-election Mutex lock + unlock", async () => {
      await (await mutex.lock()).unlock();
    });
    await measure("etcd3 Lock acquire + release", async () => {
      const lock = client.lock(`${prefix}/theirs`).ttl(10);
      await lock.acquire();
      await lock.release();
    });
    const election = new Election(session, `${prefix}/elect-ours`);
    await measure("etcd-election campaign + resign", async () => {
      await (await election.campaign("v")).resign();
    });
    const theirs = client.election(`${prefix}/elect-theirs`, 10);
    await measure("etcd3 Election campaign + resign", async () => {
      const campaign = theirs.campaign("v");
      await campaign.wait();
      await campaign.resign();
    });

    // Contended: 4 clients, each with a session, pass one mutex around; time per hand-over.
    const clients = [0, 1, 2, 3].map(() => new Etcd3({ hosts }));
    const sessions = await Promise.all(clients.map((c) => Session.create(c, { ttl: 10 })));
    const rounds = Math.max(1, Math.floor(N / 4));
    const start = performance.now();
    await Promise.all(
      sessions.map(async (s) => {
        const m = new Mutex(s, `${prefix}/contended`);
        for (let i = 0; i < rounds; i++) await (await m.lock()).unlock();
      }),
    );
    const perHandover = (performance.now() - start) / (rounds * 4);
    rows.push({ what: "etcd-election Mutex, 4 contenders (per hand-over)", n: rounds * 4, p50: perHandover, p99: Number.NaN, perSec: 1000 / perHandover });
    await Promise.all(sessions.map((s) => s.close()));
    for (const c of clients) c.close();
  } finally {
    await session.close();
    await client.delete().prefix(prefix);
    client.close();
    etcd?.stop();
  }

  console.log(`\n| operation | n | p50 ms | p99 ms | per second |\n| --- | ---: | ---: | ---: | ---: |`);
  for (const r of rows) {
    const p99 = Number.isNaN(r.p99) ? "–" : r.p99.toFixed(2);
    console.log(`| ${r.what} | ${r.n} | ${r.p50.toFixed(2)} | ${p99} | ${r.perSec.toFixed(0)} |`);
  }
}

await main();
