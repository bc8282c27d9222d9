import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEtcd, type EtcdEnv } from "../support/index.js";

/** Runs an example to its end against the test's etcd; resolves with its exit code and output. */
function runExample(file: string, endpoints: string[]): Promise<{ code: number | null; out: string }> {
  const path = fileURLToPath(new URL(`../../examples/${file}`, import.meta.url));
  const child = spawn(process.execPath, ["--import", "tsx", path], {
    env: { ...process.env, ETCD_ENDPOINTS: endpoints.join(",") },
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

  it("demo: three worker processes fail over after SIGKILL (the lease runs out) and SIGTERM (a resign)", async () => {
    const { code, out } = await runExample("demo.ts", etcd.endpoints);
    expect(code, out).toBe(0);
    const killed = /took over after SIGKILL in (\d+) ms/.exec(out);
    const stopped = /took over after SIGTERM in (\d+) ms/.exec(out);
    expect(killed, out).not.toBeNull();
    expect(stopped, out).not.toBeNull();
    // A resign hands over before the lease could run out; a kill has to wait for it.
    expect(Number(stopped![1])).toBeLessThan(Number(killed![1]));
    expect(out).toContain("demo done");
  });
});
