/** The benchmark's results as Markdown tables, and as the chart's panels. */
import type { ChartPanel, ChartRow } from "./chart.js";
import type { ContendedRun } from "./contended.js";
import type { CutoffResult } from "./cutoff.js";
import { describeCounts, rpcTotal } from "./etcd-metrics.js";
import type { FailoverResult } from "./failover.js";
import type { HandoverResult } from "./handover.js";
import type { IsolatedResult } from "./isolated.js";
import type { NamedHandoverResult } from "./named-handover.js";
import type { ScaleResult } from "./scale.js";
import { ms, ratio, type Summary } from "./stats.js";
import type { GroupResult, PathResult, UncontendedResult } from "./uncontended.js";

export interface Machine {
  cpu: string;
  cores: number;
  memoryGiB: number;
  os: string;
  loadStart: string;
  loadEnd: string;
}

export interface Versions {
  node: string;
  etcd3: string;
  grpc: string;
  library: string;
}

export interface BenchResults {
  date: string;
  quick: boolean;
  seconds: number;
  machine: Machine;
  versions: Versions;
  etcd: string;
  uncontended?: UncontendedResult;
  handover?: HandoverResult;
  namedHandover?: NamedHandoverResult;
  contended?: ContendedRun[];
  scale?: ScaleResult;
  failover?: FailoverResult[];
  cutoff?: CutoffResult[];
  cluster?: { members: number; role: string; result: UncontendedResult };
  isolated?: IsolatedResult;
  warnings: string[];
}

const IMPL = { floor: "floor", raw: "diagnostic", ours: "etcd-election", etcd3: "etcd3" } as const;
const int = (n: number): string => Math.round(n).toLocaleString("en-US");

export function renderMarkdown(r: BenchResults): string {
  const out: string[] = [];
  out.push(
    `# etcd-election benchmark, ${r.date}${r.quick ? " (quick: small sizes, for CI; not for reading numbers)" : ""}`,
  );
  out.push("");
  out.push(
    `Machine: ${r.machine.cpu}, ${r.machine.cores} cores, ${r.machine.memoryGiB} GiB, ${r.machine.os}; load average ${r.machine.loadStart} at the start, ${r.machine.loadEnd} at the end (absolute numbers move with the machine's load; compare the ratios, taken between peers measured side by side in one run). ` +
      `Node ${r.versions.node}, ${r.etcd}, etcd3 ${r.versions.etcd3}, @grpc/grpc-js ${r.versions.grpc}, etcd-election ${r.versions.library}. ` +
      `Run: \`npm run bench\` (${Math.round(r.seconds)} s).`,
  );
  out.push("", ...summaryTable(r));
  if (r.uncontended) out.push("", ...uncontendedTables(r.uncontended, "Uncontended"));
  if (r.handover) out.push("", ...handoverTable(r.handover));
  if (r.namedHandover) out.push("", ...namedHandoverTable(r.namedHandover));
  if (r.uncontended) out.push("", ...whereTheTimeGoes(r.uncontended, r.handover));
  if (r.contended) out.push("", ...contendedTable(r.contended));
  if (r.failover) out.push("", ...failoverTable(r.failover));
  if (r.cutoff) out.push("", ...cutoffTable(r.cutoff));
  if (r.scale) out.push("", ...scaleTables(r.scale));
  if (r.cluster) {
    out.push("", `## The uncontended paths on a ${r.cluster.members}-member cluster`, "");
    out.push(
      `Every client talks to one ${r.cluster.role} (writes go through the raft leader; linearizable reads ask it for its commit index).`,
    );
    out.push("", ...uncontendedTables(r.cluster.result, "Cluster", { counts: false, levels: "###" }).slice(2));
  }
  out.push("", `Process warnings: ${r.warnings.length === 0 ? "none" : r.warnings.join("; ")}.`, "");
  return out.join("\n");
}

