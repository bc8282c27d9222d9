import { ClientClosedError, EtcdUnavailableError } from "../errors.js";
import { sleep } from "../common/abort.js";
import { Backoff, callRetry } from "../common/backoff.js";
import { now, timerIn, type Timer } from "../common/clock.js";
import type { Logger } from "../common/logger.js";
import { isInvalidToken, isTransient, toElectionError } from "./errors.js";
import {
  duplex,
  unary,
  type Etcd3Internals,
  type Endpoint,
  type GrpcChannel,
  type GrpcDuplex,
  type GrpcMetadata,
  type GrpcServiceClient,
  type ServiceName,
} from "./internals.js";

export interface CallOptions {
  /** The whole call, all attempts together, ends within this. */
  timeoutMs: number;
  /**
   * Safe to send more than once (every write of ours is: put-if-absent, guarded deletes, a grant with our
   * own lease id). An idempotent call gets half its time per attempt and moves on to the next member
   * after a failure; any other call is sent once, with the whole deadline.
   */
  idempotent: boolean;
  /** Names the call in errors and logs. */
  what: string;
  /**
   * Send it to this member only, once (a read at a revision that member has applied): no other member, no
   * retry; a failure is the caller's to handle (it falls back to a read anywhere).
   */
  endpoint?: Endpoint | undefined;
  /** A member that has no raft leader refuses it ("etcdserver: no leader"), as a require-leader stream. */
  requireLeader?: boolean;
}

/** Our channel to one endpoint, the service clients made on it, and the streams open on it. */
interface EndpointChannel {
  channel: GrpcChannel;
  clients: Map<ServiceName, GrpcServiceClient>;
  /** Streams open on the channel: grpc-js closes a channel gracefully, leaving them (and the socket) up. */
  streams: Set<GrpcDuplex<unknown, unknown>>;
}

/** The set of open streams each stream of ours is in, so `abandonStream()` can take it out. */
const openStreams = new WeakMap<GrpcDuplex<unknown, unknown>, Set<GrpcDuplex<unknown, unknown>>>();

/** Ends a stream we no longer listen to, swallowing its late errors. */
export function abandonStream(stream: GrpcDuplex<unknown, unknown>): void {
  openStreams.get(stream)?.delete(stream);
  stream.removeAllListeners();
  stream.on("error", () => {});
  stream.cancel();
}

/**
 * The session's own channels to etcd: one per endpoint, made lazily with the user's credentials and
 * options, each on its own TCP connection. No client-side circuit breaker stands between a blip and
 * the keepalives (a blip shorter than the session's deadline never loses the session), resetting our
 * channel never touches the user's, and close() leaves no handle behind (design: Talking to etcd;
 * Every call has a deadline).
 */
export class Connection {
  readonly #etcd3: Etcd3Internals;
  readonly #logger: Logger;
  readonly #channels = new Map<Endpoint, EndpointChannel>();
  /** Starts at a random endpoint, as etcd3 shuffles its hosts: sessions spread over the members. */
  #preferred: number;
  #closed = false;
  /** When (monotonic) a keepalive was last acknowledged through each endpoint: the member answers us. */
  readonly #ackedAt = new Map<Endpoint, number>();

  constructor(etcd3: Etcd3Internals, logger: Logger, first = Math.floor(Math.random() * etcd3.endpoints.length)) {
    this.#etcd3 = etcd3;
    this.#logger = logger;
    this.#preferred = first;
  }

  /** The user closed their client (or we were closed): nothing more can be sent. */
  get closed(): boolean {
    if (!this.#closed && this.#etcd3.closed()) this.close();
    return this.#closed;
  }

  /** The endpoint calls and streams go to now. */
  get endpoint(): Endpoint {
    return this.#etcd3.endpoints[this.#preferred % this.#etcd3.endpoints.length]!;
  }

  /** A unary call, with deadlines per attempt and in all; rejects with an ElectionError. */
  async call<Res>(service: ServiceName, method: string, req: object, options: CallOptions): Promise<Res> {
    const end = now() + options.timeoutMs;
    const backoff = new Backoff(callRetry);
    let tokenRefreshed = false;
    for (;;) {
      const endpoint = options.endpoint ?? this.endpoint;
      try {
        const left = end - now();
        if (left <= 0)
          throw new EtcdUnavailableError(`${options.what}: no answer from etcd within ${options.timeoutMs} ms`);
        const attemptMs = options.idempotent ? Math.min(left, options.timeoutMs / 2) : left;
        let metadata = this.#etcd3.readyMetadata() ?? (await this.#metadata(attemptMs, options.what));
        if (options.requireLeader) {
          metadata = metadata.clone(); // etcd3 shares its metadata with the user's calls
          metadata.set("hasleader", "true");
        }
        return await this.#unary<Res>(endpoint, service, method, req, metadata, attemptMs);
      } catch (raw) {
        if (this.closed) throw new ClientClosedError(`${options.what}: the etcd3 client was closed`, { cause: raw });
        if (isInvalidToken(raw) && !tokenRefreshed) {
          // etcd refused the request before applying it: safe to send again with a fresh token.
          tokenRefreshed = true;
          this.#etcd3.invalidateToken();
          continue;
        }
        const err = toElectionError(raw, options.what);
        if (!isTransient(err) || options.endpoint) throw err;
        this.failed(endpoint);
        const delay = backoff.next();
        if (!options.idempotent || now() + delay >= end) throw err;
        this.#logger.warn(
          { err, endpoint: endpoint.address },
          `${options.what}: failed; sending it again to ${this.endpoint.address}`,
        );
        await sleep(delay);
      }
    }
  }

