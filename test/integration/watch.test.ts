import type { Etcd3 } from "etcd3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Session } from "../../src/index.js";
import { contextOf } from "../../src/session/context.js";
import { KeyWatch } from "../../src/etcd/key-watch.js";
import { faultsUnavailableReason, startEtcd, waitFor, type EtcdEnv } from "../support/index.js";

describe("the session's watch stream (under every waiter, holder and observer)", () => {
  let etcd: EtcdEnv;
  let client: Etcd3;

  beforeAll(async () => {
    etcd = await startEtcd();
    client = etcd.client();
  });
  afterAll(() => etcd?.close());

  it("a watch etcd cancels for compaction, sharing the stream with another, is re-made and asks for a re-read", async () => {
    const session = await Session.create(client, { ttl: 10 });
    const ctx = contextOf(session);
    try {
      const key = `${etcd.prefix()}k`;
      const otherSeen: string[] = [];
      const other = new KeyWatch(
        ctx,
        { key: `${key}-other` },
        { resyncMs: 60_000 },
        {
          event: (e) => otherSeen.push(e.value.toString()),
          resync: () => {},
        },
      );
      const first = await client.put(key).value("1").exec();
      const last = await client.put(key).value("2").exec();
      await client.kv.compact({ revision: last.header.revision, physical: true });
      const seen: string[] = [];
      const watch = new KeyWatch(
        ctx,
        { key },
        { startRevision: BigInt(first.header.revision), resyncMs: 60_000 },
        {
          event: (e) => seen.push(`${e.type}:${e.value.toString()}`),
          resync: () => seen.push("resync"),
          started: () => seen.push("started"),
        },
      );
      await waitFor(() => seen.includes("resync")); // it could not start where asked: the owner must read
      await client.put(key).value("after").exec();
      await client.put(`${key}-other`).value("still").exec();
      await waitFor(() => seen.includes("put:after") && otherSeen.includes("still"));
      watch.close();
      other.close();
      expect(ctx.watches.size).toBe(0);
    } finally {
      await session.close();
    }
  });

  it.skipIf(!!faultsUnavailableReason)(
    "a watch survives its stream being cut: it is made again and asks for a re-read",
    async () => {
      const member = etcd.members[0]!;
      const c = etcd.client();
      const session = await Session.create(c, { ttl: 10 });
      const ctx = contextOf(session);
      try {
        const key = `${etcd.prefix()}cut`;
        const seen: string[] = [];
        const watch = new KeyWatch(
          ctx,
          { key },
          { resyncMs: 60_000 },
          {
            event: (e) => seen.push(`${e.type}:${e.value.toString()}`),
            resync: () => seen.push("resync"),
            started: () => seen.push("started"),
          },
        );
        await waitFor(() => seen.includes("started"));
        member.clientProxy.cut();
        member.clientProxy.open();
        await waitFor(() => seen.includes("resync"), { timeoutMs: 10_000 });
        await client.put(key).value("after").exec();
        await waitFor(() => seen.includes("put:after"));
        watch.close();
      } finally {
        await session.close();
      }
    },
  );
});
