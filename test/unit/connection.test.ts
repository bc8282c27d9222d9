import { describe, expect, it } from "vitest";
import { silentLogger } from "../../src/common/logger.js";
import { Connection } from "../../src/etcd/connection.js";
import type { Etcd3Internals, Endpoint, GrpcMetadata } from "../../src/etcd/internals.js";

type Answer = Error | object;
const grpc = (code: number, details: string): Error =>
  Object.assign(new Error(`${code} ${details}`), { code, details });

/** etcd3 internals of `n` fake endpoints; each answers its calls from its own script, and records them. */
function fakeInternals(
  n: number,
  scripts: Answer[][],
): { etcd3: Etcd3Internals; calls: string[]; tokens: () => number } {
  const calls: string[] = [];
  let tokens = 0;
  const metadata: GrpcMetadata = { clone: () => metadata, set: () => {} };
  const endpoints = Array.from({ length: n }, (_, i): Endpoint => ({
    address: `e${i}`,
    newChannel: () => ({ close: () => {} }),
    service: () => ({
      close: () => {},
      txn: (_req: unknown, _md: unknown, _opts: unknown, done: (err: Error | null, res?: unknown) => void) => {
        calls.push(`e${i}`);
        const answer = scripts[i]?.shift() ?? grpc(14, "UNAVAILABLE: no script");
        setImmediate(() => (answer instanceof Error ? done(answer) : done(null, answer)));
        return { cancel: () => {} };
      },
    }),
  }));
  const etcd3: Etcd3Internals = {
    prefix: Buffer.alloc(0),
    endpoints,
    closed: () => false,
    metadata: async () => metadata,
    readyMetadata: () => undefined,
    invalidateToken: () => void tokens++,
  };
  return { etcd3, calls, tokens: () => tokens };
}

describe("the session's own channels", () => {
  it("an idempotent call moves on to the next endpoint after a transient failure, and that endpoint is preferred from then on", async () => {
    const { etcd3, calls } = fakeInternals(3, [[grpc(14, "UNAVAILABLE: down")], [{ ok: 1 }, { ok: 2 }], []]);
    const conn = new Connection(etcd3, silentLogger, 0);
    expect(await conn.call("KV", "txn", {}, { timeoutMs: 2000, idempotent: true, what: "t" })).toEqual({ ok: 1 });
    expect(await conn.call("KV", "txn", {}, { timeoutMs: 2000, idempotent: true, what: "t" })).toEqual({ ok: 2 });
    expect(calls).toEqual(["e0", "e1", "e1"]);
    expect(conn.endpoint.address).toBe("e1");
  });

  it("a call that is not idempotent is sent once: a transient failure is the caller's to judge", async () => {
    const { etcd3, calls } = fakeInternals(2, [[grpc(14, "UNAVAILABLE: down")], [{ ok: 1 }]]);
    const conn = new Connection(etcd3, silentLogger, 0);
    await expect(
      conn.call("KV", "txn", {}, { timeoutMs: 2000, idempotent: false, what: "user txn" }),
    ).rejects.toMatchObject({ code: "ETCD_UNAVAILABLE" });
    expect(calls).toEqual(["e0"]);
  });

  it("an expired token is fetched anew and the call sent again, once; a refusal etcd means is not retried", async () => {
    const { etcd3, calls, tokens } = fakeInternals(1, [
      [
        grpc(3, "INVALID_ARGUMENT: etcdserver: invalid auth token"),
        { ok: 1 },
        grpc(7, "PERMISSION_DENIED: etcdserver: permission denied"),
      ],
    ]);
    const conn = new Connection(etcd3, silentLogger, 0);
    expect(await conn.call("KV", "txn", {}, { timeoutMs: 2000, idempotent: true, what: "t" })).toEqual({ ok: 1 });
    expect(tokens()).toBe(1);
    await expect(conn.call("KV", "txn", {}, { timeoutMs: 2000, idempotent: true, what: "t" })).rejects.toMatchObject({
      code: "PERMISSION_DENIED",
    });
    expect(calls).toEqual(["e0", "e0", "e0"]);
  });

  it("a token issued before the auth store changed is fetched anew, and a transport failure is sent again", async () => {
    const { etcd3, calls, tokens } = fakeInternals(2, [
      [
        grpc(3, "INVALID_ARGUMENT: etcdserver: revision of auth store is old"),
        { ok: 1 },
        grpc(2, "UNKNOWN: Received HTTP status code 500"),
        { ok: 2 },
      ],
      [grpc(13, "INTERNAL: Received RST_STREAM with code 0 (Call ended without gRPC status)")],
    ]);
    const conn = new Connection(etcd3, silentLogger, 0);
    expect(await conn.call("KV", "txn", {}, { timeoutMs: 2000, idempotent: true, what: "t" })).toEqual({ ok: 1 });
    expect(tokens()).toBe(1);
    expect(await conn.call("KV", "txn", {}, { timeoutMs: 2000, idempotent: true, what: "t" })).toEqual({ ok: 2 });
    expect(calls).toEqual(["e0", "e0", "e0", "e1", "e0"]);
  });

  it("a failure reported for an endpoint that is no longer preferred does not move the preference back", () => {
    const { etcd3 } = fakeInternals(3, []);
    const conn = new Connection(etcd3, silentLogger, 0);
    const [e0, e1] = etcd3.endpoints;
    conn.failed(e0!);
    expect(conn.endpoint.address).toBe("e1");
    conn.failed(e0!); // a late report about e0
    expect(conn.endpoint.address).toBe("e1");
    conn.failed(e1!, { reset: true });
    expect(conn.endpoint.address).toBe("e2");
  });

  it("the call deadline bounds all attempts together", async () => {
    const { etcd3 } = fakeInternals(2, []); // every attempt fails: UNAVAILABLE
    const conn = new Connection(etcd3, silentLogger, 0);
    const started = performance.now();
    await expect(conn.call("KV", "txn", {}, { timeoutMs: 300, idempotent: true, what: "t" })).rejects.toMatchObject({
      code: "ETCD_UNAVAILABLE",
    });
    expect(performance.now() - started).toBeLessThan(300 + 200);
  });
});
