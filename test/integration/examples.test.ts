import { execFileSync, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEtcd, type EtcdEnv } from "../support/index.js";

/** Runs an example to its end against the test's etcd; resolves with its exit code and output. */
function runExample(
  file: string,
  endpoints: string[],
  args: string[] = [],
  extraEnv: NodeJS.ProcessEnv = {},
): Promise<{ code: number | null; out: string }> {
  const path = fileURLToPath(new URL(`../../examples/${file}`, import.meta.url));
  const env: NodeJS.ProcessEnv = { ...process.env, ...extraEnv, ETCD_ENDPOINTS: endpoints.join(",") };
  if (endpoints.length === 0) delete env.ETCD_ENDPOINTS; // the example starts its own etcd
  const child = spawn(process.execPath, ["--import", "tsx", path, ...args], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (out += d.toString()));
  return new Promise((resolve) => child.once("exit", (code) => resolve({ code, out })));
}

describe("the examples run against real etcd", () => {
  let etcd: EtcdEnv;
  beforeAll(async () => {
    etcd = await startEtcd();
  });
  afterAll(() => etcd?.close());

  it("quickstart: a leader is elected, crashes, and is replaced with a larger fencing token", async () => {
    const started = Date.now();
    const { code, out } = await runExample("quickstart.ts", etcd.endpoints);
    expect(code, out).toBe(0);
    // It exits as soon as it is done: nothing of the library (a 30 s idle watch timer, say) lingers.
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(out).toMatch(/node-\w leads with fencing token \d+/);
    expect(out).toMatch(/node-\w took over with token (\d+) \(> \d+\)/);
    expect(out).toContain("done");
  });

  it("demo: on its own 3-member cluster, one leader at a time with rising tokens, SIGKILL and SIGTERM failovers, a member restart", async () => {
    const { code, out } = await runExample("demo.ts", [], ["--json"]);
    expect(code, out).toBe(0);
    const summary = JSON.parse(out.trim().split("\n").at(-1)!) as {
      dataDir: string;
      terms: { worker: string; token: string; fromMs: number; toMs?: number }[];
      failovers: { after: string; ms: number }[];
      memberRestart?: { leaderKeptTerm: boolean };
    };
    expect(summary.terms.length).toBeGreaterThanOrEqual(3);
    for (const [i, term] of summary.terms.entries()) {
      const next = summary.terms[i + 1];
      if (!next) continue;
      expect(BigInt(next.token)).toBeGreaterThan(BigInt(term.token));
      expect(next.fromMs).toBeGreaterThanOrEqual(term.toMs!); // one leader at a time, as the workers told it
    }
    const failover = Object.fromEntries(summary.failovers.map((f) => [f.after, f.ms]));
    // A resign hands over before the lease could run out; a kill has to wait for it.
    expect(failover.SIGTERM).toBeLessThan(failover.SIGKILL!);
    expect(summary.memberRestart?.leaderKeptTerm, out).toBe(true);
    // Nothing left behind: its etcd members' data and processes are gone.
    expect(summary.dataDir).toMatch(/etcd-election-example-/);
    expect(existsSync(summary.dataDir)).toBe(false);
    expect(execFileSync("ps", ["-eo", "args"], { encoding: "utf8" })).not.toContain(summary.dataDir);
    expect(out).toContain("demo done");
  });

  it("sharded-worker demo: shards spread over worker processes, and move on a join, a SIGKILL and a SIGTERM", async () => {
    const { code, out } = await runExample("sharded-worker.ts", etcd.endpoints, ["--demo"], { TTL: "2", SHARDS: "12" });
    expect(code, out).toBe(0);
    // After each change, every live worker owns 12/M shards: 4 each of 3, 3 each of 4, 4 each of 3, 6 each of 2.
    for (const [heading, each] of [
      ["3 workers", 4],
      ["w4 joined", 3],
      ["w2 killed", 4],
      ["w1 stopped", 6],
    ] as const) {
      const table = out.split(heading)[1]!.split("\n\n")[0]!;
      const counts = [...table.matchAll(/ (\d+) shards/g)].map((m) => Number(m[1]));
      expect(counts.length, out).toBe(12 / each);
      for (const c of counts) expect(c).toBe(each);
    }
    expect(out).toContain("demo done");
  }, 60_000);
});