/** One table of the headline numbers, each with its floor and its etcd3 peer. */
export function summaryTable(r: BenchResults): string[] {
  const out = [
    "## Summary",
    "",
    "p50 of each, measured side by side in this run; × floor: ours over the floor named in the row; × etcd3: ours over etcd3's. Lower is better, except locks/s. Details in the sections below.",
    "",
    "| path | floor | etcd-election | etcd3 | × floor | × etcd3 |",
    "| --- | ---: | ---: | ---: | ---: | ---: |",
  ];
  const path = (g: GroupResult | undefined, key: string): PathResult | undefined => g?.paths.find((p) => p.key === key);
  const u = r.uncontended;
  const limit = u?.groups.find((g) => g.name === "limit");
  const peers = u?.groups.find((g) => g.name === "peers");
  const row = (
    label: string,
    floorLabel: string,
    floor: number | undefined,
    ours: number | undefined,
    theirs: number | undefined,
    unit = "ms",
  ): void => {
    if (ours === undefined) return;
    const v = (x: number | undefined): string =>
      x === undefined ? "–" : unit === "ms" ? `${ms(x)} ms` : `${int(x)} ${unit}`;
    out.push(
      `| ${label} | ${floor === undefined ? "–" : `${floorLabel} ${v(floor)}`} | ${v(ours)} | ${v(theirs)} | ${floor === undefined ? "–" : ratio(ours, floor)} | ${theirs === undefined ? "–" : ratio(ours, theirs)} |`,
    );
  };
  if (limit) {
    const f = path(limit, "floor")?.summary.p50;
    row(
      "Mutex lock + unlock, uncontended (at the limit: no etcd3 traffic alongside)",
      "put + delete",
      f,
      path(limit, "ours-mutex")?.summary.p50,
      undefined,
    );
    row(
      "Election campaign + resign, uncontended (at the limit)",
      "put + delete",
      f,
      path(limit, "ours-campaign")?.summary.p50,
      undefined,
    );
  }
  if (peers) {
    const f = path(peers, "floor")?.summary.p50;
    row(
      "Mutex lock + unlock vs etcd3 Lock acquire + release",
      "put + delete",
      f,
      path(peers, "ours-mutex")?.summary.p50,
      path(peers, "etcd3-lock")?.summary.p50,
    );
    row(
      "Election campaign + resign vs etcd3 campaign + wait + resign",
      "put + delete",
      f,
      path(peers, "ours-campaign")?.summary.p50,
      path(peers, "etcd3-campaign")?.summary.p50,
    );
  }
  const h = r.handover;
  if (h) {
    const hp = (key: string): number | undefined => h.paths.find((p) => p.key === key)?.summary.p50;
    row(
      `Graceful hand-over, resign → next elected, one process (after ${h.gapMs} ms idle)`,
      "one put",
      hp("put"),
      hp("ours-election"),
      hp("etcd3-election"),
    );
    row("Graceful hand-over, unlock → next locked, one process", "one put", hp("put"), hp("ours-mutex"), undefined);
    row(
      "Graceful hand-over, resign → next elected, between processes",
      "one put",
      hp("put"),
      hp("ours-election-procs"),
      hp("etcd3-election-procs"),
    );
    out.push(
      `| (the hand-over's own floor: a delete, then a serializable range) | one put ${ms(hp("put"))} ms | ${ms(hp("delete-serializable"))} ms | | ${ratio(hp("delete-serializable"), hp("put"))} | |`,
      `| (the former floor: a delete, then a linearizable range) | one put ${ms(hp("put"))} ms | ${ms(hp("delete-range"))} ms | | ${ratio(hp("delete-range"), hp("put"))} | |`,
    );
  }
  for (const c of r.contended?.filter((x) => x.impl === "ours") ?? []) {
    const peer = r.contended!.find((x) => x.impl === "etcd3" && x.clients === c.clients);
    row(
      `Contended mutex, ${c.clients} clients (etcd3: retried with backoff)`,
      "",
      undefined,
      c.perSec,
      peer?.perSec,
      "locks/s",
    );
  }
  for (const f of r.failover?.filter((x) => x.impl === "ours") ?? []) {
    const peer = r.failover!.find((x) => x.impl === "etcd3" && x.kind === f.kind);
    row(
      f.kind === "crash" ? "Crash failover (SIGKILL), TTL 2 s" : "Graceful failover (SIGTERM), TTL 2 s",
      "",
      undefined,
      f.total.p50,
      peer?.total.p50,
    );
  }
  const cut = r.cutoff;
  if (cut) {
    const o = cut.find((c) => c.impl === "ours")?.relative.p50;
    const t = cut.find((c) => c.impl === "etcd3")?.relative.p50;
    out.push(
      `| A cut-off leader notices, relative to etcd expiring its lease (TTL 2 s) | | ${signed(o)} ms | ${signed(t)} ms | | |`,
    );
  }
  const cl = r.cluster?.result.groups.find((g) => g.name === "peers");
  if (cl) {
    const f = path(cl, "floor")?.summary.p50;
    row(
      `${r.cluster!.members}-member cluster (via a follower): Mutex lock + unlock vs etcd3 Lock`,
      "put + delete",
      f,
      path(cl, "ours-mutex")?.summary.p50,
      path(cl, "etcd3-lock")?.summary.p50,
    );
    row(
      `${r.cluster!.members}-member cluster: Election campaign + resign vs etcd3`,
      "put + delete",
      f,
      path(cl, "ours-campaign")?.summary.p50,
      path(cl, "etcd3-campaign")?.summary.p50,
    );
  }
  const iso = r.isolated;
  if (iso)
    out.push(
      `| 3-member cluster: hand-over while the waiter's watch member is cut from its peers (TTL ${iso.ttl} s: TTL/2 = ${(iso.ttl * 500).toLocaleString("en-US")} ms) | | ${ms(iso.summary.p50)} ms (max ${ms(iso.summary.sorted.at(-1))}; ${iso.decidedAtEvent} of ${iso.rounds} decided by a serializable read on the event's member) | | | |`,
    );
  const sc = r.scale;
  if (sc) {
    const l = sc.holders.find((x) => x.kind === "locks");
    if (l)
      out.push(
        `| ${int(l.count)} locks held through one session | | ${(l.acquireMs / 1000).toFixed(1)} s to take all, ${kb(l.rssPerHolder)} RSS each; ${l.streams.keepAliveStreams} keepalive stream, ${l.streams.watchStreams} watch stream | | | |`,
      );
    const w = sc.waiters;
    out.push(
      `| ${int(w.count)} waiters on one name: one hand-over | | ${ms(w.handover.p50)} ms; etcd handled ${[...new Set(w.wakes.map((c) => describeCounts(c)))].join(" / ")} | | | |`,
    );
  }
  return out;
}

