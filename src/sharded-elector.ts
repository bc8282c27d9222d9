import { EventEmitter } from "eventemitter3";
import { Backoff, campaignBackoff } from "./common/backoff.js";
import { linkedController, onAbort, settledBy, sleep, track, untilAbort } from "./common/abort.js";
import { systemClock, type Clock, type Timer } from "./common/clock.js";
import { consoleLogger, toLogger, withFields, type Logger } from "./common/logger.js";
import { validateElectorOptions, validateName, validateSignal } from "./common/validate.js";
import {
  checkEtcdPeer,
  etcdBackend,
  nextSession,
  type ElectorBackend,
  type ShardedSession,
} from "./election/elector-backend.js";
import { ElectorTally, type ElectorMetrics, type ElectorState } from "./election/elector-metrics.js";
import { ElectorReporter } from "./election/elector-reporter.js";
import { isIncurable } from "./etcd/errors.js";
import { InvalidArgumentError, WorkFailedError, type ElectionError } from "./errors.js";
import type { ElectorEvents } from "./leader-elector.js";
import type { EtcdClient, Session } from "./session.js";
import { assignShards } from "./sharding/assignment.js";
import { CampaignPacer } from "./sharding/campaign-pacer.js";
import { validateShardCount } from "./sharding/shard-of.js";
import { membersName, shardName, type ShardView } from "./sharding/shard-view.js";
import type { Term } from "./term.js";

export { shardOf } from "./sharding/shard-of.js";

/** What {@link ShardedElector} spreads, over whom, and what it runs for each shard it owns. */
export interface ShardedElectorOptions {
  /** The user's etcd3 client: the elector makes (and remakes, after a loss) its own session on it. */
  client?: EtcdClient;
  /** Or an existing session: then a lost session ends `run()`, as only its owner can make a new one. */
  session?: Session;
  /** Group name: members are `<name>/members/<lease hex>`, shard n's election is `<name>/shards/<n>`. */
  name: string;
  /** How many shards (1 to 2,000, what is measured to work); every member must be given the same number. */
  shards: number;
  /** This member's identity: shards are placed by it, and it is the value of its keys. */
  identity: string;
  /** TTL of the session the elector makes (seconds, default 10). */
  ttl?: number;
  /** Deadline of each call to etcd, for the session the elector makes (ms, default 5000). */
  callTimeoutMs?: number;
  /** Where the elector logs, in pino's shape. Default: warnings and errors on the console; `false` silences it. */
  logger?: Logger | false;
  /**
   * Called once per term of a shard, when this process starts owning it. Work on the shard until
   * `term.signal` aborts (and fence writes with `term.token` or `term.txn()`). When the shard moves to
   * another member, `term.signal` aborts first and the shard's key is released only once the promise
   * returned has settled (or a TTL later, if it does not): the next owner's term begins after this work
   * ended. If it throws, the shard is released and campaigned for again.
   */
  onAcquired: (shard: number, term: Term) => void | Promise<void>;
  /**
   * Called when a shard's term of ours has ended and its work returned (its key released or lost); for a
   * shard whose release had not finished when `run()` resolves, as `run()` resolves (once per term).
   */
  onReleased?: (shard: number) => void;
}

/** What a sharded elector tells as it goes: an elector's events (per shard term) and its own. */
export interface ShardedElectorEvents extends ElectorEvents {
  /** This process now owns `shard` (`term` is its term of that shard). */
  acquired: (shard: number, term: Term) => void;
  /** This process no longer owns `shard`: its work has returned, its key was released or lost (or `run()` resolves). */
  released: (shard: number) => void;
  /** Membership (as this process sees it) changed: the shards now assigned to it, and how many members. */
  assigned: (shards: readonly number[], members: number) => void;
}

/** {@link ElectorMetrics} of a sharded elector (its `token` is undefined: each shard has its own). */
export interface ShardedMetrics extends ElectorMetrics {
  /** The shard count, from the options. */
  shards: number;
  /** Shards this process owns now. */
  owned: number;
  /** Shards assigned to this process by the membership it sees (owned once their elections say so). */
  assigned: number;
  /** Live members this process sees, itself included (0 before it joined). */
  members: number;
}

/** @internal What unit tests put in place of etcd and the system clock. */
export interface ShardedSeam {
  backend: ElectorBackend<ShardedSession>;
  clock: Clock;
}

