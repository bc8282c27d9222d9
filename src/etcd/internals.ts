/**
 * The one door to etcd3's non-public API. Checked against etcd3 1.1.2; every use is named here, and
 * `etcd3Internals()` fails loudly (InvalidClientError naming what is missing) when the installed etcd3 lacks
 * one, instead of silently working less well. Nothing else in the library reaches into etcd3.
 *
 * What we take from the user's client, and why:
 * - `prefix` (Namespace): the key prefix of `client.namespace(...)`, applied by us to every key.
 * - `pool.hosts[]` (Host): each endpoint's address (`host`), TLS credentials (`channelCredentials`) and
 *   gRPC options (`channelOptions`), so our own channels reach etcd exactly as the user's do; `closed`
 *   tells that the user closed the client.
 * - `Host.getServiceClient(name)`: a service client of the user's copy of gRPC, whose constructor (and its
 *   channel's) build our channels, so credentials made by that copy are accepted.
 * - `pool.authenticator.getMetadata()` / `invalidateMetadata()`: the auth token the client obtained with
 *   the user's username and password, shared with the user's calls, and refreshed when etcd says expired.
 *   `pool.authenticator.options.auth`: whether the client authenticates at all; when it does not, its
 *   metadata is always empty, so we keep the first one and calls need not wait for it.
 * - ComparatorBuilder's `request` and `callOptions`: the comparisons and operations a user put on the
 *   builder `txn()` hands out, so we can nest them under our guard.
 *
 * Why our own channels at all: etcd3's per-endpoint circuit breaker would fail our keepalives for 5 s
 * after a blip, its channel resets would close the user's channels when we replace a stalled stream, and
 * its watch manager starts timers that outlive `client.close()`. Our RPCs go through channels the
 * session owns and closes (see connection.ts).
 */
import type { ComparatorBuilder, ICompare, IRequestOp } from "etcd3";
import { ClientClosedError, InvalidClientError } from "../errors.js";

/** The part of @grpc/grpc-js's Metadata we use. */
export interface GrpcMetadata {
  clone(): GrpcMetadata;
  set(key: string, value: string): void;
}

/** A duplex gRPC stream (LeaseKeepAlive, Watch). */
export interface GrpcDuplex<Req, Res> {
  write(req: Req): boolean;
  on(event: "data", fn: (res: Res) => void): this;
  on(event: "error", fn: (err: Error) => void): this;
  on(event: "end" | "close", fn: () => void): this;
  removeAllListeners(): this;
  cancel(): void;
  end(): void;
}

type UnaryCallback = (err: Error | null, res: unknown) => void;

/** A gRPC service client as @grpc/grpc-js generates it from etcd's rpc.proto. */
export interface GrpcServiceClient {
  close(): void;
  [method: string]: unknown;
}

/** gRPC's channel, as far as we use it. */
export interface GrpcChannel {
  close(): void;
}

/** One endpoint of the user's client. */
export interface Endpoint {
  /** "host:port" */
  readonly address: string;
  /** A fresh channel to this endpoint, with the user's credentials and options, its own TCP connection. */
  newChannel(): GrpcChannel;
  /** A client of `service` ("KV", "Lease", "Watch") on `channel`. */
  service(name: ServiceName, channel: GrpcChannel): GrpcServiceClient;
}

export type ServiceName = "KV" | "Lease" | "Watch";

/** What the library needs of the user's etcd3 client. */
export interface Etcd3Internals {
  /** The namespace prefix (empty for a plain client). */
  readonly prefix: Buffer;
  readonly endpoints: readonly Endpoint[];
  /** The user closed the client: nothing of ours may go on using it. */
  closed(): boolean;
  /** Call metadata: the auth token when the client authenticates, else empty. */
  metadata(): Promise<GrpcMetadata>;
  /**
   * The metadata at once, when there is nothing to wait for (a client without auth, once `metadata()`
   * answered); else undefined.
   */
  readyMetadata(): GrpcMetadata | undefined;
  /** etcd said the token is invalid (expired): the next metadata() fetches a new one. */
  invalidateToken(): void;
}

interface Etcd3Host {
  host: string;
  closed: boolean;
  channelCredentials: unknown;
  channelOptions: Record<string, unknown> | undefined;
  getServiceClient(name: string): {
    constructor: new (...args: unknown[]) => GrpcServiceClient;
    getChannel(): { constructor: new (...args: unknown[]) => GrpcChannel };
  };
}

interface Etcd3Pool {
  hosts: Etcd3Host[];
  authenticator: { getMetadata(): Promise<GrpcMetadata>; invalidateMetadata(): void; options: { auth?: unknown } };
}

const checked = new WeakMap<object, Etcd3Internals>();