function uncontendedTables(
  u: UncontendedResult,
  heading: string,
  opts: { counts?: boolean; levels?: string } = {},
): string[] {
  const counts = opts.counts ?? true;
  const h = opts.levels ?? "##";
  const out = [`${h} ${heading}`, ""];
  out.push(
    `One client, back to back, ${u.rounds} rounds per path interleaved (in a shuffled order every round) after ${u.warmup} warm-up rounds. ` +
      "× floor: p50 over the p50 of an etcd3 put + delete of one key measured alongside; × etcd3: ours over etcd3's peer. Lower is better.",
  );
  for (const g of u.groups) {
    out.push(
      "",
      `${h}# ${g.name === "limit" ? "At the limit: ours, the floor and the raw RPCs" : "Side by side with etcd3's Lock and Election"}`,
      "",
    );
    const peers = g.name === "peers";
    out.push(
      `| path | implementation | p50 ms | p99 ms | ops/s | × floor | ${peers ? "× etcd3 | " : ""}${counts ? "RPCs per op (etcd) |" : ""}`,
    );
    out.push(`| --- | --- | ---: | ---: | ---: | ---: | ${peers ? "---: | " : ""}${counts ? "--- |" : ""}`);
    const floor = g.paths.find((p) => p.key === "floor")?.summary.p50;
    for (const p of g.paths) {
      const peer = peerOf(g, p);
      out.push(
        `| ${p.label} | ${IMPL[p.impl]} | ${ms(p.summary.p50)} | ${ms(p.summary.p99)} | ${int(p.summary.perSec)} | ${ratio(p.summary.p50, floor)} | ${peers ? `${peer ? ratio(p.summary.p50, peer.summary.p50) : ""} | ` : ""}${counts ? `${p.counts ? describeCounts(p.counts) : "–"} |` : ""}`,
      );
    }
  }
  return out;
}

