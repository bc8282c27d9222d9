/** What tests read of a session that users cannot: its keys, its lease in hex, its keepalive endpoint. */
import type { Session } from "../../src/index.js";
import type { Etcd3 } from "etcd3";
import { contextOf } from "../../src/session/context.js";
import { Connection, type CallOptions } from "../../src/etcd/connection.js";
import { etcd3Internals, type Endpoint, type GrpcDuplex, type ServiceName } from "../../src/etcd/internals.js";

/** The lease id in lowercase hex, as it ends every key the session creates. */
export const leaseHex = (session: Session): string => BigInt(session.leaseId).toString(16);

/** The key `session` owns under `name`. */
export const keyOf = (session: Session, name: string): string => `${name}/${leaseHex(session)}`;

/** A stream our channels opened and nothing has ended yet (cancel() or end()). */
interface OpenStream {
  service: string;
  endpoint: string;
  /** The lease a LeaseKeepAlive stream renews (from the requests written on it). */
  leaseId?: string;
}

const openStreams = new WeakMap<Connection, Set<OpenStream>>();

// Every stream a connection opens, recorded until its owner (or the connection) ends it: what tests read
// of which member serves a session, without members of the library kept for them.
type StreamArgs = Parameters<Connection["stream"]>;
const openStream = Object.getOwnPropertyDescriptor(Connection.prototype, "stream")!.value as (
  this: Connection,
  ...args: StreamArgs
) => Promise<{ stream: GrpcDuplex<unknown, unknown>; endpoint: Endpoint }>;
Connection.prototype.stream = async function <Req, Res>(
  this: Connection,
  ...args: StreamArgs
): Promise<{ stream: GrpcDuplex<Req, Res>; endpoint: Endpoint }> {
  const opened = await openStream.apply(this, args);
  const stream = opened.stream as GrpcDuplex<Req, Res>;
  let open = openStreams.get(this);
  if (!open) openStreams.set(this, (open = new Set()));
  const record: OpenStream = { service: args[0], endpoint: opened.endpoint.address };
  open.add(record);
  const ended = (): boolean => open.delete(record);
  const [cancel, end, write] = [stream.cancel.bind(stream), stream.end.bind(stream), stream.write.bind(stream)];
  stream.cancel = () => (ended(), cancel());
  stream.end = () => (ended(), end());
  stream.write = (req: Req) => {
    const id = (req as { ID?: unknown }).ID;
    if (typeof id === "string") record.leaseId = id;
    return write(req);
  };
  return { stream, endpoint: opened.endpoint };
};

const openStreamOf = (session: Session, service: string, leaseId?: string): OpenStream | undefined =>
  [...(openStreams.get(contextOf(session).conn) ?? [])].find(
    (s) => s.service === service && (leaseId === undefined || s.leaseId === leaseId),
  );

/** The endpoint ("host:port") the session's next call or stream goes to. */
export const preferredEndpoint = (session: Session): string => contextOf(session).conn.endpoint.address;

/** The endpoint ("host:port") serving the session's keepalive stream, when one is open. */
export const keepAliveEndpoint = (session: Session): string | undefined =>
  openStreamOf(session, "Lease", session.leaseId)?.endpoint;

/** The endpoint ("host:port") serving the session's watch stream (shared by the sessions of its client), when one is open. */
export const watchEndpoint = (session: Session): string | undefined => openStreamOf(session, "Watch")?.endpoint;

/** Watches the session has on its watch stream now. */
export const watchCount = (session: Session): number => contextOf(session).watches.size;

/**
 * The first `method` call made through our channels for `client` reaches etcd, but its answer is lost:
 * the caller sees DEADLINE_EXCEEDED (`afterMs` after etcd answered), as when the reply is dropped on the
 * way back. Returns a count of the calls made.
 */
export function loseFirstAnswer(client: Etcd3, method: string, afterMs = 0): { calls: () => number } {
  let calls = 0;
  wrapUnary(client, method, (call, done) => {
    calls++;
    if (calls > 1) return call(done);
    call(() =>
      setTimeout(
        () => done(Object.assign(new Error("4 DEADLINE_EXCEEDED: Deadline exceeded (answer lost)"), { code: 4 })),
        afterMs,
      ),
    );
  });
  return { calls: () => calls };
}

type Answer = (err: Error | null, res?: unknown) => void;

/**
 * Puts `around` between our channels' `method` calls for `client` and etcd: it gets the call (to send it,
 * with the answer's callback of its choice) and the caller's callback.
 */
function wrapUnary(
  client: Etcd3,
  method: string,
  around: (call: (answer: Answer) => void, done: Answer) => void,
): void {
  for (const endpoint of etcd3Internals(client).endpoints) {
    const service = endpoint.service.bind(endpoint);
    (endpoint as { service: typeof endpoint.service }).service = (name, channel) => {
      const real = service(name, channel);
      const original = real[method] as ((...args: unknown[]) => unknown) | undefined;
      if (typeof original !== "function") return real;
      real[method] = (req: unknown, metadata: unknown, options: unknown, done: Answer) =>
        around((answer) => original.call(real, req, metadata, options, answer), done);
      return real;
    };
  }
}

/**
 * Every `method` call made through our channels for `client` reaches etcd, but its answer is held back
 * until `release()`: a slow way back. Counts the calls etcd has answered so far.
 */
