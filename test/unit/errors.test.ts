import { once } from "node:events";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import * as grpcJs from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import {
  isInvalidToken,
  isLeaseExists,
  isLeaseNotFound,
  isPermissionDenied,
  isTransient,
  toElectionError,
} from "../../src/etcd/errors.js";
import { EtcdUnavailableError, WorkFailedError, isElectionError } from "../../src/index.js";

const grpc = (code: number, details: string): Error =>
  Object.assign(new Error(`${code} ${details}`), { code, details });

describe("failures from etcd become typed errors, the original kept as cause (design: Every failure is visible)", () => {
  it.each([
    [grpc(14, "UNAVAILABLE: No connection established"), "ETCD_UNAVAILABLE", true],
    [grpc(4, "DEADLINE_EXCEEDED: Deadline exceeded"), "ETCD_UNAVAILABLE", true],
    [grpc(14, "UNAVAILABLE: etcdserver: leader changed"), "ETCD_UNAVAILABLE", true],
    [grpc(8, "RESOURCE_EXHAUSTED: etcdserver: too many requests"), "ETCD_UNAVAILABLE", true],
    // etcd 3.4 answers so when a linearizable read waits past the call's deadline (seen by test/chaos).
    [grpc(2, "UNKNOWN: context deadline exceeded"), "ETCD_UNAVAILABLE", true],
    [grpc(2, "UNKNOWN: rangeKeys: context cancelled: context deadline exceeded"), "ETCD_UNAVAILABLE", true],
    [grpc(7, "PERMISSION_DENIED: etcdserver: permission denied"), "PERMISSION_DENIED", false],
    [grpc(3, "INVALID_ARGUMENT: etcdserver: authentication failed, invalid user ID or password"), "AUTH_FAILED", false],
    [grpc(3, "INVALID_ARGUMENT: etcdserver: request is too large"), "REQUEST_TOO_LARGE", false],
    [grpc(8, "RESOURCE_EXHAUSTED: Received message larger than max (2097182 vs. 2097152)"), "REQUEST_TOO_LARGE", false],
    // The transport failed, not etcd: a stream reset without a gRPC status, a proxy's HTTP 500.
    [grpc(13, "INTERNAL: Received RST_STREAM with code 0 (Call ended without gRPC status)"), "ETCD_UNAVAILABLE", true],
    [grpc(13, "INTERNAL: Received RST_STREAM with code 2 (Internal server error)"), "ETCD_UNAVAILABLE", true],
    [grpc(2, "UNKNOWN: Received HTTP status code 500"), "ETCD_UNAVAILABLE", true],
    [grpc(13, "INTERNAL: Received HTTP status code 400"), "ETCD_ERROR", false],
    [grpc(9, "FAILED_PRECONDITION: etcdserver: something odd"), "ETCD_ERROR", false],
  ])("%s -> %s", (raw, code, transient) => {
    const err = toElectionError(raw, "a call");
    expect(err.code).toBe(code);
    expect(err.message).toContain("a call");
    expect(err.cause).toBeInstanceOf(Error);
    expect(isTransient(err)).toBe(transient);
  });

  it("an expired token is told apart: the request was refused before it was applied", () => {
    expect(isInvalidToken(grpc(3, "INVALID_ARGUMENT: etcdserver: invalid auth token"))).toBe(true);
    // A JWT issued before the auth store changed (a user or role added): a fresh token cures it.
    expect(isInvalidToken(grpc(3, "INVALID_ARGUMENT: etcdserver: revision of auth store is old"))).toBe(true);
    expect(isInvalidToken(grpc(7, "PERMISSION_DENIED: etcdserver: permission denied"))).toBe(false);
  });
});