function peerOf(g: GroupResult, p: PathResult): PathResult | undefined {
  const key = { "ours-mutex": "etcd3-lock", "ours-campaign": "etcd3-campaign" }[p.key];
  return key ? g.paths.find((x) => x.key === key) : undefined;
}

function handoverTable(h: HandoverResult): string[] {
  const put = h.paths.find((p) => p.key === "put")?.summary.p50;
  const floor = h.paths.find((p) => p.key === "delete-serializable")?.summary.p50;
  const etcd3 = (key: string): number | undefined =>
    h.paths.find((p) => p.key === (key.endsWith("-procs") ? "etcd3-election-procs" : "etcd3-election"))?.summary.p50;
  const out = [
    "## Graceful hand-over",
    "",
    `From calling resign() (unlock()) to the next candidate's campaign (lock) resolving, in a line of ${h.lineSize} candidates that passes leadership along (the one that resigned queues again at the back; the one taking over has waited a while, as a standby does). "One process": every candidate in the benchmark's process, each with its own client and session, as the floor's one client; "between processes": each candidate a process of its own, timed on the machine's monotonic clock, which all processes share (the one taking over wakes from idle on the watch event). ` +
      `${h.rounds} rounds per path, interleaved; every measured operation, floors included, comes after the same ${h.gapMs} ms of idle. The floor is what a hand-over costs etcd: the delete, then one serializable read (the waiter decides from a read on the member that told it the delete, at its latest revision); the former floor, the delete plus one linearizable read, is shown beside it. × put is over one put. Targets (p50): at most 1.25× one put in one process, 1.8× between processes.`,
    "",
    "| path | implementation | p50 ms | p99 ms | × put | × floor | × etcd3 | RPCs from the resign to the next elected (etcd) |",
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
  ];
  for (const p of h.paths) {
    out.push(
      `| ${p.label} | ${IMPL[p.impl]} | ${ms(p.summary.p50)} | ${ms(p.summary.p99)} | ${ratio(p.summary.p50, put)} | ${ratio(p.summary.p50, floor)} | ${p.impl === "ours" && p.key.includes("election") ? ratio(p.summary.p50, etcd3(p.key)) : ""} | ${describeCounts(p.counts)} |`,
    );
  }
  const ph = h.phases;
  if (ph) {
    out.push(
      "",
      `### Where a hand-over's time goes (ours: Election, one process)`,
      "",
      `Each timed hand-over cut at the waiter's side: when it handled the watch event of its predecessor's delete, and when its serializable read on the member that told it went out and came back (${ph.toEvent.n} hand-overs decided by that read, ${ph.fellBack} fell back to a linearizable read). p50 of each phase, and its share of one put measured alongside.`,
      "",
      "| phase | whose | p50 ms | p99 ms | × put |",
      "| --- | --- | ---: | ---: | ---: |",
    );
    const rows: [string, string, Summary][] = [
      [
        "resign() → the waiter handles the delete's watch event",
        "etcd's commit and watch notification, gRPC",
        ph.toEvent,
      ],
      ["the event → the serializable read is sent", "ours: event-loop turns", ph.toRead],
      [
        "the serializable read on the member that told the delete",
        "a round trip: etcd serves it from its store",
        ph.read,
      ],
      ["the read's answer → campaign() resolves", "ours: event-loop turns", ph.afterRead],
    ];
    for (const [what, whose, s] of rows)
      out.push(`| ${what} | ${whose} | ${ms(s.p50)} | ${ms(s.p99)} | ${ratio(s.p50, put)} |`);
  }
  return out;
}