export function holdAnswers(client: Etcd3, method: string): { answered: () => number; release: () => void } {
  let answered = 0;
  let held: (() => void)[] | undefined = [];
  wrapUnary(client, method, (call, done) =>
    call((err, res) => {
      answered++;
      if (held) held.push(() => done(err, res));
      else done(err, res);
    }),
  );
  return {
    answered: () => answered,
    release: () => {
      const waiting = held ?? [];
      held = undefined;
      for (const answer of waiting) answer();
    },
  };
}

/** Records every unary call the session makes from now on ("KV.txn", "KV.range"...), as sent or once answered. */
export function countCalls(session: Session, when: "sent" | "answered" = "sent"): () => string[] {
  const conn = contextOf(session).conn;
  const original = conn.call.bind(conn);
  const calls: string[] = [];
  conn.call = ((service: string, method: string, ...rest: unknown[]) => {
    const name = `${service}.${method}`;
    if (when === "sent") calls.push(name);
    const result = (original as (...args: unknown[]) => Promise<unknown>)(service, method, ...rest);
    if (when === "answered")
      void result.then(
        () => calls.push(name),
        () => {},
      );
    return result;
  }) as typeof conn.call;
  return () => [...calls];
}

/**
 * Every serializable read the session sends to one member (a waiter deciding on the member whose watch told
 * the delete that woke it) waits for `before` first, and for `after` once answered (before the waiter sees
 * the answer); it goes to the endpoint `to` ("host:port", one of the client's) instead of the member that
 * told the event, when given. Returns the revisions those reads were served at (their answers' headers),
 * and the endpoints they were meant for.
 */
export function aroundEventMemberReads(
  session: Session,
  options: { before?: () => Promise<void>; after?: () => Promise<void>; to?: string } = {},
): () => { revision: bigint; meantFor: string }[] {
  const conn = contextOf(session).conn;
  const original = conn.call.bind(conn);
  const seen: { revision: bigint; meantFor: string }[] = [];
  conn.call = async <Res>(service: ServiceName, method: string, req: { serializable?: boolean }, opts: CallOptions) => {
    if (!req.serializable || !opts.endpoint) return original<Res>(service, method, req, opts);
    const meantFor = opts.endpoint.address;
    await options.before?.();
    if (options.to !== undefined) {
      const to = options.to;
      const endpoint = etcd3Internals(contextOf(session).client).endpoints.find((e) => e.address === to);
      if (!endpoint) throw new Error(`aroundEventMemberReads: ${to} is not an endpoint of the session's client`);
      opts = { ...opts, endpoint };
    }
    const res = await original<Res>(service, method, req, opts);
    seen.push({ revision: BigInt((res as { header: { revision: string } }).header.revision), meantFor });
    await options.after?.();
    return res;
  };
  return () => [...seen];
}

/**
 * While on, every KV call our channels make for `client` fails as if etcd were unreachable (UNAVAILABLE),
 * while keepalives and watches go on: "writes fail, keepalives succeed". Takes effect for channels
 * made after this call.
 */
export function failKvCalls(client: Etcd3): { on: () => void; off: () => void } {
  let failing = false;
  for (const endpoint of etcd3Internals(client).endpoints) {
    const service = endpoint.service.bind(endpoint);
    (endpoint as { service: typeof endpoint.service }).service = (name, channel) => {
      const real = service(name, channel);
      if (name !== "KV") return real;
      for (const method of ["txn", "range"]) {
        const original = real[method] as (...args: unknown[]) => unknown;
        real[method] = (req: unknown, metadata: unknown, options: unknown, done: (err: Error | null) => void) => {
          if (!failing) return original.call(real, req, metadata, options, done);
          setImmediate(() => done(Object.assign(new Error("14 UNAVAILABLE: injected by the test"), { code: 14 })));
          return { cancel: () => {} };
        };
      }
      return real;
    };
  }
  return { on: () => void (failing = true), off: () => void (failing = false) };
}

/** Timers active in this process now (ours, the client's, gRPC's): a leak shows as a count that grows with cycles. */
export const activeTimers = (): number => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;

/**
 * Records every event the session's watch stream hands to any of its watches (own-key watches included,
 * held or idle), from now on: watches added after this call. Returns what was delivered so far, with keys
 * as etcd has them (the full key).
 */
export function watchEventsDelivered(
  session: Session,
): () => { type: "Put" | "Delete"; key: string; revision: bigint }[] {
  const stream = contextOf(session).watches;
  const add = stream.add.bind(stream);
  const seen: { type: "Put" | "Delete"; key: string; revision: bigint }[] = [];
  stream.add = (target, handlers) =>
    add(target, {
      ...handlers,
      events: (events, from) => {
        for (const e of events)
          seen.push({ type: e.type, key: e.kv.key.toString(), revision: BigInt(e.kv.mod_revision) });
        handlers.events(events, from);
      },
    });
  return () => [...seen];
}

/**
 * The next watch the session adds to its watch stream is sent only once `before` has run (the watch's
 * owner sees it made later, as if etcd were slow to take it): what `before` changes happens before that
 * watch is in place.
 */
export function beforeNextWatch(session: Session, before: () => Promise<void>): void {
  const stream = contextOf(session).watches;
  const add = stream.add.bind(stream);
  stream.add = (target, handlers) => {
    stream.add = add;
    let cancel: (() => void) | undefined;
    let canceled = false;
    before().then(
      () => {
        if (!canceled) cancel = add(target, handlers);
      },
      (err: unknown) => {
        throw err;
      },
    );
    return () => {
      canceled = true;
      cancel?.();
    };
  };
}
