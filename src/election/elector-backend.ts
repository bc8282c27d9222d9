import { track, untilAbort } from "../common/abort.js";
import type { Logger } from "../common/logger.js";
import { contextOf } from "../session/context.js";
import { joinGroup } from "../sharding/membership.js";
import { observeGroup, type ShardView } from "../sharding/shard-view.js";
import { Election } from "../election.js";
import { etcd3Internals } from "../etcd/internals.js";
import type { Leader } from "../leader.js";
import { Session, type EtcdClient, type SessionState } from "../session.js";
import type { Term } from "../term.js";
import { publishPriority, waitingCandidates, withdrawPriority, type PriorityCandidate } from "./preferred.js";

/**
 * @internal One session as a runner (the elector) uses it: campaign and observe through it, its end, and
 * its renewals for health and metrics.
 */
export interface ElectorSession {
  /** Aborted once the session is lost or closed. */
  readonly signal: AbortSignal;
  readonly state: SessionState;
  /** Milliseconds since the last acknowledged keepalive was sent. */
  readonly sinceRenewalMs: number;
  /** Round trip of the last acknowledged keepalive, ms. */
  readonly roundTripMs: number | undefined;
  /** Calls `listener` with each acknowledged keepalive's round trip; returns its removal. */
  onRenewed(listener: (roundTripMs: number) => void): () => void;
  /** Resolves with the term once `value` leads `name`; rejects (its key removed) when `signal` aborts. */
  campaign(name: string, value: string, signal: AbortSignal): Promise<Term>;
  /** The leader of `name`, then each change; ends (throwing) when `signal` aborts. */
  observe(name: string, signal: AbortSignal): AsyncIterable<Leader | undefined>;
  /** Publishes this candidate's priority for `name` (preferred leaders); absent: priorities are not used. */
  publishPriority?(name: string, priority: number): Promise<bigint>;
  /** Removes the priority key `publishPriority` made (guarded by its create revision); logged, never thrown. */
  withdrawPriority?(name: string, createRevision: bigint): Promise<void>;
  /**
   * The candidates waiting behind the leader of `name` (whose priority is `ours`), with their priorities,
   * as they change; `[]` while no priority above ours exists (the queue is then not watched).
   */
  waitingCandidates?(name: string, ours: number, signal: AbortSignal): AsyncIterable<PriorityCandidate[]>;
  close(): Promise<void>;
}

/** @internal What a sharded elector needs of a session besides campaigns: its group's membership and view. */
export interface ShardedSession extends ElectorSession {
  /** Resolves with the hold of our member key in group `name` (its value `value`). */
  join(name: string, value: string, signal: AbortSignal): Promise<Term>;
  /** Members and shard holders of group `name`, then each change; ends (throwing) when `signal` aborts. */
  view(name: string, shards: number, signal: AbortSignal): AsyncIterable<ShardView>;
}

/**
 * @internal The campaign/observe side a runner talks to, as client-go's `resourcelock.Interface`: etcd's
 * (Session and Election) in the library, a fake in unit tests.
 */
export interface ElectorBackend<S extends ElectorSession = ElectorSession> {
  /** The user's session, whose loss ends the run; undefined: the runner makes sessions with `newSession`. */
  readonly given: S | undefined;
  newSession(): Promise<S>;
}

/**
 * A runner's session for its next try: `current` while it lives; else, when the session is the user's, its
 * loss (thrown: the run ends); else a new one from `backend`, `current` closed meanwhile (tracked in
 * `inflight`: it lets go of what it still holds locally). `forget` runs before the new one is asked for.
 * Rejects with the stop's reason if `stop` aborts first; a grant that comes after it is revoked.
 */
export async function nextSession<S extends ElectorSession>(
  backend: ElectorBackend<S>,
  current: S | undefined,
  inflight: Set<Promise<unknown>>,
  stop: AbortSignal,
  forget: () => void,
): Promise<{ session: S; made: boolean }> {
  if (current && !current.signal.aborted) return { session: current, made: false };
  if (backend.given) throw backend.given.signal.reason;
  if (current) void track(inflight, current.close());
  forget();
  const creating = backend.newSession();
  const session = await untilAbort(creating, stop);
  if (!session) {
    void creating.then(
      (late) => late.close(),
      () => {},
    );
    throw stop.reason;
  }
  return { session, made: true };
}

/** Throws InvalidArgumentError unless `peer` has a Session or an etcd3 client (either build's). */
export function checkEtcdPeer(peer: { client?: unknown; session?: unknown }): void {
  if (peer.session) contextOf(peer.session);
  else etcd3Internals(peer.client);
}

/** @internal The backend on etcd: the user's session, or sessions the runner makes on the user's client. */
export function etcdBackend(options: {
  client?: EtcdClient;
  session?: Session;
  ttl: number;
  callTimeoutMs: number;
  logger: Logger;
}): ElectorBackend<ShardedSession> {
  const { client, ttl, callTimeoutMs, logger } = options;
  return {
    given: options.session && onSession(options.session),
    async newSession() {
      if (!client) throw new Error("etcdBackend: no client to make a session on");
      return onSession(await Session.create(client, { ttl, callTimeoutMs, logger }));
    },
  };
}

function onSession(session: Session): ShardedSession {
  return {
    get signal() {
      return session.signal;
    },
    get state() {
      return session.state;
    },
    get sinceRenewalMs() {
      return session.sinceRenewalMs;
    },
    get roundTripMs() {
      return session.roundTripMs;
    },
    onRenewed(listener) {
      session.on("renewed", listener);
      return () => void session.off("renewed", listener);
    },
    campaign: (name, value, signal) => new Election(session, name).campaign(value, { signal }),
    observe: (name, signal) => new Election(session, name).observe({ signal }),
    publishPriority: (name, priority) => publishPriority(contextOf(session), name, priority),
    withdrawPriority: (name, createRevision) => withdrawPriority(contextOf(session), name, createRevision),
    waitingCandidates: (name, ours, signal) => waitingCandidates(contextOf(session), name, ours, signal),
    join: (name, value, signal) => joinGroup(session, name, value, signal),
    view: (name, shards, signal) => observeGroup(contextOf(session), name, shards, signal),
    close: () => session.close(),
  };
}
