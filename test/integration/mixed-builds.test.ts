/**
 * The ESM and CJS builds each carry their own error classes, and one process may load both (an ESM app
 * with a CJS dependency that made the session). Errors are judged by `code`, so an object of one build
 * works with a session of the other. Loads the built dist/, rebuilt first.
 */
import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import type * as Api from "../../src/index.js";
import { keysUnder } from "../support/observe.js";
import { faultsUnavailableReason, useEtcd, waitFor } from "../support/index.js";

const root = fileURLToPath(new URL("../..", import.meta.url));

describe.skipIf(!!faultsUnavailableReason)("an ESM object on a session of the CJS build", () => {
  const fx = useEtcd();
  let esm: typeof Api;
  let cjs: typeof Api;

  beforeAll(async () => {
    execFileSync("npm", ["run", "build"], { cwd: root, stdio: "ignore", timeout: 180_000 });
    esm = (await import(`${root}dist/index.js`)) as typeof Api;
    cjs = createRequire(import.meta.url)(`${root}dist/index.cjs`) as typeof Api;
    expect(esm.ElectionError).not.toBe(cjs.ElectionError);
  }, 200_000);

  /** A CJS session through the member's proxy, telling the test of its warnings. */
  async function cjsSession(warnings: string[]): Promise<Api.Session> {
    const logger = { debug() {}, info() {}, warn: (_: object, m: string) => void warnings.push(m), error() {} };
    const member = fx.etcd.members[0]!;
    return cjs.Session.create(fx.etcd.client({}, [member.clientUrl]), { ttl: 10, callTimeoutMs: 1000, logger });
  }

  it("a waiting campaign retries ETCD_UNAVAILABLE while etcd is cut off, and wins once it is back", async () => {
    const member = fx.etcd.members[0]!;
    const name = `${fx.etcd.prefix()}election`;
    const holder = await esm.Session.create(fx.etcd.client({}, [member.directClientUrl]), { ttl: 10 });
    const warnings: string[] = [];
    const session = await cjsSession(warnings);
    try {
      const term = await new esm.Election(holder, name).campaign("holder");
      let settled = false;
      const campaign = new esm.Election(session, name).campaign("waiter");
      campaign.then(
        () => (settled = true),
        () => (settled = true),
      );
      await waitFor(async () => (await keysUnder(fx.client, name)).length === 2);
      member.clientProxy.cut(); // the watch breaks, the waiter reads again, and that read fails
      await waitFor(() => settled || warnings.some((w) => /read failed; retrying/.test(w)), { timeoutMs: 15_000 });
      member.clientProxy.open();
      expect(settled).toBe(false);
      await term.resign();
      const won = await campaign;
      expect(won.value.toString()).toBe("waiter");
      await won.resign();
      expect(await keysUnder(fx.client, name)).toEqual([]);
    } finally {
      member.clientProxy.open();
      await session.close();
      await holder.close();
    }
  });

  it("a campaign aborted while etcd is cut off removes its waiter key once etcd is back", async () => {
    const member = fx.etcd.members[0]!;
    const name = `${fx.etcd.prefix()}aborted`;
    const holder = await esm.Session.create(fx.etcd.client({}, [member.directClientUrl]), { ttl: 10 });
    const warnings: string[] = [];
    const session = await cjsSession(warnings);
    try {
      const term = await new esm.Election(holder, name).campaign("holder");
      const stop = new AbortController();
      const campaign = new esm.Election(session, name).campaign("waiter", { signal: stop.signal });
      campaign.catch(() => {}); // awaited below
      await waitFor(async () => (await keysUnder(fx.client, name)).length === 2);
      member.clientProxy.cut();
      stop.abort(new Error("gave up"));
      await waitFor(() => warnings.some((w) => /removing our key failed/.test(w)), { timeoutMs: 15_000 });
      member.clientProxy.open();
      await expect(campaign).rejects.toThrow("gave up");
      expect(await keysUnder(fx.client, name)).toEqual([term.key]);
      await term.resign();
    } finally {
      member.clientProxy.open();
      await session.close();
      await holder.close();
    }
  });

  it("an ESM LeaderElector rejects with a NAME_CONFLICT of the CJS build instead of retrying it forever", async () => {
    const session = await cjs.Session.create(fx.client, { ttl: 10 });
    const name = `${fx.etcd.prefix()}conflict`;
    try {
      const lock = await new cjs.Mutex(session, name).lock(); // the name is a mutex's through this session
      const elector = new esm.LeaderElector({
        session,
        name,
        identity: "a",
        logger: false,
        onStartedLeading: () => {},
      });
      const failures: string[] = [];
      elector.on("failure", (e) => failures.push(e.code));
      const err = await elector.run({ signal: AbortSignal.timeout(5000) }).then(
        () => "run() resolved at the stop",
        (e: unknown) => e,
      );
      expect(err).toMatchObject({ code: "NAME_CONFLICT" });
      expect(esm.isElectionError(err, "NAME_CONFLICT")).toBe(true);
      expect(failures).toEqual(["NAME_CONFLICT"]);
      await lock.unlock();
    } finally {
      await session.close();
    }
  });
});
