import { now, stamp, timerIn, type Stamp, type Timer } from "../common/clock.js";
import type { Logger } from "../common/logger.js";
import { abandonStream, type Connection } from "../etcd/connection.js";
import type { Endpoint, GrpcDuplex } from "../etcd/internals.js";

/** How long a keepalive answer gets to be read after the event loop comes back from a block. */
const BLOCK_GRACE_MS = 100;

interface KeepAliveRequest {
  ID: string;
}
interface KeepAliveResponse {
  ID: string;
  TTL: string;
}

export interface KeepAliveHandlers {
  /** A response arrived for the request written at `sentAt`. */
  ack(sentAt: Stamp, ttl: number): void;
  /** The stream could not be opened, errored or ended. */
  failed(): void;
}

/**
 * One LeaseKeepAlive stream at a time for one lease, on the session's own channel. Responses come back
 * in request order, so a FIFO of send times tells which request each response acknowledges.
 */
export class KeepAliveStream {
  readonly #conn: Connection;
  readonly #leaseId: string;
  readonly #openTimeoutMs: number;
  readonly #handlers: KeepAliveHandlers;
  readonly #logger: Logger;
  #stream: GrpcDuplex<KeepAliveRequest, KeepAliveResponse> | undefined;
  #endpoint: Endpoint | undefined;
  #opening = false;
  #closed = false;
  #pending: Stamp[] = [];
  #stallTimer: Timer | undefined;
  #graceTimer: Timer | undefined;
  #stall: { timeoutMs: number; onStall: () => void } | undefined;

  constructor(conn: Connection, leaseId: string, openTimeoutMs: number, handlers: KeepAliveHandlers, logger: Logger) {
    this.#conn = conn;
    this.#leaseId = leaseId;
    this.#openTimeoutMs = openTimeoutMs;
    this.#handlers = handlers;
    this.#logger = logger;
  }

  /** The endpoint ("host:port") of the current stream, if one is open. */
  get endpoint(): string | undefined {
    return this.#stream ? this.#endpoint?.address : undefined;
  }

  /** Sends one keepalive (opening a stream first if needed); `onStall` fires if it goes unanswered. */
  send(ackTimeoutMs: number, onStall: () => void): void {
    if (this.#closed) return;
    this.#stall = { timeoutMs: ackTimeoutMs, onStall };
    if (this.#stream) this.#write();
    else if (!this.#opening) void this.#open();
  }

  /**
   * Drops the current stream after a stall, and our channel to its endpoint with it (the connection is
   * bad: a new stream on it would stall too); the next stream prefers another endpoint.
   */
  replace(): void {
    const endpoint = this.#endpoint;
    this.#drop();
    if (endpoint) this.#conn.failed(endpoint, { reset: true });
  }

  close(): void {
    this.#closed = true;
    this.#drop();
  }

  async #open(): Promise<void> {
    this.#opening = true;
    try {
      const { stream, endpoint } = await this.#conn.stream<KeepAliveRequest, KeepAliveResponse>(
        "Lease",
        "leaseKeepAlive",
        this.#openTimeoutMs,
      );
      if (this.#closed) return abandonStream(stream);
      this.#stream = stream;
      this.#endpoint = endpoint;
      stream.on("data", (res) => this.#onData(res));
      const fail = (err?: unknown): void => {
        if (this.#stream !== stream) return;
        this.#logger.warn({ err, endpoint: endpoint.address }, "keepalive stream broke; opening another");
        // Whatever broke this stream may break the next one there too: prefer another endpoint.
        this.#conn.failed(endpoint);
        this.#drop();
        this.#handlers.failed();
      };
      stream.on("error", fail);
      stream.on("end", fail);
      stream.on("close", fail);
      this.#write();
    } catch (err) {
      this.#logger.warn({ err }, "keepalive stream could not be opened; retrying");
      if (!this.#closed) this.#handlers.failed();
    } finally {
      this.#opening = false;
    }
  }

  #write(): void {
    const stream = this.#stream;
    if (!stream) return;
    this.#pending.push(stamp());
    stream.write({ ID: this.#leaseId });
    this.#armStall();
  }

  #onData(res: KeepAliveResponse): void {
    const sentAt = this.#pending.shift();
    if (sentAt === undefined) return;
    if (this.#endpoint) this.#conn.acked(this.#endpoint);
    this.#stallTimer?.cancel();
    this.#stallTimer = undefined;
    this.#armStall();
    this.#handlers.ack(sentAt, Number(res.TTL));
  }

  /**
   * Watches the oldest unanswered request. When its time is up, the event loop may just have come back
   * from a long block with the answer waiting in the socket (timers run before I/O in each turn of
   * Node's loop): a timer that fired late gives the answer `BLOCK_GRACE_MS` of I/O turns to be read,
   * an on-time one two turns, before a stall is declared.
   */
  #armStall(): void {
    const oldest = this.#pending[0];
    const stall = this.#stall;
    if (this.#stallTimer || oldest === undefined || !stall) return;
    const due = oldest.mono + stall.timeoutMs;
    const armed = (this.#stallTimer = timerIn(Math.max(0, due - now()), () => {
      const decide = (): void => {
        if (this.#stallTimer !== armed) return; // answered, re-armed or dropped meanwhile
        this.#stallTimer = undefined;
        if (this.#pending[0] === oldest && !this.#closed) stall.onStall();
        else this.#armStall();
      };
      if (now() - due > BLOCK_GRACE_MS / 2) this.#graceTimer = timerIn(BLOCK_GRACE_MS, decide);
      else setImmediate(() => setImmediate(decide));
    }));
  }

  #drop(): void {
    this.#graceTimer?.cancel();
    this.#stallTimer?.cancel();
    this.#stallTimer = undefined;
    this.#pending = [];
    const stream = this.#stream;
    this.#stream = undefined;
    if (stream) abandonStream(stream);
  }
}
