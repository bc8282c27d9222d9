import type { EtcdClient } from "./common/client.js";
import { now, timerIn, type Timer } from "./common/clock.js";

/** The raw gRPC duplex stream of LeaseKeepAlive, as etcd3's RPC layer returns it. */
export interface KeepAliveStream {
  write(req: { ID: string }): unknown;
  on(event: "data", fn: (res: { ID: string; TTL: string }) => void): unknown;
  on(event: "error" | "end" | "close", fn: (err?: unknown) => void): unknown;
  removeAllListeners(): unknown;
  cancel?(): void;
  end?(): void;
}

/** etcd3's per-endpoint Host inside its connection pool (internal, used when present). */
interface PoolHost {
  /** "host:port" */
  host?: string;
  /** Set once the client was closed. */
  closed?: boolean;
  resetAllServices?(): void;
}
interface Pool {
  hosts: PoolHost[];
  withConnection<T>(
    service: string,
    fn: (conn: { resource: PoolHost; client: { leaseKeepAlive(metadata: unknown, options: object): KeepAliveStream }; metadata: unknown }) => T,
    hosts?: Iterator<PoolHost>,
  ): Promise<T>;
  markFailed(resource: PoolHost, error: unknown): void;
}

export interface KeepAliveHandlers {
  /** A response arrived for the request written at monotonic time `sentAt`. */
  ack(sentAt: number, ttl: number): void;
  /** The stream could not be opened, errored or ended. */
  failed(): void;
}

/**
 * One LeaseKeepAlive stream at a time for one lease. Responses come back in request order, so a
 * FIFO of send times tells which request each response acknowledges.
 */
export class KeepAliveChannel {
  readonly #client: EtcdClient;
  readonly #leaseId: string;
  readonly #handlers: KeepAliveHandlers;
  readonly #pool: Pool | undefined;
  #stream: KeepAliveStream | undefined;
  #host: PoolHost | undefined;
  #avoid: PoolHost | undefined;
  #opening = false;
  #closed = false;
  #pending: number[] = [];
  #stallTimer: Timer | undefined;
  #stall: { timeoutMs: number; onStall: () => void } | undefined;

  constructor(client: EtcdClient, leaseId: string, handlers: KeepAliveHandlers) {
    this.#client = client;
    this.#leaseId = leaseId;
    this.#handlers = handlers;
    const pool = (client as unknown as { pool?: Partial<Pool> }).pool;
    this.#pool = pool && typeof pool.withConnection === "function" && Array.isArray(pool.hosts) ? (pool as Pool) : undefined;
  }

  /**
   * Whether the user closed their client. gRPC lets a stream opened before `client.close()` live on, so
   * without this a session would keep its lease alive through a closed client.
   */
  get clientClosed(): boolean {
    return !!this.#pool && this.#pool.hosts.length > 0 && this.#pool.hosts.every((h) => h.closed === true);
  }

  /** The endpoint ("host:port") of the current stream, when known. */
  get endpoint(): string | undefined {
    return this.#stream ? this.#host?.host : undefined;
  }

  /** Sends one keepalive (opening a stream first if needed); `onStall` fires if it goes unanswered. */
  send(ackTimeoutMs: number, onStall: () => void): void {
    if (this.#closed) return;
    this.#stall = { timeoutMs: ackTimeoutMs, onStall };
    if (this.#stream) this.#write();
    else if (!this.#opening) void this.#open();
  }

  /** Drops the current stream; with `avoidHost`, the next one prefers another endpoint. */
  replace(avoidHost: boolean): void {
    const host = this.#host;
    this.#drop();
    if (!avoidHost || !host) return;
    this.#avoid = host;
    // With one endpoint there is nowhere else to go: force a fresh connection instead.
    if (this.#pool && this.#pool.hosts.length === 1) host.resetAllServices?.();
  }

  close(): void {
    this.#closed = true;
    this.#drop();
  }

  async #open(): Promise<void> {
    this.#opening = true;
    try {
      const stream = await this.#connect();
      if (this.#closed) {
        quiet(stream);
        return;
      }
      this.#stream = stream;
      stream.on("data", (res) => this.#onData(res));
      const fail = (err?: unknown): void => {
        if (this.#stream !== stream) return;
        if (err && this.#pool && this.#host) this.#pool.markFailed(this.#host, err);
        // Whatever broke this stream may break the next one there too: prefer another endpoint.
        this.#avoid = this.#host;
        this.#drop();
        this.#handlers.failed();
      };
      stream.on("error", fail);
      stream.on("end", fail);
      stream.on("close", fail);
      this.#write();
    } catch {
      if (!this.#closed) this.#handlers.failed();
    } finally {
      this.#opening = false;
    }
  }

  #connect(): Promise<KeepAliveStream> {
    const pool = this.#pool;
    if (!pool) return this.#client.leaseClient.leaseKeepAlive() as unknown as Promise<KeepAliveStream>;
    return pool.withConnection(
      "Lease",
      ({ resource, client, metadata }) => {
        this.#host = resource;
        return client.leaseKeepAlive(metadata, {});
      },
      preferring(pool.hosts, this.#avoid),
    );
  }

  #write(): void {
    const stream = this.#stream;
    if (!stream) return;
    this.#pending.push(now());
    stream.write({ ID: this.#leaseId });
    this.#armStall();
  }

  #onData(res: { ID: string; TTL: string }): void {
    const sentAt = this.#pending.shift();
    if (sentAt === undefined) return;
    this.#stallTimer?.cancel();
    this.#stallTimer = undefined;
    this.#armStall();
    this.#avoid = undefined;
    this.#handlers.ack(sentAt, Number(res.TTL));
  }

  /** Watches the oldest unanswered request. */
  #armStall(): void {
    const oldest = this.#pending[0];
    const stall = this.#stall;
    if (this.#stallTimer || oldest === undefined || !stall) return;
    this.#stallTimer = timerIn(Math.max(0, oldest + stall.timeoutMs - now()), () => {
      this.#stallTimer = undefined;
      if (this.#pending[0] === oldest) stall.onStall();
    });
  }

  #drop(): void {
    this.#stallTimer?.cancel();
    this.#stallTimer = undefined;
    this.#pending = [];
    const stream = this.#stream;
    this.#stream = undefined;
    if (stream) quiet(stream);
  }
}

/** Ends a stream we no longer listen to, swallowing its late errors. */
function quiet(stream: KeepAliveStream): void {
  stream.removeAllListeners();
  stream.on("error", () => {});
  stream.cancel?.();
}

/** The pool's hosts, shuffled, with the one to avoid last; endless, as etcd3's own generator. */
function* preferring(hosts: PoolHost[], avoid: PoolHost | undefined): Generator<PoolHost, never> {
  const order = [...hosts].sort(() => Math.random() - 0.5).sort((a, b) => Number(a === avoid) - Number(b === avoid));
  for (;;) yield* order;
}