/** etcd3's internals in `client`, checked once per client; throws InvalidClientError naming what is missing. */
export function etcd3Internals(client: unknown): Etcd3Internals {
  if (client === null || typeof client !== "object")
    throw new InvalidClientError("expected an etcd3 client (new Etcd3(...)) or a namespace of one");
  const known = checked.get(client);
  if (known) return known;
  const c = client as { prefix?: unknown; pool?: Partial<Etcd3Pool>; if?: unknown; watch?: unknown };
  const missing: string[] = [];
  if (!Buffer.isBuffer(c.prefix)) missing.push("prefix");
  if (typeof c.if !== "function") missing.push("if()");
  const pool = c.pool;
  if (!pool || !Array.isArray(pool.hosts) || pool.hosts.length === 0) missing.push("pool.hosts");
  const authenticator = pool?.authenticator;
  if (
    typeof authenticator?.getMetadata !== "function" ||
    typeof authenticator.invalidateMetadata !== "function" ||
    authenticator.options === null ||
    typeof authenticator.options !== "object"
  ) {
    missing.push("pool.authenticator");
  }
  for (const h of pool?.hosts ?? []) {
    if (
      typeof h.host !== "string" ||
      typeof h.getServiceClient !== "function" ||
      typeof h.closed !== "boolean" ||
      !h.channelCredentials
    ) {
      missing.push("pool.hosts[].{host,closed,channelCredentials,getServiceClient}");
      break;
    }
  }
  if (missing.length > 0) {
    throw new InvalidClientError(
      `expected an etcd3 ~1.1 client (new Etcd3(...)) or a namespace of one; this one lacks ${missing.join(", ")} ` +
        "(etcd-election reaches these etcd3 internals, checked against etcd3 1.1.2)",
    );
  }
  const internals = readInternals(c.prefix as Buffer, pool as Etcd3Pool);
  checked.set(client, internals);
  return internals;
}

function readInternals(prefix: Buffer, pool: Etcd3Pool): Etcd3Internals {
  const endpoints = pool.hosts.map((host): Endpoint => {
    // Built on first use: asking etcd3 for a service client creates it in the user's pool (idle, no
    // connection until the user calls), which etcd3 would do on the user's first call anyway.
    let ctors:
      | {
          service: Map<ServiceName, new (...args: unknown[]) => GrpcServiceClient>;
          channel: new (...args: unknown[]) => GrpcChannel;
        }
      | undefined;
    const constructors = (
      name: ServiceName,
    ): { service: new (...args: unknown[]) => GrpcServiceClient; channel: new (...args: unknown[]) => GrpcChannel } => {
      if (host.closed) throw new ClientClosedError();
      const sample = host.getServiceClient(name);
      ctors ??= { service: new Map(), channel: sample.getChannel().constructor };
      if (!ctors.service.has(name)) ctors.service.set(name, sample.constructor);
      return { service: ctors.service.get(name)!, channel: ctors.channel };
    };
    return {
      address: host.host,
      newChannel: () => {
        const { channel } = constructors("KV");
        // A local subchannel pool: our own TCP connection, which we may reset without touching the user's.
        return new channel(host.host, host.channelCredentials, {
          ...host.channelOptions,
          "grpc.use_local_subchannel_pool": 1,
        });
      },
      service: (name, channel) =>
        new (constructors(name).service)(host.host, host.channelCredentials, { channelOverride: channel }),
    };
  });
  // Without auth, etcd3 answers every call with a new empty Metadata: the first one serves for all.
  const authenticates = Boolean(pool.authenticator.options.auth);
  let plain: GrpcMetadata | undefined;
  return {
    prefix,
    endpoints,
    closed: () => pool.hosts.every((h) => h.closed),
    metadata: async () => {
      const metadata = await pool.authenticator.getMetadata();
      if (!authenticates) plain ??= metadata.clone();
      return metadata;
    },
    readyMetadata: () => plain?.clone(),
    invalidateToken: () => pool.authenticator.invalidateMetadata(),
  };
}

/** Unary call on a generated client: `client[method](req, metadata, options, callback)`. */
export function unary(
  client: GrpcServiceClient,
  method: string,
  req: object,
  metadata: GrpcMetadata,
  deadline: Date,
  done: UnaryCallback,
): { cancel(): void } {
  const fn = client[method] as ((...args: unknown[]) => { cancel(): void }) | undefined;
  if (typeof fn !== "function") throw new InvalidClientError(`etcd3's gRPC client has no method ${method}`);
  return fn.call(client, req, metadata, { deadline }, done);
}

/** Duplex call on a generated client: `client[method](metadata, options)`. */
export function duplex<Req, Res>(
  client: GrpcServiceClient,
  method: string,
  metadata: GrpcMetadata,
): GrpcDuplex<Req, Res> {
  const fn = client[method] as ((...args: unknown[]) => GrpcDuplex<Req, Res>) | undefined;
  if (typeof fn !== "function") throw new InvalidClientError(`etcd3's gRPC client has no method ${method}`);
  return fn.call(client, metadata, {});
}

/** The comparisons and operations a user added to a ComparatorBuilder, and the call options they set. */
export async function builderContents(builder: ComparatorBuilder): Promise<{
  compare: ICompare[];
  success: IRequestOp[];
  failure: IRequestOp[];
  callOptions: { deadline?: Date | number } | undefined;
}> {
  const b = builder as unknown as {
    request?: { compare: Promise<ICompare>[]; success: Promise<IRequestOp>[]; failure: Promise<IRequestOp>[] };
    callOptions?: { deadline?: Date | number };
  };
  if (!b.request || !Array.isArray(b.request.compare)) {
    throw new InvalidClientError(
      "etcd3's ComparatorBuilder has no request (etcd-election reaches it, checked against etcd3 1.1.2)",
    );
  }
  return {
    compare: await Promise.all(b.request.compare),
    success: await Promise.all(b.request.success),
    failure: await Promise.all(b.request.failure),
    callOptions: b.callOptions,
  };
}
