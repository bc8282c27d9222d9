import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { METRICS_PATH } from "../../examples/worker-http.js";
import { healthPaths } from "../../src/index.js";
import { parseSamples, sampleValue } from "../support/prometheus-text.js";
import { faultsUnavailableReason, startEtcd, waitFor, type EtcdEnv } from "../support/index.js";

const WORKER = fileURLToPath(new URL("../../examples/worker.ts", import.meta.url));

interface Worker {
  id: string;
  child: ChildProcess;
  /** Its JSON log lines so far. */
  lines: { msg: string; [field: string]: unknown }[];
  exited: Promise<number | null>;
  out: string;
}

/** examples/worker.ts as a child process; `PORT: "0"` makes it serve HTTP on a port of the kernel's choice. */
function startWorker(id: string, env: Record<string, string>): Worker {
  const child = spawn(process.execPath, ["--import", "tsx", WORKER], {
    env: { ...process.env, WORKER_ID: id, TTL: "5", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const w: Worker = { id, child, lines: [], out: "", exited: new Promise((resolve) => child.once("exit", resolve)) };
  let partial = "";
  child.stdout.on("data", (d: Buffer) => {
    w.out += d.toString();
    const chunks = (partial + d.toString()).split("\n");
    partial = chunks.pop() ?? "";
    for (const chunk of chunks) if (chunk.startsWith("{")) w.lines.push(JSON.parse(chunk) as Worker["lines"][number]);
  });
  child.stderr.on("data", (d: Buffer) => (w.out += d.toString()));
  return w;
}
const logged = (w: Worker, msg: string) => w.lines.find((l) => l.msg === msg);

describe("examples/worker.ts: health and metrics over HTTP, hand-over on SIGTERM, exit at once on a second signal", () => {
  let etcd: EtcdEnv;
  const workers: Worker[] = [];

  beforeAll(async () => {
    etcd = await startEtcd();
  });
  afterAll(async () => {
    for (const w of workers) w.child.kill("SIGKILL");
    await Promise.all(workers.map((w) => w.exited));
    await etcd?.close();
  });

  it("serves /leader, /readyz, /healthz and Prometheus /metrics; the stopped leader hands over and exits by itself", async () => {
    const name = `${etcd.prefix()}http-workers`;
    const pair = ["h1", "h2"].map((id) =>
      startWorker(id, { ETCD_ENDPOINTS: etcd.endpoints.join(","), ELECTION: name, PORT: "0" }),
    );
    workers.push(...pair);
    const ports = await waitFor(
      () =>
        pair.every((w) => logged(w, "serving health and metrics")) &&
        pair.map((w) => Number(logged(w, "serving health and metrics")!.port)),
      {
        timeoutMs: 20_000,
        description: "both workers listening",
      },
    );
    const url = (i: number, path: string) => `http://127.0.0.1:${ports[i]}${path}`;
    const status = async (i: number, path: string) =>
      (await fetch(url(i, path), { signal: AbortSignal.timeout(5000) })).status;
    await waitFor(() => pair.some((w) => logged(w, "started leading")), { timeoutMs: 20_000 });
    const li = pair.findIndex((w) => logged(w, "started leading"));
    const fi = 1 - li;

    expect(await status(li, healthPaths.leader)).toBe(200);
    expect(await status(fi, healthPaths.leader)).toBe(503);
    for (const i of [li, fi]) {
      expect(await status(i, healthPaths.liveness)).toBe(200);
      await waitFor(async () => (await status(i, healthPaths.readiness)) === 200);
    }
    const scrape = async (i: number) =>
      parseSamples(await (await fetch(url(i, METRICS_PATH), { signal: AbortSignal.timeout(5000) })).text());
    const leaderMetrics = await scrape(li);
    expect(sampleValue(leaderMetrics, "etcd_election_leader_status", { name })).toBe(1);
    expect(sampleValue(leaderMetrics, "etcd_election_terms_total", { name })).toBe(1);
    expect(sampleValue(leaderMetrics, "process_cpu_user_seconds_total")).toBeGreaterThan(0); // the process's own metrics
    expect(sampleValue(await scrape(fi), "etcd_election_leader_status", { name })).toBe(0);

    // SIGTERM: the leader resigns, the other takes over, and the leader exits by itself (the HTTP
    // server and the keep-alive connections fetch left open are closed) with 0.
    pair[li]!.child.kill("SIGTERM");
    expect(await pair[li]!.exited, pair[li]!.out).toBe(0);
    for (const msg of ["handing over (send the signal again to exit at once)", "stopped leading", "run() resolved"])
      expect(logged(pair[li]!, msg), msg).toBeDefined();
    await waitFor(async () => (await status(fi, healthPaths.leader)) === 200, { timeoutMs: 5000 });
    expect(sampleValue(await scrape(fi), "etcd_election_leader_status", { name })).toBe(1);

    pair[fi]!.child.kill("SIGINT");
    expect(await pair[fi]!.exited, pair[fi]!.out).toBe(0);
  });

  it("without PORT it serves no HTTP", async () => {
    const w = startWorker("quiet", { ETCD_ENDPOINTS: etcd.endpoints.join(","), ELECTION: `${etcd.prefix()}quiet` });
    workers.push(w);
    await waitFor(() => logged(w, "started leading"), { timeoutMs: 20_000 });
    expect(logged(w, "serving health and metrics")).toBeUndefined();
    w.child.kill("SIGTERM");
    expect(await w.exited, w.out).toBe(0);
  });

  it.skipIf(!!faultsUnavailableReason)(
    "a second SIGTERM while the hand-over cannot get through exits at once, non-zero",
    async () => {
      const member = etcd.members[0]!;
      const w = startWorker("stuck", { ETCD_ENDPOINTS: member.clientUrl, ELECTION: `${etcd.prefix()}stuck` });
      workers.push(w);
      await waitFor(() => logged(w, "started leading"), { timeoutMs: 20_000 });
      // etcd goes silent: the resign cannot be confirmed, so the stop waits (up to max(TTL, 2 x callTimeoutMs)).
      member.clientProxy.blackhole();
      try {
        w.child.kill("SIGTERM");
        await waitFor(() => logged(w, "handing over (send the signal again to exit at once)"));
        w.child.kill("SIGTERM");
        expect(await w.exited, w.out).toBe(128 + 15);
        expect(logged(w, "second signal: exiting now, without waiting for the hand-over")).toBeDefined();
        expect(logged(w, "run() resolved")).toBeUndefined();
      } finally {
        member.clientProxy.open();
      }
    },
  );
});