  /**
   * Opens a duplex stream on the preferred endpoint; rejects with an ElectionError. Its owner ends it with
   * `abandonStream()`. With `requireLeader`, a member that has no raft leader refuses it, and cancels it once it
   * lost its leader (etcd's require-leader, clientv3.WithRequireLeader).
   */
  async stream<Req, Res>(
    service: ServiceName,
    method: string,
    timeoutMs: number,
    options: { requireLeader?: boolean } = {},
  ): Promise<{ stream: GrpcDuplex<Req, Res>; endpoint: Endpoint }> {
    const endpoint = this.endpoint;
    try {
      let metadata = await this.#metadata(timeoutMs, `open ${method} stream`);
      if (options.requireLeader) {
        metadata = metadata.clone(); // etcd3 shares its metadata with the user's calls
        metadata.set("hasleader", "true");
      }
      const client = this.#client(endpoint, service);
      const stream = duplex<Req, Res>(client, method, metadata);
      const open = this.#channels.get(endpoint)!.streams;
      open.add(stream);
      openStreams.set(stream, open);
      return { stream, endpoint };
    } catch (raw) {
      if (this.closed)
        throw new ClientClosedError(`open ${method} stream: the etcd3 client was closed`, { cause: raw });
      throw toElectionError(raw, `open ${method} stream`);
    }
  }

  /**
   * `endpoint` failed us: prefer the next one. With `reset`, also drop our channel to it (a stream that
   * stays open but silent means the connection is bad): the next call dials afresh.
   */
  failed(endpoint: Endpoint, options: { reset?: boolean } = {}): void {
    if (this.endpoint === endpoint) this.#preferred = (this.#preferred + 1) % this.#etcd3.endpoints.length;
    if (options.reset) this.#drop(endpoint);
  }

  /** A keepalive was acknowledged through `endpoint`: our channel to it works. */
  acked(endpoint: Endpoint): void {
    this.#ackedAt.set(endpoint, now());
  }

  /** When a keepalive was last acknowledged through `endpoint` (monotonic ms), if ever. */
  ackedAt(endpoint: Endpoint): number | undefined {
    return this.#ackedAt.get(endpoint);
  }

  /** etcd refused our token (it expired): the next call or stream fetches a new one. */
  refreshToken(): void {
    this.#etcd3.invalidateToken();
  }

  /** Closes every channel of ours. Idempotent. */
  close(): void {
    this.#closed = true;
    for (const endpoint of [...this.#channels.keys()]) this.#drop(endpoint);
  }

  /** The auth token, within the attempt's time: etcd3 fetches it, and a black-holed fetch must not hang us. */
  async #metadata(timeoutMs: number, what: string): Promise<GrpcMetadata> {
    if (this.closed) throw new ClientClosedError(`${what}: the etcd3 client was closed`);
    let timer: Timer | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = timerIn(timeoutMs, () => {
        this.#etcd3.invalidateToken(); // the next attempt asks again instead of waiting on this one
        reject(new EtcdUnavailableError(`${what}: no auth token from etcd within ${Math.round(timeoutMs)} ms`));
      });
    });
    try {
      return await Promise.race([this.#etcd3.metadata(), timeout]);
    } finally {
      timer?.cancel();
    }
  }

  #unary<Res>(
    endpoint: Endpoint,
    service: ServiceName,
    method: string,
    req: object,
    metadata: GrpcMetadata,
    timeoutMs: number,
  ): Promise<Res> {
    const client = this.#client(endpoint, service);
    return new Promise<Res>((resolve, reject) => {
      unary(client, method, req, metadata, new Date(Date.now() + timeoutMs), (err, res) =>
        err ? reject(err) : resolve(res as Res),
      );
    });
  }

  #client(endpoint: Endpoint, service: ServiceName): GrpcServiceClient {
    if (this.closed) throw new ClientClosedError();
    let open = this.#channels.get(endpoint);
    if (!open) {
      open = { channel: endpoint.newChannel(), clients: new Map(), streams: new Set() };
      this.#channels.set(endpoint, open);
    }
    let client = open.clients.get(service);
    if (!client) {
      client = endpoint.service(service, open.channel);
      open.clients.set(service, client);
    }
    return client;
  }

  #drop(endpoint: Endpoint): void {
    const open = this.#channels.get(endpoint);
    if (!open) return;
    this.#channels.delete(endpoint);
    // grpc-js closes a channel gracefully: open streams would keep it (and the process) alive. Cancel
    // them; their owners see CANCELLED and open anew (on another endpoint) or stop.
    for (const stream of [...open.streams]) stream.cancel();
    open.streams.clear();
    open.channel.close(); // unary calls on it end with their deadlines
  }
}