let injected: ShardedSeam | undefined;

/** How often at most holder changes alone make a member compute the assignment again. */
const RECONCILE_EVERY_MS = 100;

/** One shard's campaign and term, as long as the shard is assigned to us. */
interface Slot {
  readonly shard: number;
  /** Aborted when the shard is no longer ours to keep: moved away, stop, end of the session. */
  readonly controller: AbortController;
  term: Term | undefined;
  /** Its term was seen to end: it is handing the shard over (no longer acting as its owner). */
  stepping: boolean;
}

/**
 * Many leaders: spreads `shards` shards of work over the live members of a group, one owner per shard,
 * each shard an {@link Election} of its own (`<name>/shards/<n>`, with its own fencing token). Each
 * member announces itself under `<name>/members/` on its session's lease, watches the group, and
 * computes from the membership it sees which shards should be its own (rendezvous hashing with bounded
 * load: floor(S/M) or ceil(S/M) each, few moves on a join or a leave). It campaigns only for those, and
 * hands over gracefully the ones that should no longer be its own: their work ends, then their keys
 * go. While views differ, the per-shard elections decide who owns: never two at once.
 *
 * A runner like {@link LeaderElector}, made of the same parts: one session (one lease, one keepalive
 * stream, one watch stream) whatever the shard count, re-made after a loss; `run()` resolves once its
 * signal aborted and every shard is handed over, within max(TTL, callTimeoutMs) + callTimeoutMs whatever etcd does (each shard's work gets up to a TTL).
 * An event emitter of the {@link ShardedElectorEvents}; `healthHandler` and the metrics adapters take it.
 */
export class ShardedElector extends EventEmitter<ShardedElectorEvents> {
  /** The group name (the key prefix), from the options. */
  readonly name: string;
  /** This member's identity, from the options. */
  readonly identity: string;
  /** The shard count, from the options. */
  readonly shards: number;
  readonly #options: ShardedElectorOptions;
  readonly #ttl: number;
  readonly #callTimeoutMs: number;
  readonly #logger: Logger;
  readonly #backend: ElectorBackend<ShardedSession>;
  readonly #clock: Clock;
  readonly #tally: ElectorTally;
  readonly #reporter: ElectorReporter;
  #session: ShardedSession | undefined;
  #running = false;
  #joined = false;
  /** When (clock ms) this run last stopped being a member of its group; undefined while it is one. */
  #outSince: number | undefined;
  #view: ShardView | undefined;
  /** Shards assigned to us by the last view (sorted). */
  #assigned: number[] = [];
  readonly #slots = new Map<number, Slot>();
  /**
   * Slots holding a term (from its start until it is told released), replaced in #slots or not: a stop
   * tells released for each of them, so every acquired has its released.
   */
  readonly #held = new Set<Slot>();
  /**
   * Shards whose last slots are still ending (with their resigns): a new slot of the shard waits for it.
   * Kept across runs on a given session: an earlier run's term still holds the name there until its resign.
   */
  readonly #ending = new Map<number, Promise<void>>();
  /** This run's slots, until each has handed its shard over: what a stop or a lost membership waits for. */
  readonly #handovers = new Set<Promise<unknown>>();
  /** Each shard's last work (and the run it began in), until it settles: the next campaign for it waits. */
  readonly #work = new Map<number, { done: Promise<void>; generation: number }>();
  /** This run's releases and closes still finishing (a stop waits for them, bounded). */
  readonly #inflight = new Set<Promise<unknown>>();
  /** At most 32 campaigns in their first second at a time: no burst of thousands of joins. */
  readonly #pacer: CampaignPacer;
  /** Counts finished runs: a hand-over still finishing when its run() resolved changes nothing any more. */
  #generation = 0;

