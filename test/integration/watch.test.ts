import type { Etcd3 } from "etcd3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KeyWatch } from "../../src/common/watch.js";
import { faultsUnavailableReason, startEtcd, waitFor, type EtcdEnv } from "../support/index.js";

describe("KeyWatch (the watch under every waiter, holder and observer)", () => {
  let etcd: EtcdEnv;
  let client: Etcd3;

  beforeAll(async () => {
    etcd = await startEtcd();
    client = etcd.client();
  });
  afterAll(() => etcd?.close());

  it("a watch etcd cancels for compaction, sharing the stream with another, is re-made and asks for a re-read", async () => {
    const key = `${etcd.prefix()}k`;
    const other = await client.watch().key(`${key}-other`).create(); // shares etcd3's one stream
    const first = await client.put(key).value("1").exec();
    const last = await client.put(key).value("2").exec();
    await client.kv.compact({ revision: last.header.revision, physical: true });
    const seen: string[] = [];
    const watch = new KeyWatch(client, { key }, BigInt(first.header.revision), 60_000, 5000, {
      event: (type, kv) => seen.push(`${type}:${kv.value.toString()}`),
      resync: () => seen.push("resync"),
    });
    try {
      await waitFor(() => seen.includes("resync"));
      await client.put(key).value("after").exec();
      await waitFor(() => seen.includes("put:after"));
    } finally {
      const started = Date.now();
      await watch.close();
      expect(Date.now() - started).toBeLessThan(5000 + 1000);
      await other.cancel();
    }
  });

  it.skipIf(!!faultsUnavailableReason)("close() does not wait for etcd longer than its cancel bound when the connection is black-holed", async () => {
    const member = etcd.members[0]!;
    const c = etcd.client();
    const key = `${etcd.prefix()}bh`;
    const seen: string[] = [];
    const watch = new KeyWatch(c, { key }, undefined, 60_000, 500, { event: (t) => seen.push(t), resync: () => {} });
    await c.put(key).value("x").exec();
    await waitFor(() => seen.length > 0);
    member.clientProxy.blackhole();
    try {
      const started = Date.now();
      await watch.close();
      expect(Date.now() - started).toBeLessThan(500 + 1000);
    } finally {
      member.clientProxy.open();
    }
  });
});
