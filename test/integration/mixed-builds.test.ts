/**
 * The ESM and CJS builds each carry their own error classes, and one process may load both (an ESM app
 * with a CJS dependency that made the session). Errors are judged by `code`, so an object of one build
 * works with a session of the other. Loads both builds from a scratch directory of their own (inside the
 * repository, so that their dependencies resolve), never the repository's dist/, which other test files
 * may be reading meanwhile.
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build, type Options } from "tsup";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import tsupConfig from "../../tsup.config.js";
import type * as Api from "../../src/index.js";
import { keysUnder } from "../support/observe.js";
import { faultsUnavailableReason, useEtcd, waitFor } from "../support/index.js";

const root = fileURLToPath(new URL("../..", import.meta.url));

describe.skipIf(!!faultsUnavailableReason)("an ESM object on a session of the CJS build", () => {
  const fx = useEtcd();
  let esm: typeof Api;
  let cjs: typeof Api;

  let outDir: string;
  let distBefore: string;

  beforeAll(async () => {
    distBefore = listing(join(root, "dist"));
    mkdirSync(join(root, ".scratch"), { recursive: true });
    outDir = mkdtempSync(join(root, ".scratch", "mixed-builds-"));
    // The library's own build settings (the package's first build; the second is the CLI's), written
    // elsewhere; no types needed to load it.
    const [library] = tsupConfig as Options[];
    await build({ ...library, config: false, outDir, dts: false, sourcemap: false, silent: true });
    esm = (await import(join(outDir, "index.js"))) as typeof Api;
    cjs = createRequire(import.meta.url)(join(outDir, "index.cjs")) as typeof Api;
    expect(esm.ElectionError).not.toBe(cjs.ElectionError);
  }, 200_000);
  afterAll(() => {
    if (outDir) rmSync(outDir, { recursive: true, force: true });
  });

  it("building both formats for this file leaves the repository's dist/ untouched", () => {
    expect(listing(join(root, "dist"))).toBe(distBefore);
  });

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

/** Every file under `dir` with its size and modification time ("" when there is no such directory). */
function listing(dir: string): string {
  let names: string[];
  try {
    names = readdirSync(dir, { recursive: true, encoding: "utf8" }).sort();
  } catch {
    return "";
  }
  return names
    .map((name) => {
      const st = statSync(join(dir, name));
      return `${name} ${st.size} ${st.mtimeMs}`;
    })
    .join("\n");
}
