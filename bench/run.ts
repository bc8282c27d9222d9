/**
 * The benchmark: etcd-election side by side with the floor and with etcd3's own Lock and Election, in
 * one run against throwaway etcd members started from the local binary (test/support/local-cluster.ts).
 *
 *   npm run bench                   # full: writes bench/results/<date>.md and .svg, and latest.md/.svg
 *   npm run bench -- --quick        # small sizes, same code paths (CI): prints the tables, writes nothing;
 *                                   # exits non-zero on an error or a process warning, never on timings
 *   npm run bench -- --only uncontended,handover   # some parts only
 *   npm run bench -- --out <dir>    # where to write (--quick writes only when given one)
 *   ETCD_BIN=/usr/bin/etcd npm run bench            # another etcd binary (here: Debian's 3.4.23)
 *
 * Parts: uncontended, handover, named-handover, contended, scale, failover, cutoff, cluster, isolated (the
 * harness's 3-member cluster with fault proxies; not in --quick unless named).
 */
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Etcd3 } from "etcd3";
import { startLocalCluster, type LocalCluster } from "../test/support/local-cluster.js";
import { renderChart } from "./chart.js";
import { killWorkers, workerWarnings } from "./child.js";
import { contended } from "./contended.js";
import { cutoff } from "./cutoff.js";
import { makeEnv, type BenchEnv } from "./env.js";
import { failover } from "./failover.js";
import { handover } from "./handover.js";
import { isolatedHandover } from "./isolated.js";
import { namedHandover } from "./named-handover.js";
import { chartPanels, renderMarkdown, type BenchResults } from "./report.js";
import { scale } from "./scale.js";
import { sleep } from "./stats.js";
import { uncontended } from "./uncontended.js";

const PARTS = [
  "uncontended",
  "handover",
  "named-handover",
  "contended",
  "scale",
  "failover",
  "cutoff",
  "cluster",
  "isolated",
] as const;
type Part = (typeof PARTS)[number];

const ROOT = fileURLToPath(new URL("..", import.meta.url));

function parseArgs(argv: string[]): { quick: boolean; out: string | undefined; only: Set<Part> } {
  let quick = false;
  let out: string | undefined;
  let only: Set<Part> | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--quick") quick = true;
    else if (arg === "--out") out = argv[++i];
    else if (arg === "--only") {
      const parts = (argv[++i] ?? "").split(",").filter(Boolean);
      const unknown = parts.filter((p) => !(PARTS as readonly string[]).includes(p));
      if (unknown.length > 0) throw new Error(`unknown part(s) ${unknown.join(", ")}; parts: ${PARTS.join(", ")}`);
      only = new Set(parts as Part[]);
    } else throw new Error(`unknown argument ${arg} (--quick, --out <dir>, --only <parts>)`);
  }
  if (!quick && out === undefined) out = join(ROOT, "bench", "results");
  // --quick (CI) leaves out the part that needs the harness's fault proxies, unless it is named.
  only ??= new Set<Part>(PARTS.filter((p) => !quick || p !== "isolated"));
  return { quick, out, only };
}