function namedHandoverTable(h: NamedHandoverResult): string[] {
  const base = h.resign.p50;
  return [
    "## Hand-over to a named candidate",
    "",
    `term.handOver({ to }) to the candidate three places back in a line of five (the two ahead of it step aside: each deletes its key and joins again behind it; then the leader resigns), against a plain resign to the next in line; each line in this process, a client and session per candidate. Timed from the call to the successor's campaign resolving; ${h.rounds} rounds per path, interleaved, each after ${h.gapMs} ms of idle.`,
    "",
    "| path | p50 ms | p99 ms | × resign |",
    "| --- | ---: | ---: | ---: |",
    `| resign, to the next | ${ms(h.resign.p50)} | ${ms(h.resign.p99)} | 1.00 |`,
    `| handOver({ to }), 3 places back: successor elected | ${ms(h.named.p50)} | ${ms(h.named.p99)} | ${ratio(h.named.p50, base)} |`,
    `| handOver({ to }), 3 places back: handOver() resolved | ${ms(h.namedResolved.p50)} | ${ms(h.namedResolved.p99)} | ${ratio(h.namedResolved.p50, base)} |`,
  ];
}

function whereTheTimeGoes(u: UncontendedResult, h: HandoverResult | undefined): string[] {
  const out = [
    "## Where the time goes",
    "",
    "Per operation: the RPCs etcd handled (its `grpc_server_handled_total` by method, and streams opened: `grpc_server_started_total`), counted in a pass of their own; what the operation cost this process's event loop (callbacks it ran: I/O, timers, immediates; promises made, each at least one microtask hop; timers armed), counted with async hooks in another; and the time the loop was busy (its utilisation) without hooks. The floor and etcd3 run through etcd3's client, ours and the raw row through our own channels.",
    "",
    "| path | implementation | RPCs (etcd) | round trips in sequence | loop callbacks | promises | timers | loop busy ms |",
    "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
  ];
  const seen = new Set<string>();
  for (const g of u.groups) {
    for (const p of g.paths) {
      if (seen.has(p.key) || !p.counts || !p.loop) continue;
      seen.add(p.key);
      out.push(
        `| ${p.label} | ${IMPL[p.impl]} | ${describeCounts(p.counts)} | ${round1(rpcTotal(p.counts))} | ${round1(p.loop.callbacks)} | ${round1(p.loop.promises)} | ${round1(p.loop.timers)} | ${ms(p.loop.busyMs)} |`,
      );
    }
  }
  if (h) {
    for (const p of h.paths) {
      if (p.impl === "floor") continue;
      out.push(
        `| ${p.label} | ${IMPL[p.impl]} | ${describeCounts(p.counts)} | ${round1(rpcTotal(p.counts))} | | | | |`,
      );
    }
  }
  return out;
}

const round1 = (n: number): string => String(Math.round(n * 10) / 10);

