/**
 * A fake session for the sharded elector's unit tests: its group membership and group view are the
 * test's to decide (who is a member, who holds which shard), on the fake clock of fake-elector.ts.
 */
import { onAbort } from "../../src/common/abort.js";
import type { ElectorBackend, ShardedSession } from "../../src/election/elector-backend.js";
import type { GroupMember, ShardHolder, ShardView } from "../../src/sharding/shard-view.js";
import type { Term } from "../../src/term.js";
import { FakeClock, FakeSession, type FakeCampaign } from "./fake-elector.js";

/** Our member key's hold in the group, as the fake gives it. */
export interface FakeMembership {
  readonly term: Term;
  /** Its key deleted behind our back (as `etcdctl del` would). */
  lose(reason?: unknown): void;
  readonly resigned: boolean;
}

export class FakeShardedSession extends FakeSession implements ShardedSession {
  readonly leaseHex: string;
  readonly memberships: FakeMembership[] = [];
  /** What a member key's resign does: settle at once, or hang (etcd takes no writes). */
  memberResign: "settles" | "hangs" = "settles";
  #revision = 1000n;
  #pending: ShardView[] = [];
  #wake: (() => void) | undefined;
  /** Views the elector is reading now. */
  viewers = 0;

  constructor(clock: FakeClock, leaseHex: string) {
    super(clock);
    this.leaseHex = leaseHex;
  }

  /** While set, joining fails with it (etcd refuses the member key's put). */
  joinRefusal: (() => unknown) | undefined;
  /** What a join does: settle at once, or hang, abort or not (etcd confirms no write: a join's abort retries its delete). */
  memberJoin: "settles" | "hangs" = "settles";

  join(name: string, value: string, signal: AbortSignal): Promise<Term> {
    if (this.memberJoin === "hangs") return new Promise<Term>(() => {});
    signal.throwIfAborted();
    if (this.joinRefusal) return Promise.reject(this.joinRefusal());
    const controller = new AbortController();
    let resigned = false;
    const term = {
      key: `${name}/${this.leaseHex}`,
      token: ++this.#revision,
      signal: controller.signal,
      value,
      endLocally: (why: string) => controller.abort(new Error(why)),
      resign: (): Promise<void> => {
        resigned = true;
        if (!controller.signal.aborted) controller.abort(new Error("resigned"));
        return this.memberResign === "hangs" ? new Promise<void>(() => {}) : Promise.resolve();
      },
    } as unknown as Term;
    this.memberships.push({
      term,
      lose: (reason = new Error("member key deleted: fake")) => controller.abort(reason),
      get resigned() {
        return resigned;
      },
    });
    return Promise.resolve(term);
  }

  /** Tells the elector's view (if any) this state of the group. */
  show(members: readonly { id: string; identity: string }[], holders: readonly (string | undefined)[] = []): void {
    const revision = ++this.#revision;
    this.#pending.push({
      revision,
      members: members.map((m, i): GroupMember => ({ ...m, createRevision: BigInt(i + 1) })),
      holders: holders.map((id): ShardHolder | undefined =>
        id === undefined ? undefined : { identity: id, token: revision, key: `x/${id}` },
      ),
    });
    this.#wake?.();
  }

  async *view(_name: string, _shards: number, signal: AbortSignal): AsyncGenerator<ShardView> {
    this.viewers++;
    try {
      for (;;) {
        signal.throwIfAborted();
        const next = this.#pending.shift();
        if (next) {
          yield next;
          continue;
        }
        await new Promise<void>((resolve) => {
          const undo = onAbort(signal, () => resolve());
          this.#wake = () => {
            undo();
            resolve();
          };
        });
        this.#wake = undefined;
      }
    } finally {
      this.viewers--;
    }
  }
}

/** Sessions a sharded elector makes, each with a lease of its own. */
export class FakeShardedBackend implements ElectorBackend<ShardedSession> {
  /** The user's session, with `{ given: true }`: the elector makes none (it is `sessions[0]`). */
  readonly given: ShardedSession | undefined = undefined;
  readonly sessions: FakeShardedSession[] = [];
  /** What the joins of sessions made from now on do (see FakeShardedSession.memberJoin). */
  memberJoin: "settles" | "hangs" = "settles";
  readonly #clock: FakeClock;

  constructor(clock: FakeClock, options: { given?: boolean } = {}) {
    this.#clock = clock;
    if (options.given) this.sessions.push((this.given = new FakeShardedSession(clock, "b00")));
  }

  newSession(): Promise<ShardedSession> {
    const session = new FakeShardedSession(this.#clock, (0xa00 + this.sessions.length).toString(16));
    session.memberJoin = this.memberJoin;
    this.sessions.push(session);
    return Promise.resolve(session);
  }

  get session(): FakeShardedSession {
    return this.sessions.at(-1)!;
  }

  /** Every session's campaigns, oldest first. */
  get campaigns(): FakeCampaign[] {
    return this.sessions.flatMap((s) => s.campaigns);
  }
}
