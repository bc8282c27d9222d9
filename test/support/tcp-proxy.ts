import { connect, createServer, type Server, type Socket } from "node:net";

/**
 * A TCP proxy in the test process, 127.0.0.1:listenPort -> 127.0.0.1:targetPort,
 * used to inject network faults between a client and etcd, or between members.
 *
 * Fault switches act at once and synchronously:
 * - cut():       reset every connection, and reset new ones as they arrive;
 * - blackhole(): keep connections (old and new) open but drop every byte, the
 *                way a dead network path looks: peers only notice by timeout;
 * - delay(ms):   deliver bytes ms later (order kept), in both directions;
 * - open():      forward again. Connections that dropped bytes are reset,
 *                their streams are corrupt.
 */
export type ProxyMode = "open" | "cut" | "blackhole";

export interface TcpProxyOptions {
  targetPort: number;
  /** 0 or omitted: any free port. */
  listenPort?: number;
  /**
   * Names the sender of a connection from its first chunk of bytes (e.g. an
   * HTTP header), so blockSource(id) can black-hole that sender's connections.
   */
  identify?: (firstChunk: Buffer) => string | undefined;
}

const HOST = "127.0.0.1";

/** One direction of a connection: a queue, so delayed chunks keep their order. */
interface Pipe {
  to: Socket;
  queue: { at: number; chunk: Buffer | null }[];
  timer: NodeJS.Timeout | undefined;
}

interface Conn {
  client: Socket;
  upstream: Socket;
  up: Pipe;
  down: Pipe;
  source: string | undefined;
  identified: boolean;
  /** Bytes are being discarded; once set the connection is only good for reset. */
  dropping: boolean;
}

export class TcpProxy {
  readonly targetPort: number;
  private readonly server: Server;
  private readonly conns = new Set<Conn>();
  private readonly blocked = new Set<string>();
  private readonly identify: TcpProxyOptions["identify"];
  private currentMode: ProxyMode = "open";
  private delayMs = 0;
  private port = 0;
  private closed = false;

  private constructor(options: TcpProxyOptions) {
    this.targetPort = options.targetPort;
    this.identify = options.identify;
    this.server = createServer({ allowHalfOpen: true }, (socket) => this.accept(socket));
  }

  static async start(options: TcpProxyOptions): Promise<TcpProxy> {
    const proxy = new TcpProxy(options);
    await new Promise<void>((resolve, reject) => {
      proxy.server.once("error", reject);
      proxy.server.listen({ host: HOST, port: options.listenPort ?? 0, exclusive: true }, () => {
        proxy.server.off("error", reject);
        resolve();
      });
    });
    // A listener error after startup (none expected) must not crash the test process.
    proxy.server.on("error", () => undefined);
    const address = proxy.server.address();
    proxy.port = typeof address === "object" && address ? address.port : 0;
    return proxy;
  }

  get listenPort(): number {
    return this.port;
  }

  /** "127.0.0.1:<listenPort>" */
  get url(): string {
    return `${HOST}:${this.port}`;
  }

  get mode(): ProxyMode {
    return this.currentMode;
  }

  get connectionCount(): number {
    return this.conns.size;
  }

  open(): void {
    this.currentMode = "open";
    this.resetWhere((c) => c.dropping && !this.isBlocked(c));
  }

  cut(): void {
    this.currentMode = "cut";
    this.resetWhere(() => true);
  }

  blackhole(): void {
    this.currentMode = "blackhole";
    for (const conn of this.conns) this.startDropping(conn);
  }

  /** Extra latency per direction; 0 removes it. Independent of the mode. */
  delay(ms: number): void {
    this.delayMs = Math.max(0, ms);
  }

  /** Black-hole connections identified as coming from `id`; existing ones are reset now. */
  blockSource(id: string): void {
    this.blocked.add(id);
    this.resetWhere((c) => c.source === id);
  }

  unblockSource(id: string): void {
    this.blocked.delete(id);
    this.resetWhere((c) => c.source === id && c.dropping && this.currentMode !== "blackhole");
  }

  /** Reset every current connection without changing the mode. */
  resetConnections(): void {
    this.resetWhere(() => true);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.resetWhere(() => true);
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private isBlocked(conn: Conn): boolean {
    return conn.source !== undefined && this.blocked.has(conn.source);
  }

  private accept(client: Socket): void {
    // Resets are expected here; an unhandled 'error' would crash the worker.
    client.on("error", () => undefined);
    if (this.currentMode === "cut" || this.closed) {
      client.resetAndDestroy();
      return;
    }
    const upstream = connect({ host: HOST, port: this.targetPort, allowHalfOpen: true });
    upstream.on("error", () => undefined);
    const conn: Conn = {
      client,
      upstream,
      up: { to: upstream, queue: [], timer: undefined },
      down: { to: client, queue: [], timer: undefined },
      source: undefined,
      identified: this.identify === undefined,
      dropping: false,
    };
    this.conns.add(conn);
    if (this.currentMode === "blackhole") this.startDropping(conn);

    client.on("data", (chunk: Buffer) => {
      if (!conn.identified) {
        conn.identified = true;
        conn.source = this.identify?.(chunk);
        if (this.isBlocked(conn)) this.startDropping(conn);
      }
      this.send(conn, conn.up, chunk);
    });
    upstream.on("data", (chunk: Buffer) => this.send(conn, conn.down, chunk));
    client.on("end", () => this.send(conn, conn.up, null));
    upstream.on("end", () => this.send(conn, conn.down, null));
    client.on("close", () => this.release(conn));
    // A black-holed client must not learn that the target went away.
    upstream.on("close", () => {
      if (!conn.dropping) this.release(conn);
    });
  }

  private startDropping(conn: Conn): void {
    conn.dropping = true;
    for (const pipe of [conn.up, conn.down]) {
      clearTimeout(pipe.timer);
      pipe.queue.length = 0;
    }
  }

  /** Queue a chunk (null = end of stream) and deliver what is due. */
  private send(conn: Conn, pipe: Pipe, chunk: Buffer | null): void {
    if (conn.dropping) return;
    const last = pipe.queue[pipe.queue.length - 1];
    pipe.queue.push({ at: Math.max(Date.now() + this.delayMs, last?.at ?? 0), chunk });
    this.drain(conn, pipe);
  }

  private drain(conn: Conn, pipe: Pipe): void {
    clearTimeout(pipe.timer);
    pipe.timer = undefined;
    let next = pipe.queue[0];
    while (next && next.at <= Date.now()) {
      pipe.queue.shift();
      if (!conn.dropping && !pipe.to.destroyed) {
        if (next.chunk) pipe.to.write(next.chunk);
        else pipe.to.end();
      }
      next = pipe.queue[0];
    }
    if (next) pipe.timer = setTimeout(() => this.drain(conn, pipe), next.at - Date.now());
  }

  private resetWhere(predicate: (conn: Conn) => boolean): void {
    for (const conn of [...this.conns]) {
      if (!predicate(conn)) continue;
      reset(conn.client);
      reset(conn.upstream);
      this.release(conn);
    }
  }

  private release(conn: Conn): void {
    if (!this.conns.delete(conn)) return;
    for (const pipe of [conn.up, conn.down]) clearTimeout(pipe.timer);
    conn.client.destroy();
    conn.upstream.destroy();
  }
}

/** Send a TCP RST (peers see ECONNRESET at once, not a graceful close). */
function reset(socket: Socket): void {
  if (socket.destroyed) return;
  try {
    socket.resetAndDestroy();
  } catch {
    socket.destroy();
  }
}