  constructor(options: ShardedElectorOptions) {
    super();
    const seam = injected;
    const settings = validateElectorOptions(options, seam ? () => {} : checkEtcdPeer, {
      what: "ShardedElector",
      work: "onAcquired",
      callbacks: ["onReleased"],
    });
    ({ name: this.name, identity: this.identity, ttl: this.#ttl, callTimeoutMs: this.#callTimeoutMs } = settings);
    this.shards = validateShardCount(options.shards);
    // The names derived from ours must be valid names too: the longest is the last shard's election.
    validateName(shardName(this.name, this.shards - 1), `ShardedElector name (as "<name>/shards/${this.shards - 1}")`);
    validateName(membersName(this.name), `ShardedElector name (as "<name>/members")`);
    this.#logger = withFields(toLogger(options.logger, consoleLogger), { group: this.name, identity: this.identity });
    this.#options = options;
    this.#clock = seam?.clock ?? systemClock;
    this.#backend =
      seam?.backend ??
      etcdBackend({ ...options, ttl: this.#ttl, callTimeoutMs: this.#callTimeoutMs, logger: this.#logger });
    this.#tally = new ElectorTally(this.#clock);
    this.#reporter = new ElectorReporter(
      this.emit.bind(this) as (event: string, ...args: unknown[]) => boolean,
      this.#tally,
      this.#logger,
      "sharded election",
    );
    this.#pacer = new CampaignPacer(32, 1000, this.#clock);
  }

  /** @internal A sharded elector on `seam` instead of etcd and the system clock (unit tests). */
  static withSeam(options: ShardedElectorOptions, seam: ShardedSeam): ShardedElector {
    injected = seam;
    try {
      return new ShardedElector(options);
    } finally {
      injected = undefined;
    }
  }

  /** The shards this process owns now (ascending), as far as it can know (each term's deadline is read now). */
  owned(): number[] {
    const owned: number[] = [];
    for (const slot of this.#slots.values()) if (slot.term && !slot.term.signal.aborted) owned.push(slot.shard);
    return owned.sort((a, b) => a - b);
  }

  /**
   * The identity owning each shard (index = shard) as this process last read it from etcd; undefined
   * where nobody holds it (or before the first read).
   */
  owners(): (string | undefined)[] {
    const view = this.#view;
    return Array.from({ length: this.shards }, (_, s) => view?.holders[s]?.identity);
  }

  /** Whether this process owns at least one shard (what `healthHandler`'s `/leader` and the adapters read). */
  isLeader(): boolean {
    for (const slot of this.#slots.values()) if (slot.term && !slot.term.signal.aborted) return true;
    return false;
  }

  /**
   * For a liveness probe. False when restarting the process can help: `run()` is not running (not yet,
   * or ended: stopped, or rejected); it owns a shard whose term it has not yet seen end and no keepalive
   * has been acknowledged for longer than 2 × TTL (a wedged owner, as a LeaderElector's); or it has been
   * out of its group (its member key lost, not put again) for longer than 2 × TTL although keepalives
   * get through. Members are healthy through an etcd outage: restarting them cannot help.
   */
  healthy(): boolean {
    if (!this.#running) return false;
    const session = this.#currentSession();
    if (!session) return true;
    const limit = 2 * this.#ttl * 1000;
    const wedged = session.sinceRenewalMs > limit && [...this.#slots.values()].some((s) => s.term && !s.stepping);
    const out =
      this.#outSince !== undefined && this.#clock.now() - this.#outSince > limit && session.sinceRenewalMs <= limit;
    return !wedged && !out;
  }

  /** Whether `run()` runs, has joined the group and is not stopping (for a readiness probe). */
  ready(): boolean {
    return this.#running && this.#joined && this.#tally.state !== "stopping" && this.#tally.state !== "stopped";
  }

  /** A snapshot of what the elector did and is doing; see {@link ShardedMetrics}. */
  metrics(): ShardedMetrics {
    const session = this.#currentSession();
    return {
      ...this.#tally.snapshot({ token: undefined, sessionState: session?.state, roundTripMs: session?.roundTripMs }),
      shards: this.shards,
      owned: this.owned().length,
      assigned: this.#assigned.length,
      members: this.#joined ? (this.#view?.members.length ?? 0) : 0,
    };
  }

  /**
   * Joins the group, owns its share of the shards and follows membership changes until `signal` aborts,
   * then hands every shard over and resolves, within max(TTL, callTimeoutMs) + callTimeoutMs. Rejects on errors that
   * retrying cannot cure (bad credentials, no permission, a closed client, a lost session that is not
   * the elector's own); retries the rest.
   */
  async run(options: { signal?: AbortSignal } = {}): Promise<void> {
    const stop = validateSignal(options.signal) ?? new AbortController().signal;
    if (this.#running) throw new InvalidArgumentError(`this sharded elector of "${this.name}" is already running`);
    this.#running = true;
    this.#outSince = this.#clock.now();
    this.#tally.reset();
    this.#setState("idle");
    let stoppedAt: number | undefined;
    const undo = onAbort(stop, () => (stoppedAt = this.#clock.now()));
    const unlisten = this.#backend.given?.onRenewed((ms) => this.#tell("renewed", ms));
    try {
      await this.#loop(stop);
    } finally {
      undo();
      unlisten?.();
      await this.#shutdown(stoppedAt ?? this.#clock.now());
    }
  }

  async #loop(stop: AbortSignal): Promise<void> {
    const backoff = new Backoff(campaignBackoff(this.#ttl));
    while (!stop.aborted) {
      try {
        await this.#member(await this.#ensureSession(stop), stop, () => backoff.reset());
      } catch (err) {
        if (stop.aborted) return;
        const error = this.#record(err);
        this.#tally.failed();
        if (isIncurable(error) || this.#backend.given?.signal.aborted) {
          this.#logger.error({ err: error }, "sharded election stopped: this error does not go away by trying again");
          throw error;
        }
        this.#logger.warn({ err: error }, "sharded election failed; trying again");
        this.#setState("idle");
        await sleep(backoff.next(), stop, this.#clock).catch(() => {});
      }
    }
  }

  /** Our session, or a new one when there is none or it was lost (as a LeaderElector's). */
  async #ensureSession(stop: AbortSignal): Promise<ShardedSession> {
    const { session, made } = await nextSession(
      this.#backend,
      this.#currentSession(),
      this.#inflight,
      stop,
      () => (this.#session = undefined),
    );
    if (!made) return session;
    this.#session = session;
    this.#tally.sessionMade();
    session.onRenewed((ms) => this.#tell("renewed", ms));
    return session;
  }

  /**
   * One membership: join the group, then follow its view (assign, campaign, hand over) until the stop, the
   * end of the session or of our member key. Every slot is told to end on the way out; a stop waits for
   * them in `#shutdown`, anything else before the next membership (work never overlaps, per shard).
   */
  async #member(session: ShardedSession, stop: AbortSignal, joined: () => void): Promise<void> {
    const { controller, dispose } = linkedController(stop, session.signal);
    const signal = controller.signal;
    let fatal: ElectionError | undefined;
    const failed = (error: ElectionError): void => {
      fatal ??= error;
      controller.abort(error);
    };
    this.#setState("campaigning");
    let membership: Term | undefined;
    try {
      // As a LeaderElector's campaign: an aborted join removes its key (confirmed) before it settles, which
      // can take until the session ends; a stop does not wait for it (#shutdown closes the session).
      const joining = session.join(membersName(this.name), this.identity, signal);
      membership = await untilAbort(joining, stop);
      if (!membership) {
        void track(
          this.#inflight,
          joining.then(
            (late) => late.resign(),
            () => {},
          ),
        );
        throw stop.reason;
      }
    } catch (err) {
      dispose();
      throw err;
    }
    const undoMember = onAbort(membership.signal, (reason) => controller.abort(reason));
    this.#joined = true;
    this.#outSince = undefined;
    joined();
    this.#logger.info({ token: membership.token.toString() }, "joined the sharded group");
    // The assignment depends on the members and, sticky, on who holds each shard. A member change is acted
    // on at once; holders changing (thousands while a member takes its shards) at most every 100 ms, so
    // a shard event costs O(1) and the O(S) assignment runs a bounded number of times per second.
    let timer: Timer | undefined;
    let lastAt = -Infinity;
    const reconcile = (view: ShardView): boolean => {
      timer?.cancel();
      timer = undefined;
      lastAt = this.#clock.now();
      return this.#reconcile(session, view, membership.key, signal, failed);
    };
    try {
      let seen: string | undefined;
      for await (const view of session.view(this.name, this.shards, signal)) {
        this.#view = view;
        const members = view.members.map((m) => `${m.id}=${m.identity}`).join("\n");
        if (members !== seen) {
          if (reconcile(view)) seen = members;
        } else if (!timer) {
          timer = this.#clock.timerIn(
            Math.max(0, lastAt + RECONCILE_EVERY_MS - this.#clock.now()),
            () => void reconcile(view),
          );
        }
      }
    } catch (err) {
      if (!signal.aborted) throw err;
    } finally {
      timer?.cancel();
      undoMember();
      dispose();
      controller.abort();
      this.#joined = false;
      this.#outSince = this.#clock.now();
      this.#assigned = [];
      for (const slot of this.#slots.values()) slot.controller.abort();
      // Leave the group at once, beside the hand-overs: the others re-assign sooner, and their campaigns
      // still wait behind each of our keys until its work has ended.
      const leaving = track(this.#inflight, membership.resign());
      // A stop that comes meanwhile ends the wait: #shutdown waits for the same, within the stop's bound.
      if (!stop.aborted) await untilAbort(Promise.allSettled([...this.#handovers, leaving]), stop);
    }
    if (fatal) throw fatal;
    if (!stop.aborted) {
      const reason: unknown = session.signal.aborted ? session.signal.reason : membership.signal.reason;
      this.#logger.warn({ err: reason }, "left the sharded group (session or member key lost); joining again");
      throw reason;
    }
  }

  /** The shards the view assigns to us: campaign for the new ones, hand over the others. */
  #reconcile(
    session: ShardedSession,
    view: ShardView,
    ownKey: string,
    signal: AbortSignal,
    failed: (error: ElectionError) => void,
  ): boolean {
    const ownId = ownKey.slice(ownKey.lastIndexOf("/") + 1);
    // Our own key not in the view: it is being deleted (our hold notices) or this read is older. Keep all.
    if (signal.aborted || !view.members.some((m) => m.id === ownId)) return false;
    // A holder's member id is its key's lease, as a member key's is.
    const holders = view.holders.map((h) => h && h.key.slice(h.key.lastIndexOf("/") + 1));
    const owners = assignShards(view.members, this.shards, holders);
    const mine: number[] = [];
    for (let s = 0; s < owners.length; s++) if (owners[s] === ownId) mine.push(s);
    const changed = mine.length !== this.#assigned.length || mine.some((s, i) => this.#assigned[i] !== s);
    this.#assigned = mine;
    const keep = new Set(mine);
    for (const [shard, slot] of this.#slots) {
      if (!keep.has(shard)) {
        this.#logger.debug({ shard }, "shard no longer assigned to us; handing it over");
        slot.controller.abort();
      }
    }
    // A slot still handing its shard over is replaced: the new one waits for it to end, then campaigns.
    for (const shard of mine) {
      if (!this.#slots.get(shard) || this.#slots.get(shard)?.controller.signal.aborted)
        this.#startSlot(session, shard, signal, failed);
    }
    if (changed) {
      this.#logger.info({ assigned: mine.length, members: view.members.length }, "shards assigned");
      this.#tell("assigned", [...mine], view.members.length); // a copy: #assigned is ours
    }
    return true;
  }

  #startSlot(
    session: ShardedSession,
    shard: number,
    member: AbortSignal,
    failed: (error: ElectionError) => void,
  ): void {
    const { controller, dispose } = linkedController(member);
    const slot: Slot = { shard, controller, term: undefined, stepping: false };
    this.#slots.set(shard, slot);
    const previous = this.#ending.get(shard);
    const running = (async () => {
      try {
        // One shard's terms never overlap here, even across hand-backs (and runs, on a given session);
        // a slot told to end meanwhile stops waiting: its ending below still includes the previous one.
        if (previous) await untilAbort(previous, controller.signal);
        if (!controller.signal.aborted) await this.#runSlot(session, slot, failed);
      } catch (err) {
        this.#logger.error({ err, shard }, "shard slot failed"); // not expected: #runSlot handles its errors
      } finally {
        dispose();
        if (this.#slots.get(shard) === slot) this.#slots.delete(shard);
      }
    })();
    void track(this.#handovers, running);
    const ending = Promise.all([previous, running]).then(() => {
      if (this.#ending.get(shard) === ending) this.#ending.delete(shard);
    });
    this.#ending.set(shard, ending);
  }

  /** Campaigns for the shard and owns it while it stays ours; campaigns again after a lost term. */
  async #runSlot(session: ShardedSession, slot: Slot, failed: (error: ElectionError) => void): Promise<void> {
    const { shard, controller } = slot;
    const signal = controller.signal;
    const backoff = new Backoff(campaignBackoff(this.#ttl));
    while (!signal.aborted) {
      await this.#settleWork(shard, signal);
      if (signal.aborted) return;
      let term: Term;
      const campaignedAt = this.#clock.now();
      try {
        // Aborting removes our key (confirmed) before the campaign settles: awaited, so a stop's bound
        // covers it.
        term = await this.#pacer.run(signal, () =>
          session.campaign(shardName(this.name, shard), this.identity, signal),
        );
      } catch (err) {
        if (signal.aborted) return;
        const error = this.#record(err);
        this.#tally.failed();
        if (isIncurable(error)) return failed(error);
        this.#logger.warn({ err: error, shard }, "campaign for a shard failed; trying again");
        await sleep(backoff.next(), signal, this.#clock).catch(() => {});
        continue;
      }
      const workFailed = await this.#own(slot, term, this.#clock.now() - campaignedAt);
      if (workFailed) await sleep(backoff.next(), signal, this.#clock).catch(() => {});
      else backoff.reset();
    }
  }

  /**
   * Owns the shard until its term ends or the slot is told to end; then hands it over gracefully: the
   * term ends here first (its signal aborts), the work returns (or a TTL passes), and only then is the
   * key released, so the next owner's term begins after our work ended. True if the work threw.
   */
  async #own(slot: Slot, term: Term, waitMs: number): Promise<boolean> {
    const { shard } = slot;
    const generation = this.#generation;
    if (slot.controller.signal.aborted || term.signal.aborted) {
      // Won just as the shard stopped being ours, or the term already ended: no work to start, let it go.
      if (term.signal.aborted)
        this.#logger.debug({ shard, err: term.signal.reason as unknown }, "shard's term ended before it began");
      await track(this.#inflight, term.resign());
      return false;
    }
    slot.term = term;
    this.#held.add(slot);
    this.#tally.termStarted(term.predecessorGoneAt);
    if (this.#tally.state !== "stopping") this.#setState("leading");
    this.#logger.info({ shard, token: term.token.toString() }, "shard acquired");
    this.#tell("elected", term, waitMs);
    this.#tell("acquired", shard, term);
    let threw = false;
    let ended: () => void = () => {};
    const ending = new Promise<void>((resolve) => (ended = resolve));
    const work = Promise.resolve()
      .then(() => this.#options.onAcquired(shard, term))
      .catch((err: unknown) => {
        threw = true;
        ended();
        if (generation !== this.#generation) {
          // run() resolved meanwhile: nothing changes after it (no failure, no count)
          this.#logger.debug({ err, shard }, "onAcquired threw after run() resolved");
          return;
        }
        this.#tally.workFailed();
        this.#record(new WorkFailedError(err, "onAcquired"));
        this.#logger.error({ err, shard, token: term.token.toString() }, "onAcquired threw; releasing the shard");
      });
    const entry = { done: work, generation };
    this.#work.set(shard, entry);
    void work.then(() => {
      if (this.#work.get(shard) === entry) this.#work.delete(shard);
    });
    const undoTerm = onAbort(term.signal, () => ended());
    const undoSlot = onAbort(slot.controller.signal, () => ended());
    await ending;
    slot.stepping = true;
    undoTerm();
    undoSlot();
    const lost = term.signal.aborted;
    term.endLocally(`handing over shard ${shard}`);
    if (lost && !slot.controller.signal.aborted)
      this.#logger.warn(
        { shard, token: term.token.toString(), err: term.signal.reason as unknown },
        "shard lost: its term ended",
      );
    const returned = await settledBy([work], this.#clock.now() + this.#ttl * 1000, this.#clock);
    if (generation !== this.#generation) return threw; // run() resolved meanwhile: nothing changes after it
    if (!returned) {
      this.#logger.error(
        { shard, token: term.token.toString() },
        "onAcquired has not returned a TTL after its term ended; releasing the shard anyway (fencing refuses its late writes)",
      );
    }
    await track(this.#inflight, term.resign());
    if (generation !== this.#generation) return threw;
    slot.term = undefined;
    slot.stepping = false;
    this.#held.delete(slot);
    this.#tally.termEnded();
    if (!this.isLeader()) this.#setState(this.#tally.state === "stopping" ? "stopping" : "campaigning");
    this.#tell("steppedDown", term);
    this.#tell("released", shard);
    this.#call("onReleased", () => this.#options.onReleased?.(shard));
    return threw;
  }

  /**
   * Work never overlaps: a shard's work that outlived its hand-over still holds back this process's next
   * campaign for that shard (and only that shard), with a warning every TTL.
   */
  async #settleWork(shard: number, signal: AbortSignal): Promise<void> {
    const work = this.#work.get(shard)?.done;
    if (!work) return;
    const since = this.#clock.now();
    while (
      !signal.aborted &&
      (await untilAbort(settledBy([work], this.#clock.now() + this.#ttl * 1000, this.#clock), signal)) === false
    ) {
      this.#logger.warn(
        { shard, waitingMs: Math.round(this.#clock.now() - since) },
        "the shard's last onAcquired has not returned after its term ended; not campaigning for it until it does",
      );
    }
  }

  /**
   * After a stop: every shard's work gets up to a TTL from the stop to return (the session, and with it
   * each shard's key, stays meanwhile: the next owner cannot begin before our work ended); then waits
   * for the hand-overs and the member key's removal, and closes the session we made, which revokes the
   * lease if a delete did not get through. All within max(TTL, callTimeoutMs) + callTimeoutMs of the stop.
   */
  async #shutdown(stoppedAt: number): Promise<void> {
    this.#setState("stopping");
    for (const slot of this.#slots.values()) slot.controller.abort();
    const ttlMs = this.#ttl * 1000;
    const deadline = stoppedAt + Math.max(ttlMs, this.#callTimeoutMs) + this.#callTimeoutMs;
    const own = this.#backend.given ? undefined : this.#session;
    // Only this run's work: an earlier run's that never returned was waited for (and warned of) at its stop.
    const work = [...this.#work.values()].filter((w) => w.generation === this.#generation).map((w) => w.done);
    if (!(await settledBy(work, stoppedAt + ttlMs, this.#clock))) {
      this.#logger.warn(
        {},
        "onAcquired has not returned a TTL after the stop; its shards are released anyway (fencing refuses its late writes)",
      );
    }
    const releaseBy = own ? deadline - this.#callTimeoutMs : deadline;
    const pending = [...this.#handovers, ...this.#inflight];
    if (!(await settledBy(pending, releaseBy, this.#clock))) {
      this.#logger[own ? "warn" : "error"](
        { owned: this.owned() },
        own
          ? "hand-overs not confirmed in time; closing the session revokes the lease"
          : "hand-overs not confirmed in time; our keys stay until the session ends",
      );
    }
    if (own) await own.close();
    // Whatever is still finishing (work that never returned) changes nothing from here on.
    this.#generation++;
    // Shards whose release did not finish in time are told released here (their keys went with the
    // session we closed, or go with the given one's end): every acquired has its released.
    // A replaced slot still handing its shard over counts too (moved away and back before its resign).
    for (const slot of this.#held) {
      const term = slot.term;
      if (!term) continue;
      slot.term = undefined;
      this.#tally.termEnded();
      this.#tell("steppedDown", term);
      this.#tell("released", slot.shard);
      this.#call("onReleased", () => this.#options.onReleased?.(slot.shard));
    }
    this.#held.clear();
    this.#slots.clear();
    this.#handovers.clear();
    this.#inflight.clear(); // what is left was waited for within the bound; the next run's stop need not
    // The session we made is closed: its keys are gone (or go with its lease), and the next run has a new
    // one. A given session's keys stay until their resigns: the next run's slots wait for them.
    if (!this.#backend.given) this.#ending.clear();
    // #work stays: a shard's work that never returned still holds back the next run's campaign for it.
    this.#session = undefined;
    this.#view = undefined;
    this.#running = false;
    this.#setState("stopped");
  }

  /** A callback that throws must not stop the elector, nor pass for a failure of etcd. */
  #call(name: string, callback: () => void): void {
    this.#reporter.call(name, callback);
  }

  #record(err: unknown): ElectionError {
    return this.#reporter.record(err);
  }

  #currentSession(): ShardedSession | undefined {
    return this.#backend.given ?? this.#session;
  }

  /** Tells the listeners of an event; one that throws is logged, never breaks a hand-over or a step-down. */
  #tell<E extends keyof ShardedElectorEvents>(event: E, ...args: Parameters<ShardedElectorEvents[E]>): void {
    this.#reporter.tell(event, ...args);
  }

  #setState(state: ElectorState): void {
    this.#reporter.setState(state);
  }
}