function contendedTable(runs: ContendedRun[]): string[] {
  const out = [
    "## Contended mutex throughput",
    "",
    "N clients (each its own etcd3 client and, for ours, session; all in this one process) take one lock in a loop, an empty critical section each time. etcd3's Lock cannot wait for a holder, so its clients retry with exponential backoff (cockatiel, decorrelated jitter, 5 ms growing to 500 ms), as its users must. Wait: from asking to holding. Spread: locks taken by the busiest client over the least busy (1 is fair).",
    "",
    "| clients | implementation | locks/s | × etcd3 (locks/s) | wait p50 ms | wait p99 ms | spread | RPCs per lock (etcd) |",
    "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const r of runs) {
    const peer = runs.find((x) => x.clients === r.clients && x.impl === "etcd3");
    out.push(
      `| ${r.clients} | ${IMPL[r.impl]} | ${int(r.perSec)} | ${r.impl === "ours" ? ratio(r.perSec, peer?.perSec) : ""} | ${ms(r.wait.p50)} | ${ms(r.wait.p99)} | ${r.spread.toFixed(1)} | ${round1(r.rpcsPerLock)} |`,
    );
  }
  return out;
}

function failoverTable(results: FailoverResult[]): string[] {
  const out = [
    "## Failover between processes (TTL 2 s)",
    "",
    "A leader process and a standby (ours: LeaderElector; etcd3: its Election). Crash: the leader gets SIGKILL; the standby can only lead once etcd expired the leader's lease. Graceful: SIGTERM, the leader resigns. Measured from the signal to the standby's report that it leads; for a crash also from the moment a watch saw the leader's key deleted (the lease expired in etcd).",
    "",
    "| failover | implementation | rounds | p50 ms | p99 ms | × etcd3 (p50) | after etcd expired the lease: p50 ms | signal → lease expired: p50 ms |",
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const r of results) {
    const peer = results.find((x) => x.kind === r.kind && x.impl === "etcd3");
    out.push(
      `| ${r.kind} (${r.kind === "crash" ? "SIGKILL" : "SIGTERM"}) | ${IMPL[r.impl]} | ${r.total.n} | ${ms(r.total.p50, 1)} | ${ms(r.total.p99, 1)} | ${r.impl === "ours" ? ratio(r.total.p50, peer?.total.p50) : ""} | ${r.afterExpiry ? ms(r.afterExpiry.p50, 1) : "–"} | ${r.expiry ? ms(r.expiry.p50, 0) : "–"} |`,
    );
  }
  return out;
}

function cutoffTable(results: CutoffResult[]): string[] {
  const out = [
    "## Noticing a cut-off leader (TTL 2 s)",
    "",
    "The leader reaches etcd only through a TCP proxy, which starts dropping every byte. When it noticed it lost leadership (ours: the term's signal aborts; etcd3: its campaign's error event), relative to etcd expiring its lease (a direct watch sees the key deleted). Negative: it stepped down before anyone else could be elected.",
    "",
    "| implementation | rounds | noticed − expiry p50 ms | min ms | max ms | cut → noticed p50 ms | cut → expiry p50 ms |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const r of results) {
    const s = r.relative.sorted;
    out.push(
      `| ${IMPL[r.impl]} | ${r.relative.n} | ${signed(r.relative.p50)} | ${signed(s[0])} | ${signed(s[s.length - 1])} | ${ms(r.noticed.p50, 0)} | ${ms(r.expired.p50, 0)} |`,
    );
  }
  return out;
}

const signed = (v: number | undefined): string =>
  v === undefined || !Number.isFinite(v) ? "–" : `${v > 0 ? "+" : ""}${v.toFixed(0)}`;

