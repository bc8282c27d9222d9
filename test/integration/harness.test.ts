/**
 * Checks that the etcd test harness (test/support) does what other tests rely
 * on: real etcd, and faults that behave like the real thing.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  faultsUnavailableReason,
  startCluster,
  startEtcd,
  waitFor,
  type EtcdEnv,
  type EtcdMember,
} from "../support/index.js";

const deadline = (ms: number): { deadline: Date } => ({ deadline: new Date(Date.now() + ms) });

/** Runs `call`, expecting it to fail; returns the error and how long the failure took. */
async function failure(call: () => Promise<unknown>): Promise<{ error: unknown; ms: number }> {
  const started = Date.now();
  try {
    await call();
  } catch (error) {
    return { error, ms: Date.now() - started };
  }
  throw new Error("expected the call to fail, but it succeeded");
}

describe("single node", () => {
  let env: EtcdEnv;
  beforeAll(async () => {
    env = await startEtcd();
  });
  afterAll(async () => {
    await env?.close();
  });

  it("puts and gets a key", async () => {
    const client = env.client();
    const key = `${env.prefix("put")}greeting`;
    await client.put(key).value("hello");
    expect(await client.get(key).string()).toBe("hello");
  });

  it("compact() returns the compacted revision; reads below it fail", async () => {
    const client = env.client();
    const key = `${env.prefix("compact")}k`;
    const first = await client.put(key).value("v1");
    await client.put(key).value("v2");
    const revision = await env.compact();
    expect(BigInt(revision)).toBeGreaterThan(BigInt(first.header.revision));
    await expect(client.get(key).revision(first.header.revision).string()).rejects.toThrow(/compacted/);
    expect(await client.get(key).string()).toBe("v2");
  });

  describe.skipIf(!!faultsUnavailableReason)("faults", () => {
    it.each(["cut", "blackhole"] as const)("a client behind a %s proxy fails within its own deadline", async (mode) => {
      const member = env.members[0]!;
      const client = env.client({}, [member.clientUrl]);
      const key = `${env.prefix(mode)}k`;
      await client.put(key).value("x");

      member.clientProxy[mode]();
      try {
        const { error, ms } = await failure(() => client.get(key).options(deadline(2_000)).string());
        expect(error).toBeInstanceOf(Error);
        expect(ms).toBeLessThan(5_000);
      } finally {
        member.clientProxy.open();
      }
      await waitFor(async () => (await client.get(key).options(deadline(1_000)).string()) === "x", {
        timeoutMs: 15_000,
        description: `the client working again after ${mode}`,
      });
    });

    it("delay() adds latency in both directions", async () => {
      const member = env.members[0]!;
      const client = env.client({}, [member.clientUrl]);
      const key = `${env.prefix("delay")}k`;
      await client.put(key).value("x");
      member.clientProxy.delay(250);
      try {
        const started = Date.now();
        expect(await client.get(key).string()).toBe("x");
        // The request and the response each wait 250 ms (timers may fire a ms early).
        expect(Date.now() - started).toBeGreaterThanOrEqual(490);
      } finally {
        member.clientProxy.delay(0);
      }
    });

    it("kill + restart keeps the data (read back from disk) and the clientUrl", async () => {
      const member = env.members[0]!;
      const key = `${env.prefix("restart")}k`;
      await env.client().put(key).value("durable");
      await member.kill();
      await member.restart();
      expect(await env.client({}, [member.clientUrl]).get(key).string()).toBe("durable");
    });
  });
});

describe.skipIf(!!faultsUnavailableReason)("three-member cluster", () => {
  let env: EtcdEnv;
  beforeAll(async () => {
    env = await startCluster();
  });
  afterAll(async () => {
    await env?.close();
  });

  const otherThan = (member: EtcdMember): EtcdMember[] => env.members.filter((m) => m !== member);
  const aFollower = async (): Promise<EtcdMember> => otherThan(await env.leader())[0]!;

  it("accepts writes while the leader is paused", async () => {
    const leader = await env.leader();
    const client = env.client(
      {},
      otherThan(leader).map((m) => m.clientUrl),
    );
    const key = `${env.prefix("pause")}k`;
    await leader.pause();
    try {
      // The remaining two elect a new leader first (election timeout 1 s).
      await waitFor(() => client.put(key).value("while-paused").options(deadline(2_000)), {
        timeoutMs: 15_000,
        description: "a write with the leader paused",
      });
      expect(await env.leader()).not.toBe(leader);
    } finally {
      await leader.unpause();
    }
    await env.waitHealthy();
    expect(await env.client({}, [leader.clientUrl]).get(key).string()).toBe("while-paused");
  });

  it("an isolated member stops serving linearizable reads, the majority goes on, heal() restores it", async () => {
    const isolated = await aFollower();
    const viaIsolated = env.client({}, [isolated.clientUrl]);
    const viaMajority = env.client(
      {},
      otherThan(isolated).map((m) => m.clientUrl),
    );
    const key = `${env.prefix("isolate")}k`;
    await viaMajority.put(key).value("before");
    expect(await viaIsolated.get(key).string()).toBe("before");

    await isolated.isolate();
    try {
      const { error, ms } = await failure(() => viaIsolated.get(key).options(deadline(2_000)).string());
      expect(error).toBeInstanceOf(Error);
      expect(ms).toBeLessThan(5_000);
      await viaMajority.put(key).value("during").options(deadline(5_000));
      expect(await viaMajority.get(key).options(deadline(5_000)).string()).toBe("during");
    } finally {
      await isolated.heal();
    }
    await waitFor(async () => (await viaIsolated.get(key).options(deadline(2_000)).string()) === "during", {
      timeoutMs: 20_000,
      description: "the healed member serving the latest value",
    });
  });

  it("a killed member restarts with its data, id and clientUrl, and catches up", async () => {
    const member = await aFollower();
    const id = await member.memberId();
    const prefix = env.prefix("kill");
    await env.client().put(`${prefix}before`).value("1");
    await member.kill();
    await env
      .client(
        {},
        otherThan(member).map((m) => m.clientUrl),
      )
      .put(`${prefix}while-down`)
      .value("2");
    await member.restart();

    const client = env.client({}, [member.clientUrl]);
    expect(await client.get(`${prefix}before`).string()).toBe("1");
    expect(await client.get(`${prefix}while-down`).string()).toBe("2");
    const status = await client.maintenance.status();
    expect(BigInt(status.header.member_id).toString(16)).toBe(id);
  });
});