describe("a transport failure as grpc-js reports it is transient: the call is sent again", () => {
  it.each([
    [
      "a proxy's HTTP 500",
      (stream: http2.ServerHttp2Stream) => stream.respond({ ":status": 500 }, { endStream: true }),
    ],
    [
      "a stream reset without a gRPC status",
      (stream: http2.ServerHttp2Stream) => stream.close(http2.constants.NGHTTP2_NO_ERROR),
    ],
    [
      "a stream reset with an internal error",
      (stream: http2.ServerHttp2Stream) => stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR),
    ],
  ])("%s", async (_, answer) => {
    const server = http2.createServer();
    server.on("stream", (stream) => {
      stream.on("error", () => {}); // the reset we send
      answer(stream);
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const client = new grpcJs.Client(
      `127.0.0.1:${(server.address() as AddressInfo).port}`,
      grpcJs.credentials.createInsecure(),
    );
    try {
      const raw = await new Promise<unknown>((resolve) => {
        client.makeUnaryRequest(
          "/etcdserverpb.KV/Range",
          (b: Buffer) => b,
          (b: Buffer) => b,
          Buffer.alloc(0),
          (err) => resolve(err),
        );
      });
      expect(raw).toBeInstanceOf(Error);
      const err = toElectionError(raw, "range");
      expect(err.code).toBe("ETCD_UNAVAILABLE");
      expect(isTransient(err)).toBe(true);
    } finally {
      client.close();
      server.close();
    }
  });
});

describe("grpc-js's own INTERNAL failures on our side are not transient: sending again cannot cure them", () => {
  it.each([
    ["a request that cannot be serialized", (b: Buffer) => b, true],
    ["a response that cannot be parsed (a proxy answering garbage, a proto mismatch)", (b: Buffer) => b, false],
  ])("%s", async (_, __, failSerialize) => {
    const server = http2.createServer();
    server.on("stream", (stream) => {
      stream.on("error", () => {});
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      stream.end(Buffer.from([0, 0, 0, 0, 1, 7])); // one uncompressed message of one byte
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const client = new grpcJs.Client(
      `127.0.0.1:${(server.address() as AddressInfo).port}`,
      grpcJs.credentials.createInsecure(),
    );
    const refuse = (): never => {
      throw new Error("invalid wire type 7");
    };
    try {
      const raw = await new Promise<unknown>((resolve) => {
        client.makeUnaryRequest(
          "/etcdserverpb.KV/Range",
          failSerialize ? refuse : (b: Buffer) => b,
          failSerialize ? (b: Buffer) => b : refuse,
          Buffer.alloc(0),
          (err) => resolve(err),
        );
      });
      expect((raw as { code?: number }).code).toBe(grpcJs.status.INTERNAL);
      const err = toElectionError(raw, "range");
      expect(err.code).toBe("ETCD_ERROR");
      expect(isTransient(raw)).toBe(false);
      expect(isTransient(err)).toBe(false);
    } finally {
      client.close();
      server.close();
    }
  });
});

describe("TLS handshake failures are AUTH_FAILED: no retry changes a certificate", () => {
  it.each([
    "14 UNAVAILABLE: No connection established. Last error: 801C...:SSL routines:ssl3_read_bytes:tlsv1 alert unknown ca:...:SSL alert number 48",
    "14 UNAVAILABLE: No connection established. Last error: ...:tlsv13 alert certificate required:...:SSL alert number 116",
    "14 UNAVAILABLE: No connection established. Last error: Error: unable to verify the first certificate",
  ])("%s", (details) => {
    expect(toElectionError(grpc(14, details), "grant lease")).toMatchObject({
      code: "AUTH_FAILED",
      message: expect.stringMatching(/TLS handshake/),
    });
  });
});

describe("errors are judged by code, whichever build made them (ESM and CJS each carry their own classes)", () => {
  /** What the other build's EtcdUnavailableError looks like here: another class, the same code. */
  class ForeignError extends Error {
    constructor(
      readonly code: string,
      message: string,
    ) {
      super(message);
    }
  }

  it("isElectionError tells by code, with or without the code asked for; other errors with a string code are not", () => {
    const foreign = new ForeignError("ETCD_UNAVAILABLE", "leave: no answer from etcd within 1000 ms");
    expect(isElectionError(foreign)).toBe(true);
    expect(isElectionError(foreign, "ETCD_UNAVAILABLE")).toBe(true);
    expect(isElectionError(foreign, "LOCK_LOST")).toBe(false);
    expect(isElectionError(new WorkFailedError(new Error("boom")), "WORK_FAILED")).toBe(true);
    expect(isElectionError(Object.assign(new Error("reset"), { code: "ECONNRESET" }))).toBe(false);
    expect(isElectionError({ code: "ETCD_UNAVAILABLE", message: "not an Error" })).toBe(false);
    expect(isElectionError(undefined)).toBe(false);
  });

  it("another build's ETCD_UNAVAILABLE is transient and another build's error keeps its code, whatever its message says", () => {
    const unavailable = new ForeignError("ETCD_UNAVAILABLE", "leave: no answer from etcd within 1000 ms");
    expect(isTransient(unavailable)).toBe(true);
    expect(toElectionError(unavailable, "a call")).toBe(unavailable);
    const conflict = new ForeignError("NAME_CONFLICT", '"jobs" is already used through this session as a mutex');
    expect(toElectionError(conflict, "a call")).toBe(conflict);
    expect(isTransient(conflict)).toBe(false);
  });

  it("WorkFailedError is public: code WORK_FAILED, the thrown value as cause", () => {
    const thrown = new Error("boom");
    expect(new WorkFailedError(thrown, "onNewLeader")).toMatchObject({
      code: "WORK_FAILED",
      name: "WorkFailedError",
      message: "onNewLeader threw: boom",
      cause: thrown,
    });
  });
});

describe("etcd's refusals are told apart by named predicates, on raw errors, typed ones and cancel reasons", () => {
  const exists = grpc(9, "FAILED_PRECONDITION: etcdserver: lease already exists");
  const notFound = grpc(5, "NOT_FOUND: etcdserver: requested lease not found");
  const denied = grpc(7, "PERMISSION_DENIED: etcdserver: permission denied");

  it("a lease id taken", () => {
    expect(isLeaseExists(exists)).toBe(true);
    expect(isLeaseExists(toElectionError(exists, "grant lease"))).toBe(true);
    expect(isLeaseExists(notFound)).toBe(false);
  });

  it("a lease that is gone", () => {
    expect(isLeaseNotFound(notFound)).toBe(true);
    expect(isLeaseNotFound(toElectionError(notFound, "txn"))).toBe(true);
    expect(isLeaseNotFound(exists)).toBe(false);
  });

  it("a key name that contains etcd's phrase is not etcd saying it: a timeout on such a name is no lost lease", () => {
    const timeout = new EtcdUnavailableError(
      'join the queue of "billing/Lease not found alerts": no answer from etcd within 1000 ms',
    );
    expect(isLeaseNotFound(timeout)).toBe(false);
    const refused = toElectionError(grpc(4, "DEADLINE_EXCEEDED: Deadline exceeded"), 'remove "x/lease already exists"');
    expect(isLeaseExists(refused)).toBe(false);
  });

  it("no permission, as an error or as a watch's cancel reason", () => {
    expect(isPermissionDenied(denied)).toBe(true);
    expect(isPermissionDenied("etcdserver: permission denied")).toBe(true);
    expect(isPermissionDenied("etcdserver: mvcc: required revision has been compacted")).toBe(false);
    expect(isPermissionDenied(notFound)).toBe(false);
  });
});