function scaleTables(s: ScaleResult): string[] {
  const out = [
    "## Scale",
    "",
    "Held through one session (distinct names, requests in flight as shown), released afterwards. Streams and watchers are etcd's own count (`/metrics`: LeaseKeepAlive and Watch streams started − handled, `etcd_debugging_mvcc_watcher_total`), beyond what it held before. Memory: this process, after a GC, per holder.",
    "",
    "| held through one session | count | in flight | time to take all | per holder | release all | RSS per holder | heap per holder | keepalive streams | watch streams | watchers |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const h of s.holders) {
    out.push(
      `| ${h.kind} | ${int(h.count)} | ${h.concurrency} | ${(h.acquireMs / 1000).toFixed(2)} s | ${ms(h.acquireMs / h.count, 3)} ms | ${(h.releaseMs / 1000).toFixed(2)} s | ${kb(h.rssPerHolder)} | ${kb(h.heapPerHolder)} | ${h.streams.keepAliveStreams} | ${h.streams.watchStreams} | ${int(h.streams.watchers)} |`,
    );
  }
  const w = s.waiters;
  out.push(
    "",
    `${int(w.count)} waiters on one name, each with its own session (TTL ${w.ttl} s, so no periodic re-read falls into the counting windows), all from one etcd3 client: they share its channels and one watch stream, and each keeps its own lease alive.`,
    "",
    "| waiters | sessions made | all queued (watches in place) | RSS per waiter | heap per waiter | keepalive streams | watch streams | watchers | hand-over among them p50 / p99 | RPCs per hand-over (etcd) | closing all |",
    "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    `| ${int(w.count)} | ${(w.sessionsMs / 1000).toFixed(2)} s | ${(w.queueMs / 1000).toFixed(2)} s | ${kb(w.rssPerWaiter)} | ${kb(w.heapPerWaiter)} | ${w.streams.keepAliveStreams} | ${w.streams.watchStreams} | ${int(w.streams.watchers)} | ${ms(w.handover.p50)} / ${ms(w.handover.p99)} ms | ${w.wakes
      .map((c) => describeCounts(c))
      .filter((v, i, a) => a.indexOf(v) === i)
      .join("; ")} (${w.wakes.length} hand-overs) | ${(w.closeMs / 1000).toFixed(2)} s |`,
  );
  return out;
}

const kb = (bytes: number): string => `${(bytes / 1024).toFixed(1)} KiB`;

/** The chart: latency distributions, then failover and cut-off. */
export function chartPanels(r: BenchResults): ChartPanel[] {
  const panels: ChartPanel[] = [];
  const rows = (paths: { label: string; impl: ChartRow["impl"]; summary: { sorted: number[] } }[]): ChartRow[] =>
    paths.map((p) => ({ label: p.label, impl: p.impl, samples: p.summary.sorted }));
  if (r.uncontended) {
    const limit = r.uncontended.groups.find((g) => g.name === "limit")?.paths ?? [];
    const peers = (r.uncontended.groups.find((g) => g.name === "peers")?.paths ?? []).filter((p) => p.impl === "etcd3");
    panels.push({
      title: "Uncontended, one client, back to back (p1–p99 whiskers, p25–p75 box, median bar)",
      unit: "ms",
      scale: "log",
      rows: rows([...limit, ...peers]),
    });
  }
  if (r.handover)
    panels.push({
      title: `Graceful hand-over, after ${r.handover.gapMs} ms idle (floors: one put; a delete, then a serializable or a linearizable range)`,
      unit: "ms",
      scale: "log",
      rows: rows(r.handover.paths),
    });
  if (r.failover) {
    panels.push({
      title: "Failover between processes, TTL 2 s (every round a dot)",
      unit: "ms",
      scale: "log",
      rows: r.failover.map((f) => ({
        label: `${f.kind === "crash" ? "crash (SIGKILL)" : "graceful (SIGTERM)"}: ${IMPL[f.impl]}`,
        impl: f.impl,
        samples: f.total.sorted,
      })),
    });
  }
  if (r.cutoff) {
    panels.push({
      title: "A cut-off leader notices it lost leadership, relative to etcd expiring its lease (TTL 2 s)",
      unit: "ms relative to the expiry",
      scale: "linear",
      marker: { at: 0, label: "etcd expires the lease" },
      rows: r.cutoff.map((c) => ({ label: IMPL[c.impl], impl: c.impl, samples: c.relative.sorted })),
    });
  }
  return panels;
}
