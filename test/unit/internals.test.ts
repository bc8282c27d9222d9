import { Etcd3 } from "etcd3";
import { describe, expect, it } from "vitest";
import { builderContents, etcd3Internals } from "../../src/etcd/internals.js";

/**
 * etcd-election reaches into etcd3 in one place (src/etcd/internals.ts). These tests fail loudly when the
 * installed etcd3 lacks what it uses, instead of the library silently working less well.
 */
describe("the door to etcd3's internals, on the installed etcd3", () => {
  const client = new Etcd3({ hosts: ["127.0.0.1:1", "127.0.0.1:2"] }); // never dialled

  it("a real client opens it: its prefix, endpoints, credentials and auth", async () => {
    const door = etcd3Internals(client);
    expect(door.prefix).toEqual(Buffer.alloc(0));
    expect(door.endpoints.map((e) => e.address)).toEqual(["127.0.0.1:1", "127.0.0.1:2"]);
    expect(door.closed()).toBe(false);
    expect(door.readyMetadata()).toBeUndefined(); // not asked yet
    expect(await door.metadata()).toBeDefined(); // no auth configured: empty metadata
    expect(door.readyMetadata()).toBeDefined(); // and from then on at once, without waiting
    expect(etcd3Internals(client.namespace("app/")).prefix.toString()).toBe("app/");
  });

  it("a client that authenticates never gets its metadata without asking etcd3 (the token may change)", async () => {
    const authed = new Etcd3({ hosts: ["127.0.0.1:1"], auth: { username: "u", password: "p" } });
    const door = etcd3Internals(authed);
    // As if etcd3 had fetched a token (this test dials nothing).
    const token = { clone: () => token };
    (
      authed as unknown as { pool: { authenticator: { getMetadata: () => Promise<unknown> } } }
    ).pool.authenticator.getMetadata = async () => token;
    expect(await door.metadata()).toBe(token);
    expect(door.readyMetadata()).toBeUndefined();
    authed.close();
  });

  it("our channels and service clients can be made with etcd3's own gRPC (no connection until used)", () => {
    const endpoint = etcd3Internals(client).endpoints[0]!;
    const channel = endpoint.newChannel();
    for (const [service, methods] of [
      ["KV", ["range", "txn"]],
      ["Lease", ["leaseGrant", "leaseRevoke", "leaseTimeToLive", "leaseKeepAlive"]],
      ["Watch", ["watch"]],
    ] as const) {
      const stub = endpoint.service(service, channel);
      for (const method of methods) expect(typeof stub[method], `${service}.${method}`).toBe("function");
      stub.close();
    }
    channel.close();
  });

  it("a transaction builder's comparisons and operations can be read back", async () => {
    const builder = client.if("k", "Create", "==", 7).then(client.put("x").value("1")).else(client.get("y"));
    const { compare, success, failure } = await builderContents(builder);
    expect(compare).toHaveLength(1);
    expect(success[0]).toHaveProperty("request_put");
    expect(failure[0]).toHaveProperty("request_range");
  });

  it("a client without what we use is refused, naming what it lacks", () => {
    expect(() => etcd3Internals({ prefix: Buffer.alloc(0), if: () => {} })).toThrow(/lacks pool.hosts/);
    expect(() => etcd3Internals(null)).toThrow(expect.objectContaining({ code: "INVALID_CLIENT" }));
  });

  it("closing the client is seen", () => {
    const c = new Etcd3({ hosts: "127.0.0.1:1" });
    const door = etcd3Internals(c);
    c.close();
    expect(door.closed()).toBe(true);
  });
});