/** Sizes: the full run, and --quick (same code paths, small N, for CI). */
function sizes(quick: boolean) {
  return quick
    ? {
        uncontended: { rounds: 30, warmup: 5, countTimes: 5 },
        handover: { rounds: 10, warmup: 2, gapMs: 20, lineSize: 3, countTimes: 1 },
        namedHandover: { rounds: 5, warmup: 1, gapMs: 20 },
        contended: { clients: [2, 8, 32], durationMs: 200 },
        scale: { holders: 500, waiters: 50, concurrency: 100, handovers: 2, holdersTtl: 3, waitersTtl: 4 },
        failover: { rounds: 1 },
        cutoff: { rounds: 1 },
        cluster: { rounds: 20, warmup: 5, countTimes: 0 },
        isolated: { rounds: 1 },
      }
    : {
        uncontended: { rounds: 1000, warmup: 50, countTimes: 100 },
        handover: { rounds: 200, warmup: 10, gapMs: 20, lineSize: 4, countTimes: 10 },
        namedHandover: { rounds: 100, warmup: 10, gapMs: 20 },
        contended: { clients: [2, 8, 32], durationMs: 4000 },
        scale: { holders: 10_000, waiters: 1000, concurrency: 100, handovers: 10, holdersTtl: 10, waitersTtl: 60 },
        failover: { rounds: 10 },
        cutoff: { rounds: 8 },
        cluster: { rounds: 300, warmup: 30, countTimes: 0 },
        isolated: { rounds: 5 },
      };
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const t0 = performance.now();
  const log = (m: string): void =>
    console.error(`[bench ${((performance.now() - t0) / 1000).toFixed(1).padStart(5)} s] ${m}`);
  // Any process warning fails the run: 10,000 holders on one session must not make Node warn about
  // listeners (MaxListenersExceededWarning), and nothing else may warn either.
  const warnings: string[] = [];
  process.on("warning", (w) => {
    warnings.push(`${w.name}: ${w.message}`);
    log(`process warning: ${w.name}: ${w.message}`);
  });
  const size = sizes(args.quick);
  const started = performance.now();
  const loadStart = loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");
  const clusters: LocalCluster[] = [];
  const stopAll = async (): Promise<void> => {
    killWorkers();
    await Promise.all(clusters.splice(0).map((c) => c.stop()));
  };
  // At exit the members are killed and their data removed without waiting (local-cluster.ts).
  process.once("exit", () => void stopAll());
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => void stopAll().finally(() => process.exit(130)));
  }

  let endpoints: string[];
  let etcdName: string;
  if (process.env.ETCD_ENDPOINTS) {
    endpoints = process.env.ETCD_ENDPOINTS.split(",");
    etcdName = `etcd at ${endpoints.join(", ")}`;
  } else {
    const single = await startLocalCluster(1, log);
    clusters.push(single);
    endpoints = single.endpoints;
    etcdName = `etcd ${single.version} (one member, a throwaway local process, loopback)`;
  }
  const run = Date.now().toString(36);
  const env = makeEnv({ quick: args.quick, endpoints, metricsEndpoint: endpoints[0]!, log, run });
  const results: BenchResults = {
    date: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    quick: args.quick,
    seconds: 0,
    machine: {
      cpu: cpus()[0]?.model ?? "?",
      cores: cpus().length,
      memoryGiB: Math.round(totalmem() / 2 ** 30),
      os: osName(),
      loadStart,
      loadEnd: "",
    },
    versions: versions(),
    etcd: etcdName,
    warnings,
  };
  // One part after the other, each starting from a quiet etcd: the clients of the part before are
  // closed and their streams gone.
  const part = async <T>(name: Part, body: () => Promise<T>): Promise<T | undefined> => {
    if (!args.only.has(name)) return undefined;
    const start = performance.now();
    try {
      return await body();
    } finally {
      env.closeClients();
      await sleep(args.quick ? 100 : 500);
      log(`${name}: ${((performance.now() - start) / 1000).toFixed(1)} s`);
    }
  };
  try {
    results.uncontended = await part("uncontended", () => uncontended(env, size.uncontended));
    results.handover = await part("handover", () => handover(env, size.handover));
    results.namedHandover = await part("named-handover", () => namedHandover(env, size.namedHandover));
    results.contended = await part("contended", () => contended(env, size.contended));
    results.scale = await part("scale", () => scale(env, size.scale));
    results.failover = await part("failover", () => failover(env, size.failover));
    results.cutoff = await part("cutoff", () => cutoff(env, size.cutoff));
    results.cluster = await part("cluster", () => onCluster(log, args.quick, run, clusters, size.cluster));
    results.isolated = await part("isolated", () => isolatedHandover(log, size.isolated.rounds));
  } finally {
    env.closeClients();
    await stopAll();
  }
  warnings.push(...workerWarnings);
  results.seconds = (performance.now() - started) / 1000;
  results.machine.loadEnd = loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");

  const markdown = renderMarkdown(results);
  console.log(markdown);
  if (args.out) {
    mkdirSync(args.out, { recursive: true });
    const stamp = results.date.slice(0, 16).replace(/[:T]/g, "-");
    const svg = renderChart(
      `etcd-election benchmark, ${results.date}`,
      `${results.machine.cpu}, ${results.machine.cores} cores; Node ${results.versions.node}; ${results.etcd.replace(/ \(.*/, "")}; etcd3 ${results.versions.etcd3}`,
      chartPanels(results),
    );
    const md = join(args.out, `${stamp}.md`);
    const chart = join(args.out, `${stamp}.svg`);
    writeFileSync(md, markdown.replace(/^(# .*)$/m, `$1\n\n![latency and failover](${stamp}.svg)`));
    writeFileSync(chart, svg);
    writeFileSync(
      join(args.out, "latest.md"),
      markdown.replace(/^(# .*)$/m, `$1\n\n![latency and failover](latest.svg)`),
    );
    copyFileSync(chart, join(args.out, "latest.svg"));
    log(`wrote ${md}, ${chart} and latest.md/latest.svg`);
  }
  log(`done in ${results.seconds.toFixed(1)} s`);
  if (warnings.length > 0) {
    console.error(`[bench] FAILED: ${warnings.length} process warning(s):\n  ${warnings.join("\n  ")}`);
    return 1;
  }
  return 0;
}

/** The uncontended paths on a 3-member cluster, every client on one follower. */
async function onCluster(
  log: (m: string) => void,
  quick: boolean,
  run: string,
  clusters: LocalCluster[],
  sizes: { rounds: number; warmup: number; countTimes: number },
): Promise<NonNullable<BenchResults["cluster"]>> {
  const cluster = await startLocalCluster(3, log);
  clusters.push(cluster);
  let follower: string | undefined;
  for (const endpoint of cluster.endpoints) {
    const probe = new Etcd3({ hosts: [endpoint] });
    try {
      const status = await probe.maintenance.status();
      if (status.leader !== status.header.member_id) follower ??= endpoint;
    } finally {
      probe.close();
    }
  }
  if (!follower) throw new Error("cluster: no follower found");
  log(`cluster: every client talks to the follower at ${follower}`);
  const env: BenchEnv = makeEnv({
    quick,
    endpoints: [follower],
    metricsEndpoint: follower,
    log,
    run: `${run}-cluster`,
  });
  try {
    return { members: cluster.endpoints.length, role: "follower", result: await uncontended(env, sizes) };
  } finally {
    env.closeClients();
    await cluster.stop();
  }
}

function versions(): BenchResults["versions"] {
  const pkg = (path: string): string =>
    (JSON.parse(readFileSync(join(ROOT, path), "utf8")) as { version: string }).version;
  let commit = "";
  try {
    commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: ROOT, encoding: "utf8" }).trim();
    const dirty = execFileSync("git", ["status", "--porcelain", "--", "src"], { cwd: ROOT, encoding: "utf8" }).trim();
    if (dirty) commit += " with uncommitted changes in src/";
  } catch {
    commit = "(no git)";
  }
  return {
    node: process.versions.node,
    etcd3: pkg("node_modules/etcd3/package.json"),
    grpc: pkg("node_modules/@grpc/grpc-js/package.json"),
    library: `${pkg("package.json")} (${commit})`,
  };
}

function osName(): string {
  try {
    const release = readFileSync("/etc/os-release", "utf8");
    return /^PRETTY_NAME="?([^"\n]*)"?/m.exec(release)?.[1] ?? process.platform;
  } catch {
    return process.platform;
  }
}

process.exitCode = await main().catch((err: unknown) => {
  console.error("[bench] FAILED:", err);
  return 1;
});
// Everything of ours is closed by now. etcd3's Lease re-arms its keepalive timeout (TTL long) when an
// answer arrives after its revoke, which keeps a process alive that long: not worth waiting for.
setTimeout(() => process.exit(), 1000).unref();
